#include "math/tt_sqrt.h"

#include <stdint.h>
#include <string.h>

/* floor(sqrt(n)) for n < 2^50, digit by digit (two bits of n per result
 * bit); shifts, adds and compares only. */
static uint32_t isqrt_u64(uint64_t n) {
  uint64_t root = 0;
  uint64_t bit = (uint64_t)1 << 50; /* highest power of 4 that can fit */
  while (bit > n) bit >>= 2;
  while (bit != 0) {
    if (n >= root + bit) {
      n -= root + bit;
      root = (root >> 1) + bit;
    } else {
      root >>= 1;
    }
    bit >>= 2;
  }
  return (uint32_t)root;
}

float tt_sqrtf(float x) {
  uint32_t bits;
  memcpy(&bits, &x, sizeof bits);
  const uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude == 0) return x;              /* +0, -0 */
  if (magnitude > 0x7f800000u) return x + x; /* NaN stays NaN */
  if (bits & 0x80000000u) {                  /* x < 0: NaN */
    const uint32_t nan = 0x7fc00000u;
    float result;
    memcpy(&result, &nan, sizeof result);
    return result;
  }
  if (magnitude == 0x7f800000u) return x; /* +infinity */
  /* x = mantissa * 2^exponent with mantissa in [2^23, 2^24). */
  int32_t exponent = (int32_t)(magnitude >> 23);
  uint32_t mantissa = magnitude & 0x7fffffu;
  if (exponent == 0) { /* subnormal */
    exponent = 1;
    while ((mantissa & 0x800000u) == 0) {
      mantissa <<= 1;
      --exponent;
    }
  } else {
    mantissa |= 0x800000u;
  }
  exponent -= 150;
  /* M = mantissa * 2^shift in [2^48, 2^50) with exponent - shift even,
   * so sqrt(x) = sqrt(M) * 2^((exponent - shift) / 2) exactly and
   * q = floor(sqrt(M)) in [2^24, 2^25) has one bit below the result. */
  const int32_t shift = ((uint32_t)(exponent - 25) & 1u) == 0 ? 25 : 26;
  const uint32_t q = isqrt_u64((uint64_t)mantissa << shift);
  /* sqrt(M) never lies exactly halfway between two 24-bit results (the
   * square root of a float is never a tie), so rounding the half up is
   * rounding to nearest. q + 1 < 2^25 here, so no carry into the
   * exponent. */
  const uint32_t result_mantissa = (q + 1) >> 1; /* in [2^23, 2^24) */
  const int32_t result_exponent = (exponent - shift) / 2 + 1 + 150;
  const uint32_t result_bits =
      ((uint32_t)result_exponent << 23) | (result_mantissa & 0x7fffffu);
  float result;
  memcpy(&result, &result_bits, sizeof result);
  return result;
}
