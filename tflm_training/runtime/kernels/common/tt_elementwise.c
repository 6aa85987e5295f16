#include "kernels/common/tt_elementwise.h"

#include "kernels/common/tt_kernel_checks.h"
#include "math/tt_quant.h"

#define ADD_SUB_LEFT_SHIFT 20 /* TFLM's headroom for int8 ADD and SUB */
#define INNER (TT_MAX_RANK - 1)

tt_status tt_unary_int8_prepare(tt_interpreter* it, const tt_node* node,
                                const tt_tensor** input,
                                const tt_tensor** output) {
  TT_RETURN_IF_ERROR(tt_expect_io_counts(it, node, 1, 1, 1));
  *input = tt_node_input(it, node, 0);
  *output = tt_node_output(it, node, 0);
  TT_RETURN_IF_ERROR(tt_expect_int8_per_tensor(it, node, *input, "input"));
  TT_RETURN_IF_ERROR(tt_expect_type(it, node, *output, "output", TT_TYPE_INT8));
  return tt_expect_shape(it, node, *output, "output", (*input)->dims,
                         (*input)->rank);
}

/* Dimension d of a shape right-aligned to `rank` dimensions. */
static int32_t aligned_dim(const tt_tensor* t, int32_t rank, int32_t d) {
  const int32_t i = d - (rank - t->rank);
  return i >= 0 ? t->dims[i] : 1;
}

tt_status tt_broadcast_prepare(tt_interpreter* it, const tt_node* node,
                               const tt_tensor* in1, const tt_tensor* in2,
                               const tt_tensor* out,
                               tt_broadcast_params* params) {
  const int32_t rank = in1->rank > in2->rank ? in1->rank : in2->rank;
  int32_t out_dims[TT_MAX_RANK];
  params->broadcast = 0;
  for (int32_t d = 0; d < rank; ++d) {
    const int32_t a = aligned_dim(in1, rank, d);
    const int32_t b = aligned_dim(in2, rank, d);
    if (a != b) params->broadcast = 1;
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
  TT_RETURN_IF_ERROR(tt_expect_shape(it, node, out, "output", out_dims, rank));
  params->num_elements = out->num_elements;

  /* Strides stay below each input's element count, which fits int32; a
   * zero-sized dimension empties the output, and then none is used. */
  int32_t stride1 = 1, stride2 = 1;
  for (int32_t d = TT_MAX_RANK - 1; d >= 0; --d) {
    const int32_t o = aligned_dim(out, TT_MAX_RANK, d);
    const int32_t a = aligned_dim(in1, TT_MAX_RANK, d);
    const int32_t b = aligned_dim(in2, TT_MAX_RANK, d);
    params->dims[d] = o;
    params->strides1[d] = (a == 1 && o != 1) ? 0 : stride1;
    params->strides2[d] = (b == 1 && o != 1) ? 0 : stride2;
    if (out->num_elements > 0) {
      stride1 *= a;
      stride2 *= b;
    }
  }
  return TT_OK;
}

void tt_broadcast_run(const tt_broadcast_params* p, const int8_t* in1,
                      const int8_t* in2, int8_t* out, tt_binary_row_fn row,
                      const void* op_params) {
  if (p->num_elements <= 0) return;
  if (!p->broadcast) {
    row(in1, 1, in2, 1, out, p->num_elements, op_params);
    return;
  }
  /* Walk the output in order; an odometer over the outer dimensions keeps
   * each input's offset, the innermost dimension is one row. */
  const int32_t inner = p->dims[INNER];
  int32_t index[INNER] = {0};
  int32_t offset1 = 0, offset2 = 0;
  for (int32_t done = 0; done < p->num_elements; done += inner) {
    row(in1 + offset1, p->strides1[INNER], in2 + offset2, p->strides2[INNER],
        out + done, inner, op_params);
    for (int32_t dim = INNER - 1; dim >= 0; --dim) {
      offset1 += p->strides1[dim];
      offset2 += p->strides2[dim];
      if (++index[dim] < p->dims[dim]) break;
      offset1 -= p->strides1[dim] * p->dims[dim];
      offset2 -= p->strides2[dim] * p->dims[dim];
      index[dim] = 0;
    }
  }
}

tt_status tt_fused_activation_range(tt_interpreter* it, const tt_node* node,
                                    int32_t activation, const tt_tensor* output,
                                    int32_t* activation_min,
                                    int32_t* activation_max) {
  if (!tt_activation_range_quantized(activation, output->scale,
                                     output->zero_point, -128, 127,
                                     activation_min, activation_max))
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "fused activation %d is not supported", activation);
  return TT_OK;
}

typedef struct {
  int32_t subtract;
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
  tt_broadcast_params shape;
} add_sub_data;

/* TFLM's QuantizeMultiplierSmallerThanOneExp aborts unless the multiplier
 * is in (0, 1) and rounding leaves the shift <= 0. */
static bool multiplier_below_one(double real, int32_t* multiplier,
                                 int32_t* shift) {
  return real > 0.0 && real < 1.0 &&
         tt_quantize_multiplier(real, multiplier, shift) && *shift <= 0;
}

/* The multipliers in double from the float scales, as TFLM computes them
 * for both ADD and SUB. (TFLM's SUB source once divided in float first;
 * the tflite_micro build we compare with divides in double.) */
static tt_status add_sub_multipliers(tt_interpreter* it, const tt_node* node,
                                     const tt_tensor* in1, const tt_tensor* in2,
                                     const tt_tensor* out, add_sub_data* d) {
  const float max_scale = in1->scale < in2->scale ? in2->scale : in1->scale;
  const double twice_max = 2 * (double)max_scale;
  const double real1 = (double)in1->scale / twice_max;
  const double real2 = (double)in2->scale / twice_max;
  const double real_out =
      twice_max / ((double)(1 << ADD_SUB_LEFT_SHIFT) * (double)out->scale);
  if (!multiplier_below_one(real1, &d->input1_multiplier, &d->input1_shift) ||
      !multiplier_below_one(real2, &d->input2_multiplier, &d->input2_shift))
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "the input scales cannot be rescaled to a common "
                        "scale");
  if (!multiplier_below_one(real_out, &d->output_multiplier, &d->output_shift))
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "the output scale is too small for the input scales "
                        "(TFLM needs 2 * max input scale < 2^20 * output "
                        "scale)");
  return TT_OK;
}

tt_status tt_add_sub_prepare(tt_interpreter* it, tt_node* node, bool subtract) {
  TT_RETURN_IF_ERROR(tt_expect_io_counts(it, node, 2, 2, 1));
  const tt_tensor* in1 = tt_node_input(it, node, 0);
  const tt_tensor* in2 = tt_node_input(it, node, 1);
  const tt_tensor* out = tt_node_output(it, node, 0);
  TT_RETURN_IF_ERROR(tt_expect_int8_per_tensor(it, node, in1, "input 1"));
  TT_RETURN_IF_ERROR(tt_expect_int8_per_tensor(it, node, in2, "input 2"));
  TT_RETURN_IF_ERROR(tt_expect_int8_per_tensor(it, node, out, "output"));
  int32_t activation;
  TT_RETURN_IF_ERROR(
      tt_option_i8(it, node, subtract ? TT_SUB_ACTIVATION : TT_ADD_ACTIVATION,
                   TT_ACTIVATION_NONE, &activation));
  add_sub_data* d;
  TT_RETURN_IF_ERROR(tt_node_alloc_op_data(it, node, sizeof *d, (void**)&d));
  TT_RETURN_IF_ERROR(tt_broadcast_prepare(it, node, in1, in2, out, &d->shape));
  TT_RETURN_IF_ERROR(add_sub_multipliers(it, node, in1, in2, out, d));
  TT_RETURN_IF_ERROR(tt_fused_activation_range(
      it, node, activation, out, &d->activation_min, &d->activation_max));
  d->subtract = subtract ? 1 : 0;
  d->input1_offset = -in1->zero_point;
  d->input2_offset = -in2->zero_point;
  d->output_offset = out->zero_point;
  return TT_OK;
}

static void add_sub_row(const int8_t* in1, int32_t step1, const int8_t* in2,
                        int32_t step2, int8_t* out, int32_t count,
                        const void* op_params) {
  const add_sub_data* d = (const add_sub_data*)op_params;
  for (int32_t k = 0; k < count; ++k) {
    /* |value - zero point| <= 255, so the shifted values stay below 2^28
     * and their sum or difference cannot overflow. */
    const int32_t shifted1 =
        (d->input1_offset + in1[k * step1]) * (1 << ADD_SUB_LEFT_SHIFT);
    const int32_t shifted2 =
        (d->input2_offset + in2[k * step2]) * (1 << ADD_SUB_LEFT_SHIFT);
    const int32_t scaled1 =
        tt_multiply_by_quantized_multiplier_smaller_than_one(
            shifted1, d->input1_multiplier, d->input1_shift);
    const int32_t scaled2 =
        tt_multiply_by_quantized_multiplier_smaller_than_one(
            shifted2, d->input2_multiplier, d->input2_shift);
    const int32_t raw = d->subtract ? scaled1 - scaled2 : scaled1 + scaled2;
    const int32_t result = tt_multiply_by_quantized_multiplier_smaller_than_one(
                               raw, d->output_multiplier, d->output_shift) +
                           d->output_offset;
    out[k] = (int8_t)tt_clamp_i32(result, d->activation_min, d->activation_max);
  }
}

tt_status tt_add_sub_eval(tt_interpreter* it, const tt_node* node) {
  const add_sub_data* d = (const add_sub_data*)tt_node_op_data(it, node);
  tt_broadcast_run(
      &d->shape, (const int8_t*)tt_tensor_data(it, tt_node_input(it, node, 0)),
      (const int8_t*)tt_tensor_data(it, tt_node_input(it, node, 1)),
      (int8_t*)tt_tensor_data(it, tt_node_output(it, node, 0)), add_sub_row, d);
  return TT_OK;
}
