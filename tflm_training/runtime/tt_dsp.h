/* The Cortex-M4's DSP extension: two 16-bit multiply-accumulates per
 * instruction (SMLAD) on bytes sign-extended in pairs (SXTB16, SXTAB16).
 * Used where the compiler targets a core that has it (__ARM_FEATURE_DSP);
 * the portable C next to each use is the reference and the host build.
 * Both compute the same integers: products of int8 values and offsets
 * summed into int32 with wrap-around, in any order. */
#ifndef TFLM_TRAINING_TT_DSP_H_
#define TFLM_TRAINING_TT_DSP_H_

#include <stdint.h>
#include <string.h>

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define TT_HAVE_DSP 1
#include <arm_acle.h>

/* Four bytes from any address (the M4 loads words unaligned). */
static inline uint32_t tt_dsp_load4(const int8_t* p) {
  uint32_t word;
  memcpy(&word, p, sizeof word);
  return word;
}

static inline uint32_t tt_dsp_ror8(uint32_t word) {
  return (word >> 8) | (word << 24);
}

/* Bytes 0 and 2 (even) and 1 and 3 (odd) of `word` as int16 pairs, each
 * plus the matching half of `offsets` (the sums must fit int16). */
static inline void tt_dsp_widen(uint32_t word, int16x2_t offsets,
                                int16x2_t* even, int16x2_t* odd) {
  *even = __sxtab16(offsets, word);
  *odd = __sxtab16(offsets, tt_dsp_ror8(word));
}

/* acc + the four products of `even`/`odd` with the bytes of `weights`. */
static inline int32_t tt_dsp_mac4(int32_t acc, int16x2_t even, int16x2_t odd,
                                  uint32_t weights) {
  acc = __smlad(even, __sxtb16(weights), acc);
  return __smlad(odd, __sxtb16(tt_dsp_ror8(weights)), acc);
}

/* The same 16-bit value in both halves. */
static inline int16x2_t tt_dsp_pair(int32_t value) {
  return (int16x2_t)(((uint32_t)value & 0xFFFFu) * 0x10001u);
}
#else
#define TT_HAVE_DSP 0
#endif

#endif /* TFLM_TRAINING_TT_DSP_H_ */
