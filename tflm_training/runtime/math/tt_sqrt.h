/* A correctly rounded single-precision square root in integer arithmetic:
 * no libm, no compiler builtin, no FPU instruction, so the host and the
 * Cortex-M4 give the same bits, and those bits are IEEE 754's (the exact
 * square root rounded to nearest; tests/test_lowrank.py compares it with
 * numpy's float32 sqrt over a large sample of all float32 values). */
#ifndef TFLM_TRAINING_TT_SQRT_H_
#define TFLM_TRAINING_TT_SQRT_H_

/* sqrt(x) rounded to nearest: +0 for +0, -0 for -0, +infinity for
 * +infinity, NaN for NaN and for any x < 0. Subnormal x are exact too. */
float tt_sqrtf(float x);

#endif /* TFLM_TRAINING_TT_SQRT_H_ */
