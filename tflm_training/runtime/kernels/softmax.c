/* SOFTMAX over the last dimension, int8 input, int8 output (scale 1/256,
 * zero point -128) or int16 output (scale 1/65536, zero point -32768),
 * computed like TFLM's reference: input differences from the row maximum
 * are scaled by beta * input_scale into Q5.26, exponentiated in fixed
 * point, summed in Q12.19, and each exponential is multiplied by the
 * fixed-point reciprocal of the sum. */
#include "kernels/common/tt_kernel.h"
#include "kernels/common/tt_kernel_checks.h"
#include "math/tt_fixedpoint.h"
#include "math/tt_quant.h"

#define SCALED_DIFF_INTEGER_BITS 5
#define ACCUMULATION_INTEGER_BITS 12

typedef struct {
  int32_t input_multiplier;
  int32_t input_left_shift;
  int32_t diff_min; /* differences below this contribute nothing */
  int32_t outer_size;
  int32_t depth;
  int32_t output_bits; /* 8 or 16 */
} softmax_data;

static tt_status check_output(tt_interpreter* it, const tt_node* node,
                              const tt_tensor* output, int32_t* bits) {
  if (output->type != TT_TYPE_INT8 && output->type != TT_TYPE_INT16)
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "output must be INT8 or INT16, got %s",
                        tt_type_name(output->type));
  TT_RETURN_IF_ERROR(tt_expect_quantized(it, node, output, "output"));
  if (output->num_scales != 1)
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "output must be quantized per tensor");
  if (output->type == TT_TYPE_INT8) {
    *bits = 8;
    if (output->zero_point != -128 || output->scale != 1.0f / 256)
      return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                          "an INT8 output must have scale 1/256 and zero "
                          "point -128 (zero point is %d)",
                          output->zero_point);
    return TT_OK;
  }
  *bits = 16;
  /* TFLM accepts a scale within 0.1% of 1/65536, compared in float. */
  const float target = 1.0f / 65536;
  const float delta =
      output->scale > target ? output->scale - target : target - output->scale;
  if (output->zero_point != -32768 || delta > 0.001f * 1.0f / 65536)
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "an INT16 output must have scale 1/65536 and zero "
                        "point -32768 (zero point is %d)",
                        output->zero_point);
  return TT_OK;
}

static tt_status prepare(tt_interpreter* it, tt_node* node) {
  TT_RETURN_IF_ERROR(tt_expect_io_counts(it, node, 1, 1, 1));
  const tt_tensor* input = tt_node_input(it, node, 0);
  const tt_tensor* output = tt_node_output(it, node, 0);
  TT_RETURN_IF_ERROR(tt_expect_int8_per_tensor(it, node, input, "input"));
  softmax_data* data;
  TT_RETURN_IF_ERROR(
      tt_node_alloc_op_data(it, node, sizeof *data, (void**)&data));
  TT_RETURN_IF_ERROR(check_output(it, node, output, &data->output_bits));
  if (input->rank < 1)
    return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                        "input must have at least one dimension");
  TT_RETURN_IF_ERROR(
      tt_expect_shape(it, node, output, "output", input->dims, input->rank));
  float beta;
  /* An absent SoftmaxOptions leaves beta 0 in TFLM too; it fails below. */
  TT_RETURN_IF_ERROR(tt_option_f32(it, node, TT_SOFTMAX_BETA, 0.0f, &beta));

  /* The multiplier taking an integer input difference to Q5.26:
   * beta * input_scale * 2^26, capped below 2^31. TFLM requires it to
   * exceed 1. */
  double real = (double)beta * (double)input->scale *
                (double)(1 << (31 - SCALED_DIFF_INTEGER_BITS));
  if (real > 2147483647.0) real = 2147483647.0;
  if (!(real > 1.0) || !tt_quantize_multiplier(real, &data->input_multiplier,
                                               &data->input_left_shift))
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "beta * input scale is too small (or not positive) "
                        "for the int8 softmax; TFLM needs it above 2^-26");
  /* Differences beyond floor((2^5 - 1) * 2^26 / 2^left_shift) in
   * magnitude would not fit Q5.26 once rescaled; exp of them is taken as 0. */
  const int64_t radius = (((int64_t)1 << SCALED_DIFF_INTEGER_BITS) - 1)
                         << (31 - SCALED_DIFF_INTEGER_BITS);
  data->diff_min = -(int32_t)(radius >> data->input_left_shift);
  data->depth = input->dims[input->rank - 1];
  data->outer_size = data->depth > 0 ? input->num_elements / data->depth : 0;
  return TT_OK;
}

static int32_t exp_of_difference(int32_t diff, const softmax_data* d) {
  const int32_t scaled = tt_multiply_by_quantized_multiplier_greater_than_one(
      diff, d->input_multiplier, d->input_left_shift);
  return tt_fp_exp_on_negative_values(scaled, SCALED_DIFF_INTEGER_BITS);
}

static tt_status eval(tt_interpreter* it, const tt_node* node) {
  const softmax_data* d = (const softmax_data*)tt_node_op_data(it, node);
  const int8_t* input =
      (const int8_t*)tt_tensor_data(it, tt_node_input(it, node, 0));
  void* output = tt_tensor_data(it, tt_node_output(it, node, 0));
  const int32_t depth = d->depth;
  const int32_t out_min = d->output_bits == 8 ? -128 : -32768;
  const int32_t out_max = d->output_bits == 8 ? 127 : 32767;
  for (int32_t i = 0; i < d->outer_size; ++i) {
    const int8_t* row = input + (int64_t)i * depth;
    int32_t max = -128;
    for (int32_t c = 0; c < depth; ++c)
      if (row[c] > max) max = row[c];

    uint32_t sum = 0; /* Q12.19; TFLM's int32 sum wraps the same way */
    for (int32_t c = 0; c < depth; ++c) {
      const int32_t diff = row[c] - max;
      if (diff >= d->diff_min)
        sum += (uint32_t)tt_fp_rescale(exp_of_difference(diff, d), 0,
                                       ACCUMULATION_INTEGER_BITS);
    }
    /* The maximum alone contributes 2^19, so the sum is positive unless a
     * row of more than 4095 values overflowed it. */
    if ((int32_t)sum <= 0)
      return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                          "the sum of exponentials of a row of %d values "
                          "overflows int32",
                          depth);
    int32_t num_bits_over_unit;
    const int32_t reciprocal = tt_fp_reciprocal(
        (int32_t)sum, ACCUMULATION_INTEGER_BITS, &num_bits_over_unit);
    const int32_t exponent = num_bits_over_unit + 31 - d->output_bits;
    if (exponent < 0 || exponent > 31)
      return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                          "the sum of exponentials of a row is too large for "
                          "an INT%d output (TFLM aborts here)",
                          d->output_bits);

    for (int32_t c = 0; c < depth; ++c) {
      const int32_t diff = row[c] - max;
      int32_t value = out_min;
      if (diff >= d->diff_min) {
        const int32_t unsaturated = tt_rounding_divide_by_pot(
            tt_fp_mul(reciprocal, exp_of_difference(diff, d)), exponent);
        value = tt_clamp_i32(unsaturated + out_min, out_min, out_max);
      }
      const int64_t at = (int64_t)i * depth + c;
      if (d->output_bits == 8)
        ((int8_t*)output)[at] = (int8_t)value;
      else
        ((int16_t*)output)[at] = (int16_t)value;
    }
  }
  return TT_OK;
}

const tt_kernel tt_kernel_softmax = {
    TT_OP_SOFTMAX, "SOFTMAX", TT_OPTIONS_SOFTMAX, prepare, eval,
};
