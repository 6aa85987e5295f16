/* Float math for training, written out so that the host and the Cortex-M4
 * compute identical bits: only IEEE single-precision +, -, *, / (no libm,
 * no fused multiply-add: built with -ffp-contract=off). Results are within
 * a few units in the last place of the true values. */
#ifndef TFLM_TRAINING_TT_MATH_H_
#define TFLM_TRAINING_TT_MATH_H_

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* False for NaN and +-infinity (inline: the optimizer asks per weight). */
static inline bool tt_is_finite(float x) {
  uint32_t bits;
  memcpy(&bits, &x, sizeof bits);
  return (bits & 0x7f800000u) != 0x7f800000u;
}

/* e^x: +infinity above 88.72, 0 below -87.33 (no subnormal results). */
float tt_expf(float x);

/* Natural logarithm: -infinity for 0, NaN for negative x or NaN. */
float tt_logf(float x);

#endif /* TFLM_TRAINING_TT_MATH_H_ */
