/* HARD_SWISH, int8: x * relu6(x + 3) / 6, in TFLM's reference 16-bit
 * fixed-point form. The input moved to a "high-resolution" scale
 * (input_scale / 128) is rescaled twice with 16-bit multipliers: to the
 * output scale (before the final shift), and to a "relu-ish" scale where
 * 3.0 is 32768, saturating; the latter, mapped from [-1, 1] to [0, 1],
 * multiplies the former. All intermediates are int16 and wrap or saturate
 * exactly as TFLM's do. */
#include "kernels/common/tt_elementwise.h"
#include "kernels/common/tt_kernel.h"
#include "kernels/common/tt_kernel_checks.h"
#include "math/tt_quant.h"

typedef struct {
  int32_t num_elements;
  int32_t input_zero_point;
  int32_t output_zero_point;
  int32_t reluish_multiplier; /* Q0.15 */
  int32_t reluish_exponent;
  int32_t output_multiplier; /* Q0.15 */
  int32_t output_exponent;   /* <= 0 */
} hard_swish_data;

/* A Q0.31 multiplier rounded to Q0.15, as TFLM's
 * DownScaleInt32ToInt16Multiplier does. */
static int32_t to_q15(int32_t multiplier) {
  if (multiplier >= INT32_MAX - (1 << 15)) return INT16_MAX;
  return (multiplier + (1 << 15)) >> 16;
}

static tt_status prepare(tt_interpreter* it, tt_node* node) {
  const tt_tensor* input;
  const tt_tensor* output;
  TT_RETURN_IF_ERROR(tt_unary_int8_prepare(it, node, &input, &output));
  TT_RETURN_IF_ERROR(tt_expect_int8_per_tensor(it, node, output, "output"));
  hard_swish_data* d;
  TT_RETURN_IF_ERROR(tt_node_alloc_op_data(it, node, sizeof *d, (void**)&d));
  d->num_elements = input->num_elements;
  d->input_zero_point = input->zero_point;
  d->output_zero_point = output->zero_point;

  /* As the tflite_micro build we compare with: the high-resolution scale
   * in float, the quotients in double. */
  const float hires_input_scale = (1.0f / 128.0f) * input->scale;
  const double reluish_scale = 3.0 / 32768.0;
  int32_t multiplier;
  if (!tt_quantize_multiplier((double)hires_input_scale / (double)output->scale,
                              &multiplier, &d->output_exponent) ||
      d->output_exponent > 0)
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "input scale / output scale must be below 128 "
                        "(TFLM requires it)");
  d->output_multiplier = to_q15(multiplier);
  /* TFLM shifts left by exponent - 1 in int arithmetic: above 31 that is
   * undefined. Only input scales beyond about 2^22 get there. */
  if (!tt_quantize_multiplier((double)hires_input_scale / reluish_scale,
                              &multiplier, &d->reluish_exponent) ||
      d->reluish_exponent > 31)
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "the input scale is too large for the int8 "
                        "hard-swish kernel");
  d->reluish_multiplier = to_q15(multiplier);
  return TT_OK;
}

/* gemmlowp's 16-bit SaturatingRoundingDoublingHighMul. */
static int16_t rounding_doubling_high_mul_16(int16_t a, int16_t b) {
  if (a == INT16_MIN && b == INT16_MIN) return INT16_MAX;
  const int32_t ab = (int32_t)a * (int32_t)b;
  const int32_t nudge = ab >= 0 ? (1 << 14) : (1 - (1 << 14));
  return (int16_t)((ab + nudge) / (1 << 15));
}

/* The same without rounding (truncating toward zero). */
static int16_t doubling_high_mul_16(int16_t a, int16_t b) {
  if (a == INT16_MIN && b == INT16_MIN) return INT16_MAX;
  return (int16_t)(((int32_t)a * (int32_t)b) / (1 << 15));
}

/* gemmlowp's RoundingDivideByPOT on int16, exponent in [0, 31]: the mask
 * and sums are int16, so from an exponent of 16 on the result is 1 for
 * x >= 0 and -1 for x < 0, as in TFLM. */
static int16_t rounding_divide_by_pot_16(int16_t x, int32_t exponent) {
  const int16_t mask = (int16_t)(((int64_t)1 << exponent) - 1);
  const int16_t remainder = (int16_t)(x & mask);
  const int16_t threshold = (int16_t)((mask >> 1) + (x < 0 ? 1 : 0));
  return (int16_t)((x >> exponent) + (remainder > threshold ? 1 : 0));
}

static int16_t saturating_left_shift_16(int16_t value, int32_t amount) {
  const int64_t result = (int64_t)value * ((int64_t)1 << amount);
  return (int16_t)(result > INT16_MAX
                       ? INT16_MAX
                       : (result < INT16_MIN ? INT16_MIN : result));
}

static int8_t hard_swish_one(int32_t q, const hard_swish_data* d) {
  /* |q - zero point| <= 255, so the value on the high-resolution scale
   * (times 2^7) fits int16. */
  const int16_t hires = (int16_t)((q - d->input_zero_point) * (1 << 7));
  const int16_t preshift_output =
      rounding_doubling_high_mul_16(hires, (int16_t)d->output_multiplier);
  /* The input on the relu-ish scale (3.0 -> 32768), saturating: shift left
   * by all but one bit before the multiplier, so that only the last shift
   * can saturate, or round right after it. */
  int16_t reluish = hires;
  if (d->reluish_exponent > 0)
    reluish = saturating_left_shift_16(reluish, d->reluish_exponent - 1);
  reluish =
      rounding_doubling_high_mul_16(reluish, (int16_t)d->reluish_multiplier);
  if (d->reluish_exponent > 0) reluish = saturating_left_shift_16(reluish, 1);
  if (d->reluish_exponent < 0)
    reluish = rounding_divide_by_pot_16(reluish, -d->reluish_exponent);
  /* [-1, 1] -> [0, 1] */
  reluish = (int16_t)((reluish + (1 << 15)) >> 1);
  const int16_t preshift = doubling_high_mul_16(reluish, preshift_output);
  /* TFLM adds the zero point in int16, which can wrap. */
  const int16_t value =
      (int16_t)(rounding_divide_by_pot_16(preshift, -d->output_exponent) +
                d->output_zero_point);
  return (int8_t)tt_clamp_i32(value, -128, 127);
}

static tt_status eval(tt_interpreter* it, const tt_node* node) {
  const hard_swish_data* d = (const hard_swish_data*)tt_node_op_data(it, node);
  const int8_t* in =
      (const int8_t*)tt_tensor_data(it, tt_node_input(it, node, 0));
  int8_t* out = (int8_t*)tt_tensor_data(it, tt_node_output(it, node, 0));
  for (int32_t i = 0; i < d->num_elements; ++i)
    out[i] = hard_swish_one(in[i], d);
  return TT_OK;
}

const tt_kernel tt_kernel_hard_swish = {
    TT_OP_HARD_SWISH, "HARD_SWISH", TT_OPTIONS_HARD_SWISH, prepare, eval,
};
