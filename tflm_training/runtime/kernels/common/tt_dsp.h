/* The Cortex-M4's DSP extension: two 16-bit multiply-accumulates per
 * instruction (SMLAD) on bytes sign-extended in pairs (SXTB16, SXTAB16).
 * Used where the compiler targets a core that has it (__ARM_FEATURE_DSP);
 * the portable C next to each use is the reference and the host build.
 * Both compute the same integers: products of int8 values and offsets
 * summed into int32 with wrap-around, in any order.
 *
 * Defining TT_EMULATE_DSP on a core without the extension builds the same
 * DSP paths on the instructions' definitions written in C (Arm ARM,
 * SMLAD / SXTB16 / SXTAB16), so that a host build can run them under the
 * sanitizers and against the portable path. */
#ifndef TFLM_TRAINING_TT_DSP_H_
#define TFLM_TRAINING_TT_DSP_H_

#include <stdint.h>
#include <string.h>

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define TT_HAVE_DSP 1
#include <arm_acle.h>

typedef int16x2_t tt_i16x2;

static inline tt_i16x2 tt_dsp_sxtb16(uint32_t word) {
  return __sxtb16((int8x4_t)word);
}

static inline tt_i16x2 tt_dsp_sxtab16(tt_i16x2 pair, uint32_t word) {
  return __sxtab16(pair, (int8x4_t)word);
}

static inline int32_t tt_dsp_smlad(tt_i16x2 a, tt_i16x2 b, int32_t acc) {
  return __smlad(a, b, acc);
}

/* acc + the products of the low (bottom) or the high (top) halves. */
static inline int32_t tt_dsp_smlabb(tt_i16x2 a, tt_i16x2 b, int32_t acc) {
  return __smlabb(a, b, acc);
}

static inline int32_t tt_dsp_smlatt(tt_i16x2 a, tt_i16x2 b, int32_t acc) {
  return __smlatt(a, b, acc);
}

/* SXTB16 / SXTAB16 of `word` rotated right by 8 bits, in one instruction
 * (GCC does not fold the rotation into the intrinsics). */
static inline tt_i16x2 tt_dsp_sxtb16_ror8(uint32_t word) {
  tt_i16x2 result;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(result) : "r"(word));
  return result;
}

static inline tt_i16x2 tt_dsp_sxtab16_ror8(tt_i16x2 pair, uint32_t word) {
  tt_i16x2 result;
  __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(result) : "r"(pair), "r"(word));
  return result;
}
#elif defined(TT_EMULATE_DSP)
#define TT_HAVE_DSP 1

typedef int32_t tt_i16x2;

static inline int32_t tt_dsp_half(tt_i16x2 pair, int32_t half) {
  return (int16_t)(uint16_t)((uint32_t)pair >> (16 * half));
}

static inline tt_i16x2 tt_dsp_halves(int32_t low, int32_t high) {
  return (tt_i16x2)(((uint32_t)low & 0xFFFFu) | ((uint32_t)high << 16));
}

static inline tt_i16x2 tt_dsp_sxtab16(tt_i16x2 pair, uint32_t word) {
  return tt_dsp_halves(tt_dsp_half(pair, 0) + (int8_t)(uint8_t)word,
                       tt_dsp_half(pair, 1) + (int8_t)(uint8_t)(word >> 16));
}

static inline tt_i16x2 tt_dsp_sxtb16(uint32_t word) {
  return tt_dsp_sxtab16(0, word);
}

static inline uint32_t tt_dsp_ror8(uint32_t word) {
  return (word >> 8) | (word << 24);
}

static inline tt_i16x2 tt_dsp_sxtb16_ror8(uint32_t word) {
  return tt_dsp_sxtb16(tt_dsp_ror8(word));
}

static inline tt_i16x2 tt_dsp_sxtab16_ror8(tt_i16x2 pair, uint32_t word) {
  return tt_dsp_sxtab16(pair, tt_dsp_ror8(word));
}

static inline int32_t tt_dsp_smlabb(tt_i16x2 a, tt_i16x2 b, int32_t acc) {
  return (int32_t)((uint32_t)acc +
                   (uint32_t)(tt_dsp_half(a, 0) * tt_dsp_half(b, 0)));
}

static inline int32_t tt_dsp_smlatt(tt_i16x2 a, tt_i16x2 b, int32_t acc) {
  return (int32_t)((uint32_t)acc +
                   (uint32_t)(tt_dsp_half(a, 1) * tt_dsp_half(b, 1)));
}

static inline int32_t tt_dsp_smlad(tt_i16x2 a, tt_i16x2 b, int32_t acc) {
  const uint32_t low = (uint32_t)(tt_dsp_half(a, 0) * tt_dsp_half(b, 0));
  const uint32_t high = (uint32_t)(tt_dsp_half(a, 1) * tt_dsp_half(b, 1));
  return (int32_t)((uint32_t)acc + low + high);
}
#else
#define TT_HAVE_DSP 0
#endif

#if TT_HAVE_DSP
/* Four bytes from any address (the M4 loads words unaligned). */
static inline uint32_t tt_dsp_load4(const int8_t* p) {
  uint32_t word;
  memcpy(&word, p, sizeof word);
  return word;
}

/* A pair as two int16 values (its low half at the lower address). */
static inline void tt_dsp_store_pair(int16_t* p, tt_i16x2 pair) {
  memcpy(p, &pair, sizeof pair);
}

/* Four int16 values from an 8-byte aligned address, as two pairs (one
 * LDRD). */
static inline void tt_dsp_load_pairs(const int16_t* p, tt_i16x2* first,
                                     tt_i16x2* second) {
  const int16_t* aligned = __builtin_assume_aligned(p, 8);
  tt_i16x2 pairs[2];
  memcpy(pairs, aligned, sizeof pairs);
  *first = pairs[0];
  *second = pairs[1];
}

/* Bytes 0 and 2 (even) and 1 and 3 (odd) of `word` as int16 pairs, each
 * plus the matching half of `offsets` (the sums must fit int16). */
static inline void tt_dsp_widen(uint32_t word, tt_i16x2 offsets, tt_i16x2* even,
                                tt_i16x2* odd) {
  *even = tt_dsp_sxtab16(offsets, word);
  *odd = tt_dsp_sxtab16_ror8(offsets, word);
}

/* acc + the four products of `even`/`odd` with the bytes of `weights`. */
static inline int32_t tt_dsp_mac4(int32_t acc, tt_i16x2 even, tt_i16x2 odd,
                                  uint32_t weights) {
  acc = tt_dsp_smlad(even, tt_dsp_sxtb16(weights), acc);
  return tt_dsp_smlad(odd, tt_dsp_sxtb16_ror8(weights), acc);
}

/* The same 16-bit value in both halves. */
static inline tt_i16x2 tt_dsp_pair(int32_t value) {
  return (tt_i16x2)(((uint32_t)value & 0xFFFFu) * 0x10001u);
}
#endif

#endif /* TFLM_TRAINING_TT_DSP_H_ */
