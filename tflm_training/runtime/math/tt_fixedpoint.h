/* Fixed-point helpers in the Q-format style of gemmlowp, which TFLite
 * Micro's quantized softmax is built on.
 *
 * A value is an int32 raw word read as Qm.(31-m): m integer bits after the
 * sign bit, 31-m fractional bits. Multiplying Qa by Qb gives Q(a+b)
 * (tt_fp_mul); changing m without changing the value is a rescale.
 * Intermediate additions wrap exactly as the reference does (its operands
 * are bounded so that they never do in practice). Pure functions, no libm. */
#ifndef TFLM_TRAINING_TT_FIXEDPOINT_H_
#define TFLM_TRAINING_TT_FIXEDPOINT_H_

#include <stdint.h>

/* Number of leading zero bits; 32 for 0. */
int32_t tt_count_leading_zeros_u32(uint32_t x);

/* (a + b) / 2 rounded to nearest, halves away from zero. */
int32_t tt_fp_rounding_half_sum(int32_t a, int32_t b);

/* Product of two raw values: Qa * Qb -> Q(a+b), rounded, saturating the
 * single overflow case (-1 * -1 in Q0). */
int32_t tt_fp_mul(int32_t a, int32_t b);

/* x * 2^exponent: a saturating left shift for exponent > 0, a rounding
 * right shift for exponent < 0. exponent in [-31, 31]. */
int32_t tt_fp_saturating_rounding_mul_by_pot(int32_t x, int32_t exponent);

/* The same value moved from Q(src_integer_bits) to Q(dst_integer_bits). */
int32_t tt_fp_rescale(int32_t x, int32_t src_integer_bits,
                      int32_t dst_integer_bits);

/* exp(a) for a in [-1/4, 0), both in Q0.31. */
int32_t tt_fp_exp_on_interval_between_negative_one_quarter_and_0_excl(
    int32_t a);

/* exp(a) for a <= 0 given in Q(integer_bits), integer_bits in [0, 29];
 * the result is Q0.31 (exp(0) is the largest Q0.31 value). */
int32_t tt_fp_exp_on_negative_values(int32_t a, int32_t integer_bits);

/* 1 / (1 + a) for a in [0, 1), both in Q0.31. */
int32_t tt_fp_one_over_one_plus_x_for_x_in_0_1(int32_t a);

/* (1 - a) / (1 + a) for a in [0, 1), both in Q0.31. */
int32_t tt_fp_one_minus_x_over_one_plus_x_for_x_in_0_1(int32_t a);

/* 1 / (1 + exp(-a)) and tanh(a) for a in Q(integer_bits), integer_bits in
 * [0, 28] (tanh) or [0, 29] (logistic); the result is Q0.31. */
int32_t tt_fp_logistic(int32_t a, int32_t integer_bits);
int32_t tt_fp_tanh(int32_t a, int32_t integer_bits);

/* For x > 0 in Q(integer_bits): a Q0.31 value r and *num_bits_over_unit
 * such that 1/x == r * 2^-num_bits_over_unit (approximately). */
int32_t tt_fp_reciprocal(int32_t x, int32_t integer_bits,
                         int32_t* num_bits_over_unit);

#endif /* TFLM_TRAINING_TT_FIXEDPOINT_H_ */
