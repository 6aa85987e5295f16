#include "math/tt_quant.h"

#include <string.h>

#include "model/tt_schema.h"

double tt_round_double(double x) {
  if (!(x > -4503599627370496.0 && x < 4503599627370496.0)) return x;
  const double whole = (double)(int64_t)x; /* truncates toward zero */
  const double rest = x - whole;           /* exact */
  if (rest >= 0.5) return whole + 1.0;
  if (rest <= -0.5) return whole - 1.0;
  return whole;
}

double tt_frexp(double x, int32_t* exponent) {
  uint64_t bits;
  memcpy(&bits, &x, sizeof bits);
  int32_t biased = (int32_t)((bits >> 52) & 0x7ff);
  *exponent = 0;
  if (x == 0.0 || biased == 0x7ff) return x; /* zero, inf, nan */
  if (biased == 0) {                         /* subnormal: normalise first */
    x *= 18014398509481984.0;                /* 2^54 */
    memcpy(&bits, &x, sizeof bits);
    biased = (int32_t)((bits >> 52) & 0x7ff) - 54;
  }
  *exponent = biased - 1022;
  bits = (bits & ~((uint64_t)0x7ff << 52)) | ((uint64_t)1022 << 52);
  memcpy(&x, &bits, sizeof bits);
  return x;
}

bool tt_quantize_multiplier(double real_multiplier, int32_t* multiplier,
                            int32_t* shift) {
  *multiplier = 0;
  *shift = 0;
  if (!(real_multiplier >= 0.0) || real_multiplier > 1.0e300) return false;
  if (real_multiplier == 0.0) return true;
  int32_t exponent;
  const double fraction = tt_frexp(real_multiplier, &exponent);
  int64_t q_fixed = (int64_t)tt_round_double(fraction * 2147483648.0);
  if (q_fixed == ((int64_t)1 << 31)) {
    q_fixed /= 2;
    ++exponent;
  }
  if (exponent < -31) {
    exponent = 0;
    q_fixed = 0;
  }
  *multiplier = (int32_t)q_fixed;
  *shift = exponent;
  return true;
}

int32_t tt_saturating_rounding_doubling_high_mul(int32_t a, int32_t b) {
  if (a == b && a == INT32_MIN) return INT32_MAX;
  /* TFLM rounds half away from zero: (ab + 2^30) / 2^31 for ab >= 0 and
   * (ab + 1 - 2^30) / 2^31, truncated, below. Writing ab = k 2^31 + r
   * with 0 <= r < 2^31, both are k + (r >= 2^30), which is one floor:
   * an add and an arithmetic shift (SMULL, ADDS, ADC and a funnel shift
   * on a Cortex-M4 instead of a branch and a 64-bit division). */
  const int64_t ab = (int64_t)a * (int64_t)b;
  return (int32_t)((ab + ((int64_t)1 << 30)) >> 31);
}

int32_t tt_rounding_divide_by_pot(int32_t x, int32_t exponent) {
  const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

int32_t tt_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier,
                                            int32_t shift) {
  const int32_t left_shift = shift > 0 ? shift : 0;
  const int32_t right_shift = shift > 0 ? 0 : -shift;
  return tt_rounding_divide_by_pot(
      tt_saturating_rounding_doubling_high_mul(
          (int32_t)((uint32_t)x << left_shift), multiplier),
      right_shift);
}

int32_t tt_multiply_by_quantized_multiplier_smaller_than_one(
    int32_t x, int32_t multiplier, int32_t left_shift) {
  return tt_rounding_divide_by_pot(
      tt_saturating_rounding_doubling_high_mul(x, multiplier), -left_shift);
}

int32_t tt_multiply_by_quantized_multiplier_greater_than_one(
    int32_t x, int32_t multiplier, int32_t left_shift) {
  return tt_saturating_rounding_doubling_high_mul(
      (int32_t)((uint32_t)x << left_shift), multiplier);
}

static bool quantize_value(float scale, int32_t zero_point, float value,
                           int32_t* q) {
  const float rounded = tt_round_float(value / scale);
  if (!(rounded >= -2147483648.0f && rounded <= 2147483520.0f)) return false;
  const int64_t q64 = (int64_t)zero_point + (int32_t)rounded;
  if (q64 < INT32_MIN || q64 > INT32_MAX) return false;
  *q = (int32_t)q64;
  return true;
}

bool tt_activation_range_quantized(int32_t activation, float scale,
                                   int32_t zero_point, int32_t qmin,
                                   int32_t qmax, int32_t* act_min,
                                   int32_t* act_max) {
  int32_t lo = qmin, hi = qmax, q;
  switch (activation) {
    case TT_ACTIVATION_NONE:
      break;
    case TT_ACTIVATION_RELU:
      if (!quantize_value(scale, zero_point, 0.0f, &q)) return false;
      lo = q > qmin ? q : qmin;
      break;
    case TT_ACTIVATION_RELU6:
    case TT_ACTIVATION_RELU_N1_TO_1: {
      const bool relu6 = activation == TT_ACTIVATION_RELU6;
      if (!quantize_value(scale, zero_point, relu6 ? 0.0f : -1.0f, &q))
        return false;
      lo = q > qmin ? q : qmin;
      if (!quantize_value(scale, zero_point, relu6 ? 6.0f : 1.0f, &q))
        return false;
      hi = q < qmax ? q : qmax;
      break;
    }
    default:
      return false;
  }
  *act_min = lo;
  *act_max = hi;
  return true;
}

/* (int32_t)(n / d), n / d rounded toward zero, for d >= 1 and |n| < 2^32,
 * with a 32-bit division (a 64-bit one would link a large routine into
 * the firmware); beyond that range, the int32 limit of n's sign. */
static int32_t divide_toward_zero(int64_t n, int32_t d) {
  const int64_t limit = (int64_t)1 << 32;
  if (n >= limit) return INT32_MAX;
  if (n <= -limit) return INT32_MIN;
  const uint32_t quotient = (uint32_t)(n < 0 ? -n : n) / (uint32_t)d;
  return (int32_t)(n < 0 ? 0u - quotient : quotient);
}

int32_t tt_window_output_size(int32_t padding, int32_t in_size,
                              int32_t filter_size, int32_t stride,
                              int32_t dilation) {
  const int64_t effective = ((int64_t)filter_size - 1) * dilation + 1;
  if (stride < 1) return 0;
  if (padding == TT_PADDING_SAME) {
    return divide_toward_zero((int64_t)in_size + stride - 1, stride);
  }
  if (padding == TT_PADDING_VALID) {
    return divide_toward_zero(in_size - effective + stride, stride);
  }
  return 0;
}

int32_t tt_window_padding(int32_t in_size, int32_t filter_size, int32_t stride,
                          int32_t dilation, int32_t out_size) {
  const int64_t effective = ((int64_t)filter_size - 1) * dilation + 1;
  int64_t total = ((int64_t)out_size - 1) * stride + effective - in_size;
  if (total < 0) total = 0;
  return (int32_t)(total / 2);
}
