/* Integer requantization arithmetic with TFLite Micro's exact rounding:
 * gemmlowp-style double rounding (a saturating rounding doubling high
 * multiply, then a rounding right shift). Pure functions, shared by every
 * kernel on host and MCU. Signed overflow wraps (built with -fwrapv), as
 * it does on the machines TFLM runs on. */
#ifndef TFLM_TRAINING_TT_QUANT_H_
#define TFLM_TRAINING_TT_QUANT_H_

#include <stdbool.h>
#include <stdint.h>

/* Round half away from zero, like std::round, without libm. */
double tt_round_double(double x);
static inline float tt_round_float(float x) {
  if (!(x > -8388608.0f && x < 8388608.0f)) return x; /* whole already */
  const float whole = (float)(int32_t)x;
  const float rest = x - whole;
  if (rest >= 0.5f) return whole + 1.0f;
  if (rest <= -0.5f) return whole - 1.0f;
  return whole;
}
/* x = fraction * 2^exponent with |fraction| in [0.5, 1), like frexp. */
double tt_frexp(double x, int32_t* exponent);

/* Splits a real multiplier into a Q31 multiplier and a power-of-two shift
 * (positive = left). False for NaN, infinity or negative input. */
bool tt_quantize_multiplier(double real_multiplier, int32_t* multiplier,
                            int32_t* shift);

int32_t tt_saturating_rounding_doubling_high_mul(int32_t a, int32_t b);
int32_t tt_rounding_divide_by_pot(int32_t x, int32_t exponent);
int32_t tt_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier,
                                            int32_t shift);
/* The variants TFLM uses where the shift sign is known. */
int32_t tt_multiply_by_quantized_multiplier_smaller_than_one(
    int32_t x, int32_t multiplier, int32_t left_shift);
int32_t tt_multiply_by_quantized_multiplier_greater_than_one(
    int32_t x, int32_t multiplier, int32_t left_shift);

/* Clamp range of a fused activation (TT_ACTIVATION_*) on a quantized
 * output. False for an activation that has no integer range. */
bool tt_activation_range_quantized(int32_t activation, float scale,
                                   int32_t zero_point, int32_t qmin,
                                   int32_t qmax, int32_t* act_min,
                                   int32_t* act_max);

/* Output size and leading padding of a windowed op (conv, pool). */
int32_t tt_window_output_size(int32_t padding, int32_t in_size,
                              int32_t filter_size, int32_t stride,
                              int32_t dilation);
int32_t tt_window_padding(int32_t in_size, int32_t filter_size, int32_t stride,
                          int32_t dilation, int32_t out_size);

static inline int32_t tt_clamp_i32(int32_t x, int32_t lo, int32_t hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}

#endif /* TFLM_TRAINING_TT_QUANT_H_ */
