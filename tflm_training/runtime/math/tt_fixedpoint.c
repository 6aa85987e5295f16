#include "math/tt_fixedpoint.h"

#include "math/tt_quant.h"

static int32_t wrapping_add(int32_t a, int32_t b) {
  return (int32_t)((uint32_t)a + (uint32_t)b);
}

static int32_t wrapping_sub(int32_t a, int32_t b) {
  return (int32_t)((uint32_t)a - (uint32_t)b);
}

int32_t tt_count_leading_zeros_u32(uint32_t x) {
  if (x == 0) return 32;
  int32_t n = 0;
  while ((x & 0x80000000u) == 0) {
    x <<= 1;
    ++n;
  }
  return n;
}

int32_t tt_fp_rounding_half_sum(int32_t a, int32_t b) {
  const int64_t sum = (int64_t)a + (int64_t)b;
  const int64_t sign = sum >= 0 ? 1 : -1;
  return (int32_t)((sum + sign) / 2);
}

int32_t tt_fp_mul(int32_t a, int32_t b) {
  return tt_saturating_rounding_doubling_high_mul(a, b);
}

int32_t tt_fp_saturating_rounding_mul_by_pot(int32_t x, int32_t exponent) {
  if (exponent < 0) return tt_rounding_divide_by_pot(x, -exponent);
  if (exponent == 0) return x;
  const int64_t threshold = ((int64_t)1 << (31 - exponent)) - 1;
  if (x > threshold) return INT32_MAX;
  if (x < -threshold) return INT32_MIN;
  return (int32_t)((int64_t)x * ((int64_t)1 << exponent));
}

int32_t tt_fp_rescale(int32_t x, int32_t src_integer_bits,
                      int32_t dst_integer_bits) {
  return tt_fp_saturating_rounding_mul_by_pot(
      x, src_integer_bits - dst_integer_bits);
}

int32_t tt_fp_exp_on_interval_between_negative_one_quarter_and_0_excl(
    int32_t a) {
  /* Taylor expansion around -1/8: exp(-1/8) * exp(x) with x = a + 1/8,
   * exp(x) ~ 1 + x + x^2/2 + x^3/6 + x^4/24. */
  const int32_t exp_minus_one_eighth = 1895147668; /* Q0.31 */
  const int32_t one_third = 715827883;             /* Q0.31 */
  const int32_t x = wrapping_add(a, (int32_t)1 << 28);
  const int32_t x2 = tt_fp_mul(x, x);
  const int32_t x3 = tt_fp_mul(x2, x);
  const int32_t x4 = tt_fp_mul(x2, x2);
  const int32_t x4_over_4 = tt_fp_saturating_rounding_mul_by_pot(x4, -2);
  const int32_t higher_terms = tt_fp_saturating_rounding_mul_by_pot(
      wrapping_add(tt_fp_mul(wrapping_add(x4_over_4, x3), one_third), x2), -1);
  return wrapping_add(
      exp_minus_one_eighth,
      tt_fp_mul(exp_minus_one_eighth, wrapping_add(x, higher_terms)));
}

int32_t tt_fp_exp_on_negative_values(int32_t a, int32_t integer_bits) {
  /* exp(-2^k) in Q0.31 for k = -2 .. 4: the factors for each bit of the
   * part of -a above 1/4. */
  static const int32_t kExpOfMinusPowerOfTwo[7] = {
      1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242,
  };
  const int32_t fractional_bits = 31 - integer_bits;
  const int32_t one_quarter = (int32_t)1 << (fractional_bits - 2);
  const int32_t a_mod_quarter_minus_quarter =
      wrapping_sub(a & (one_quarter - 1), one_quarter);
  int32_t result =
      tt_fp_exp_on_interval_between_negative_one_quarter_and_0_excl(
          tt_fp_rescale(a_mod_quarter_minus_quarter, integer_bits, 0));
  const int32_t remainder = wrapping_sub(a_mod_quarter_minus_quarter, a);
  for (int32_t k = -2; k <= 4; ++k) {
    if (integer_bits <= k) break;
    const int32_t bit = (int32_t)1 << (fractional_bits + k);
    if (remainder & bit)
      result = tt_fp_mul(result, kExpOfMinusPowerOfTwo[k + 2]);
  }
  if (integer_bits > 5) {
    /* Below -32 the result is flushed to zero. */
    const int32_t minus_32 = -((int32_t)1 << (36 - integer_bits));
    if (a < minus_32) result = 0;
  }
  if (a == 0) result = INT32_MAX;
  return result;
}

/* 2 / (1 + a) in Q2.29 for a in [0, 1) in Q0.31: Newton-Raphson on the
 * half denominator d = (1 + a) / 2 in [1/2, 1), starting from
 * 48/17 - 32/17 * d, three iterations. */
static int32_t two_over_one_plus_x(int32_t a) {
  const int32_t half_denominator = tt_fp_rounding_half_sum(a, INT32_MAX);
  const int32_t c48_over_17 = 1515870810;         /* Q2.29 */
  const int32_t c_minus_32_over_17 = -1010580540; /* Q2.29 */
  const int32_t one_q2 = (int32_t)1 << 29;
  int32_t x = wrapping_add(c48_over_17,
                           tt_fp_mul(half_denominator, c_minus_32_over_17));
  for (int32_t i = 0; i < 3; ++i) {
    const int32_t half_denominator_times_x = tt_fp_mul(half_denominator, x);
    const int32_t one_minus = wrapping_sub(one_q2, half_denominator_times_x);
    x = wrapping_add(x, tt_fp_rescale(tt_fp_mul(x, one_minus), 4, 2));
  }
  return x;
}

int32_t tt_fp_one_over_one_plus_x_for_x_in_0_1(int32_t a) {
  /* 2 / (1 + a) halved is a Q2 -> Q1 relabel of the same raw value. */
  return tt_fp_rescale(two_over_one_plus_x(a), 1, 0);
}

int32_t tt_fp_one_minus_x_over_one_plus_x_for_x_in_0_1(int32_t a) {
  /* (1 - a) / (1 + a) = 2 / (1 + a) - 1. */
  return tt_fp_rescale(wrapping_sub(two_over_one_plus_x(a), (int32_t)1 << 29),
                       2, 0);
}

int32_t tt_fp_logistic(int32_t a, int32_t integer_bits) {
  if (a == 0) return (int32_t)1 << 30; /* one half */
  /* logistic(|a|) = 1 / (1 + exp(-|a|)); logistic(-|a|) = 1 - that. */
  const int32_t minus_abs = a > 0 ? wrapping_sub(0, a) : a;
  const int32_t positive = tt_fp_one_over_one_plus_x_for_x_in_0_1(
      tt_fp_exp_on_negative_values(minus_abs, integer_bits));
  return a > 0 ? positive : wrapping_sub(INT32_MAX, positive);
}

int32_t tt_fp_tanh(int32_t a, int32_t integer_bits) {
  if (a == 0) return 0;
  /* -tanh(-|a|) = (1 - exp(-2|a|)) / (1 + exp(-2|a|)); doubling is a
   * relabel to one more integer bit. */
  const int32_t minus_abs = a < 0 ? a : wrapping_sub(0, a);
  const int32_t t = tt_fp_one_minus_x_over_one_plus_x_for_x_in_0_1(
      tt_fp_exp_on_negative_values(minus_abs, integer_bits + 1));
  return a < 0 ? wrapping_sub(0, t) : t;
}

int32_t tt_fp_reciprocal(int32_t x, int32_t integer_bits,
                         int32_t* num_bits_over_unit) {
  const int32_t headroom_plus_one = tt_count_leading_zeros_u32((uint32_t)x);
  *num_bits_over_unit = integer_bits - headroom_plus_one;
  /* x scaled into [1, 2) (top bit set), minus one, read as Q0.31. */
  const int32_t shifted_minus_one =
      (int32_t)(((uint32_t)x << headroom_plus_one) - 0x80000000u);
  return tt_fp_one_over_one_plus_x_for_x_in_0_1(shifted_minus_one);
}
