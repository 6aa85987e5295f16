/* How activation gradients are stored: float32 (the default), or bfloat16
 * with -DTT_GRADIENT_BITS=16, which halves every gradient buffer of the
 * training arena. A plan asks for 16 bits with TT_PLAN_FLAG_GRADIENTS_16
 * and the trainer refuses a plan whose width is not the build's.
 *
 * Arithmetic stays float32: kernels read a stored value with tt_grad_value
 * and change one with tt_grad_add, which rounds the float32 sum to nearest
 * even in the 16-bit build. In the 32-bit build both are the plain float
 * operations, so its bits are those of kernels written on float arrays.
 * Weight gradients, scratch and optimizer state are float32 in both. */
#ifndef TFLM_TRAINING_TT_GRAD_H_
#define TFLM_TRAINING_TT_GRAD_H_

#include <stdint.h>
#include <string.h>

#ifndef TT_GRADIENT_BITS
#define TT_GRADIENT_BITS 32
#endif

#if TT_GRADIENT_BITS == 32

typedef float tt_grad;

static inline float tt_grad_value(tt_grad g) { return g; }
static inline tt_grad tt_grad_from_float(float value) { return value; }

#elif TT_GRADIENT_BITS == 16

/* bfloat16: the top half of a float32 (sign, 8-bit exponent, 7 bits). */
typedef uint16_t tt_grad;

static inline float tt_grad_value(tt_grad g) {
  const uint32_t bits = (uint32_t)g << 16;
  float value;
  memcpy(&value, &bits, sizeof value);
  return value;
}

static inline tt_grad tt_grad_from_float(float value) {
  uint32_t bits;
  memcpy(&bits, &value, sizeof bits);
  /* A NaN stays a NaN (rounding could carry it into infinity). */
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return (tt_grad)(bits >> 16 | 0x40u);
  bits += 0x7FFFu + (bits >> 16 & 1u);
  return (tt_grad)(bits >> 16);
}

#else
#error "TT_GRADIENT_BITS must be 16 or 32"
#endif

/* *g += value, the sum rounded to the stored width. */
static inline void tt_grad_add(tt_grad* g, float value) {
  *g = tt_grad_from_float(tt_grad_value(*g) + value);
}

#endif /* TFLM_TRAINING_TT_GRAD_H_ */
