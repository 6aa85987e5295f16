/* tests/test_lowrank.py's entry point for tt_sqrtf (runtime/math/tt_sqrt.c):
 * square roots of many float32 values in one call, so a large sample can
 * be compared with numpy's float32 sqrt. Built with the runtime's flags. */
#include <stddef.h>

#include "math/tt_sqrt.h"

void sqrt_sample(const float* in, float* out, size_t count) {
  for (size_t i = 0; i < count; ++i) out[i] = tt_sqrtf(in[i]);
}
