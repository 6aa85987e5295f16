/* LEAKY_RELU, int8, as TFLM's reference computes it: inputs at or above
 * the zero point are requantized by input_scale / output_scale, those below
 * by input_scale * alpha / output_scale (a negative multiplier applied by
 * its magnitude, then the result negated), each offset by the output's zero
 * point and clamped. */
#include "kernels/common/tt_elementwise.h"
#include "kernels/common/tt_kernel.h"
#include "kernels/common/tt_kernel_checks.h"
#include "math/tt_quant.h"

typedef struct {
  int32_t num_elements;
  int32_t input_zero_point;
  int32_t output_zero_point;
  int32_t identity_multiplier;
  int32_t identity_shift;
  int32_t alpha_multiplier; /* magnitude (INT32_MIN stays itself) */
  int32_t alpha_shift;
  int32_t alpha_negative;
} leaky_relu_data;

/* TFLM's QuantizeMultiplier on a signed value: frexp, the fraction
 * rounded to Q31 (half away from zero), 2^31 halved, shifts below -31
 * flushed to zero. A negative value gives a negative multiplier (INT32_MIN
 * when the fraction rounds to -1). False where TFLM's arithmetic would be
 * undefined: a value that is not finite or a left shift of 32 or more. */
static bool quantize_signed(double real, int32_t* multiplier, int32_t* shift) {
  *multiplier = 0;
  *shift = 0;
  if (!(real > -1.0e300 && real < 1.0e300)) return false;
  if (real == 0.0) return true;
  const double fraction = tt_frexp(real, shift);
  int64_t q = (int64_t)tt_round_double(fraction * 2147483648.0);
  if (q == ((int64_t)1 << 31)) {
    q /= 2;
    ++*shift;
  }
  if (*shift < -31) {
    *shift = 0;
    q = 0;
  }
  *multiplier = (int32_t)q;
  return *shift <= 31;
}

static tt_status prepare(tt_interpreter* it, tt_node* node) {
  const tt_tensor* input;
  const tt_tensor* output;
  TT_RETURN_IF_ERROR(tt_unary_int8_prepare(it, node, &input, &output));
  TT_RETURN_IF_ERROR(tt_expect_int8_per_tensor(it, node, output, "output"));
  float alpha;
  TT_RETURN_IF_ERROR(
      tt_option_f32(it, node, TT_LEAKY_RELU_ALPHA, 0.0f, &alpha));
  leaky_relu_data* d;
  TT_RETURN_IF_ERROR(tt_node_alloc_op_data(it, node, sizeof *d, (void**)&d));
  d->num_elements = input->num_elements;
  d->input_zero_point = input->zero_point;
  d->output_zero_point = output->zero_point;

  /* Double arithmetic from the float scales and alpha, as the
   * tflite_micro build we compare with computes it. */
  int32_t alpha_multiplier;
  if (!quantize_signed((double)input->scale / (double)output->scale,
                       &d->identity_multiplier, &d->identity_shift))
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "input scale / output scale is too large to "
                        "requantize");
  if (!quantize_signed(
          (double)input->scale * (double)alpha / (double)output->scale,
          &alpha_multiplier, &d->alpha_shift))
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "alpha * input scale / output scale is too large "
                        "(or not a number) to requantize");
  /* TFLM applies a negative multiplier by its magnitude and negates the
   * result; -INT32_MIN wraps to itself there. */
  d->alpha_negative = alpha_multiplier < 0;
  d->alpha_multiplier = d->alpha_negative
                            ? (int32_t)(0u - (uint32_t)alpha_multiplier)
                            : alpha_multiplier;
  return TT_OK;
}

static tt_status eval(tt_interpreter* it, const tt_node* node) {
  const leaky_relu_data* d = (const leaky_relu_data*)tt_node_op_data(it, node);
  const int8_t* in =
      (const int8_t*)tt_tensor_data(it, tt_node_input(it, node, 0));
  int8_t* out = (int8_t*)tt_tensor_data(it, tt_node_output(it, node, 0));
  for (int32_t i = 0; i < d->num_elements; ++i) {
    const int32_t value = in[i] - d->input_zero_point;
    int32_t result = d->output_zero_point;
    if (value >= 0) {
      result += tt_multiply_by_quantized_multiplier(
          value, d->identity_multiplier, d->identity_shift);
    } else {
      const int32_t scaled = tt_multiply_by_quantized_multiplier(
          value, d->alpha_multiplier, d->alpha_shift);
      result += d->alpha_negative ? (int32_t)(0u - (uint32_t)scaled) : scaled;
    }
    out[i] = (int8_t)tt_clamp_i32(result, -128, 127);
  }
  return TT_OK;
}

const tt_kernel tt_kernel_leaky_relu = {
    TT_OP_LEAKY_RELU, "LEAKY_RELU", TT_OPTIONS_LEAKY_RELU, prepare, eval,
};
