#include "kernels/common/tt_strided_copy.h"

#include <string.h>

/* count elements from in (every step-th) to out (contiguous). */
static void copy_row(const uint8_t* in, int32_t step, int32_t count,
                     int32_t size, uint8_t* out) {
  if (step == 1) {
    memcpy(out, in, (size_t)count * (size_t)size);
    return;
  }
  const int64_t stride = (int64_t)step * size;
  switch (size) {
    case 1:
      for (int32_t k = 0; k < count; ++k) out[k] = in[k * stride];
      break;
    default:
      for (int32_t k = 0; k < count; ++k)
        memcpy(out + (int64_t)k * size, in + k * stride, (size_t)size);
      break;
  }
}

void tt_strided_copy(const tt_strided_copy_params* p, int32_t element_size,
                     const void* input, void* output) {
  if (p->num_elements <= 0) return;
  const uint8_t* in = (const uint8_t*)input;
  uint8_t* out = (uint8_t*)output;
  const int32_t inner_dim = p->rank - 1;
  const int32_t inner = p->dims[inner_dim];
  const int64_t row_bytes = (int64_t)inner * element_size;
  /* An odometer over the outer dimensions keeps the input offset of each
   * row; the innermost dimension is one row. */
  int32_t index[TT_MAX_RANK] = {0};
  int64_t offset = p->base;
  for (int32_t done = 0; done < p->num_elements; done += inner) {
    copy_row(in + offset * element_size, p->steps[inner_dim], inner,
             element_size, out);
    out += row_bytes;
    for (int32_t d = inner_dim - 1; d >= 0; --d) {
      offset += p->steps[d];
      if (++index[d] < p->dims[d]) break;
      offset -= (int64_t)p->steps[d] * p->dims[d];
      index[d] = 0;
    }
  }
}
