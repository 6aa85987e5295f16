/* ADD, int8: both inputs are rescaled to a shared intermediate scale (twice
 * the larger input scale, with 20 bits of headroom), summed, then rescaled
 * to the output and clamped by the fused activation, as TFLM's reference
 * kernel does. Shapes broadcast numpy-style. */
#include "tt_kernel.h"
#include "tt_kernel_checks.h"
#include "tt_quant.h"

#define ADD_LEFT_SHIFT 20
#define INNER (TT_MAX_RANK - 1)

typedef struct {
  int32_t input1_offset; /* minus the zero point */
  int32_t input2_offset;
  int32_t output_offset;
  int32_t input1_multiplier;
  int32_t input1_shift;
  int32_t input2_multiplier;
  int32_t input2_shift;
  int32_t output_multiplier;
  int32_t output_shift;
  int32_t activation_min;
  int32_t activation_max;
  int32_t num_elements;
  int32_t broadcast;
  /* When broadcasting: the output shape right-aligned to TT_MAX_RANK
   * dimensions and each input's element stride per dimension, 0 where the
   * input is broadcast along it. */
  int32_t dims[TT_MAX_RANK];
  int32_t strides1[TT_MAX_RANK];
  int32_t strides2[TT_MAX_RANK];
} add_data;

/* TFLM's QuantizeMultiplierSmallerThanOneExp aborts unless the multiplier
 * is in (0, 1) and rounding leaves the shift <= 0. */
static bool multiplier_below_one(double real, int32_t* multiplier,
                                 int32_t* shift) {
  return real > 0.0 && real < 1.0 &&
         tt_quantize_multiplier(real, multiplier, shift) && *shift <= 0;
}

/* Dimension d of a shape right-aligned to `rank` dimensions. */
static int32_t aligned_dim(const tt_tensor* t, int32_t rank, int32_t d) {
  const int32_t i = d - (rank - t->rank);
  return i >= 0 ? t->dims[i] : 1;
}

static tt_status prepare_shapes(tt_interpreter* it, const tt_node* node,
                                const tt_tensor* in1, const tt_tensor* in2,
                                const tt_tensor* out, add_data* data) {
  const int32_t rank = in1->rank > in2->rank ? in1->rank : in2->rank;
  int32_t out_dims[TT_MAX_RANK];
  data->broadcast = 0;
  for (int32_t d = 0; d < rank; ++d) {
    const int32_t a = aligned_dim(in1, rank, d);
    const int32_t b = aligned_dim(in2, rank, d);
    if (a != b) data->broadcast = 1;
    if (a == b || b == 1) {
      out_dims[d] = a;
    } else if (a == 1) {
      out_dims[d] = b;
    } else {
      char s1[TT_SHAPE_TEXT_SIZE], s2[TT_SHAPE_TEXT_SIZE];
      return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                          "input shapes %s and %s cannot be broadcast",
                          tt_shape_text(in1->dims, in1->rank, s1),
                          tt_shape_text(in2->dims, in2->rank, s2));
    }
  }
  TT_RETURN_IF_ERROR(
      tt_expect_shape(it, node, out, "output", out_dims, rank));
  data->num_elements = out->num_elements;

  int32_t stride1 = 1, stride2 = 1;
  for (int32_t d = TT_MAX_RANK - 1; d >= 0; --d) {
    const int32_t o = aligned_dim(out, TT_MAX_RANK, d);
    const int32_t a = aligned_dim(in1, TT_MAX_RANK, d);
    const int32_t b = aligned_dim(in2, TT_MAX_RANK, d);
    data->dims[d] = o;
    data->strides1[d] = (a == 1 && o != 1) ? 0 : stride1;
    data->strides2[d] = (b == 1 && o != 1) ? 0 : stride2;
    stride1 *= a;
    stride2 *= b;
  }
  return TT_OK;
}

static tt_status prepare(tt_interpreter* it, tt_node* node) {
  add_data* data;
  TT_RETURN_IF_ERROR(tt_expect_io_counts(it, node, 2, 2, 1));
  const tt_tensor* in1 = tt_node_input(it, node, 0);
  const tt_tensor* in2 = tt_node_input(it, node, 1);
  const tt_tensor* out = tt_node_output(it, node, 0);
  TT_RETURN_IF_ERROR(tt_expect_int8_per_tensor(it, node, in1, "input 1"));
  TT_RETURN_IF_ERROR(tt_expect_int8_per_tensor(it, node, in2, "input 2"));
  TT_RETURN_IF_ERROR(tt_expect_int8_per_tensor(it, node, out, "output"));
  int32_t activation;
  TT_RETURN_IF_ERROR(tt_option_i8(it, node, TT_ADD_ACTIVATION,
                                  TT_ACTIVATION_NONE, &activation));
  TT_RETURN_IF_ERROR(
      tt_node_alloc_op_data(it, node, sizeof *data, (void**)&data));
  TT_RETURN_IF_ERROR(prepare_shapes(it, node, in1, in2, out, data));

  /* The same double arithmetic as TFLM, from the float scales. */
  const float max_scale = in1->scale < in2->scale ? in2->scale : in1->scale;
  const double twice_max_input_scale = 2 * (double)max_scale;
  const double real1 = (double)in1->scale / twice_max_input_scale;
  const double real2 = (double)in2->scale / twice_max_input_scale;
  const double real_out =
      twice_max_input_scale /
      ((double)(1 << ADD_LEFT_SHIFT) * (double)out->scale);
  if (!multiplier_below_one(real1, &data->input1_multiplier,
                            &data->input1_shift) ||
      !multiplier_below_one(real2, &data->input2_multiplier,
                            &data->input2_shift))
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "the input scales cannot be rescaled to a common "
                        "scale");
  if (!multiplier_below_one(real_out, &data->output_multiplier,
                            &data->output_shift))
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "the output scale is too small for the input scales "
                        "(TFLM needs 2 * max input scale < 2^20 * output "
                        "scale)");
  if (!tt_activation_range_quantized(activation, out->scale, out->zero_point,
                                     -128, 127, &data->activation_min,
                                     &data->activation_max))
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "fused activation %d is not supported", activation);
  data->input1_offset = -in1->zero_point;
  data->input2_offset = -in2->zero_point;
  data->output_offset = out->zero_point;
  return TT_OK;
}

static int8_t add_one(int32_t a, int32_t b, const add_data* d) {
  /* |a - zero point| <= 255, so the shifted values stay below 2^28. */
  const int32_t shifted1 = (d->input1_offset + a) * (1 << ADD_LEFT_SHIFT);
  const int32_t shifted2 = (d->input2_offset + b) * (1 << ADD_LEFT_SHIFT);
  const int32_t scaled1 = tt_multiply_by_quantized_multiplier_smaller_than_one(
      shifted1, d->input1_multiplier, d->input1_shift);
  const int32_t scaled2 = tt_multiply_by_quantized_multiplier_smaller_than_one(
      shifted2, d->input2_multiplier, d->input2_shift);
  const int32_t sum = scaled1 + scaled2;
  const int32_t result =
      tt_multiply_by_quantized_multiplier_smaller_than_one(
          sum, d->output_multiplier, d->output_shift) +
      d->output_offset;
  return (int8_t)tt_clamp_i32(result, d->activation_min, d->activation_max);
}

static tt_status eval(tt_interpreter* it, const tt_node* node) {
  const add_data* d = (const add_data*)tt_node_op_data(it, node);
  const int8_t* in1 =
      (const int8_t*)tt_tensor_data(it, tt_node_input(it, node, 0));
  const int8_t* in2 =
      (const int8_t*)tt_tensor_data(it, tt_node_input(it, node, 1));
  int8_t* out = (int8_t*)tt_tensor_data(it, tt_node_output(it, node, 0));
  if (!d->broadcast) {
    for (int32_t i = 0; i < d->num_elements; ++i)
      out[i] = add_one(in1[i], in2[i], d);
    return TT_OK;
  }
  /* Walk the output in order; an odometer over the outer dimensions keeps
   * each input's offset, the innermost dimension is the loop below. */
  const int32_t inner = d->dims[INNER];
  const int32_t inner1 = d->strides1[INNER];
  const int32_t inner2 = d->strides2[INNER];
  int32_t index[INNER] = {0};
  int32_t offset1 = 0, offset2 = 0;
  for (int32_t done = 0; done < d->num_elements; done += inner) {
    for (int32_t k = 0; k < inner; ++k)
      *out++ = add_one(in1[offset1 + k * inner1], in2[offset2 + k * inner2], d);
    for (int32_t dim = INNER - 1; dim >= 0; --dim) {
      offset1 += d->strides1[dim];
      offset2 += d->strides2[dim];
      if (++index[dim] < d->dims[dim]) break;
      offset1 -= d->strides1[dim] * d->dims[dim];
      offset2 -= d->strides2[dim] * d->dims[dim];
      index[dim] = 0;
    }
  }
  return TT_OK;
}

const tt_kernel tt_kernel_add = {
    TT_OP_ADD, "ADD", TT_OPTIONS_ADD, prepare, eval,
};
