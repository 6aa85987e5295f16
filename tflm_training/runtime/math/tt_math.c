#include "math/tt_math.h"

#include <stdint.h>
#include <string.h>

#include "math/tt_quant.h"

/* ln 2 split so that k * LN2_HI is exact for |k| < 2^11. */
#define LN2_HI 0.693145751953125f
#define LN2_LO 1.42860676533018704e-06f
#define LOG2_E 1.44269504088896341f

static uint32_t bits_of(float x) {
  uint32_t bits;
  memcpy(&bits, &x, sizeof bits);
  return bits;
}

static float float_of(uint32_t bits) {
  float x;
  memcpy(&x, &bits, sizeof x);
  return x;
}

float tt_expf(float x) {
  if (x != x) return x;
  if (x > 88.72283f) return float_of(0x7f800000u);
  if (x < -87.33654f) return 0.0f;
  /* x = k ln2 + r with |r| <= ln2 / 2; e^r by its Taylor series to r^7
   * (truncation error below 6e-9), then scaled by 2^k. */
  const float k = tt_round_float(x * LOG2_E);
  const float r = (x - k * LN2_HI) - k * LN2_LO;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t exponent = (int32_t)k; /* in [-126, 128] */
  if (exponent > 127) return (p * 2.0f) * float_of(127u << 23);
  return p * float_of((uint32_t)(exponent + 127) << 23);
}

float tt_logf(float x) {
  if (x != x || x < 0.0f) return float_of(0x7fc00000u);
  if (x == 0.0f) return float_of(0xff800000u);
  if (!tt_is_finite(x)) return x;
  int32_t exponent = 0;
  if (x < 1.17549435e-38f) { /* subnormal: normalise */
    x *= 8388608.0f;
    exponent = -23;
  }
  const uint32_t bits = bits_of(x);
  exponent += (int32_t)(bits >> 23) - 127;
  float m = float_of((bits & 0x007fffffu) | 0x3f800000u); /* [1, 2) */
  if (m > 1.41421356f) {
    m *= 0.5f;
    ++exponent;
  }
  /* log m = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716: the odd
   * series to s^11 leaves an error below 1e-10. */
  const float s = (m - 1.0f) / (m + 1.0f);
  const float s2 = s * s;
  float p = 1.0f / 11.0f;
  p = p * s2 + 1.0f / 9.0f;
  p = p * s2 + 1.0f / 7.0f;
  p = p * s2 + 1.0f / 5.0f;
  p = p * s2 + 1.0f / 3.0f;
  p = p * s2 + 1.0f;
  const float log_m = 2.0f * s * p;
  const float e = (float)exponent;
  return e * LN2_HI + (e * LN2_LO + log_m);
}
