/* A strided gather shared by the data-movement kernels (TRANSPOSE,
 * STRIDED_SLICE): the output is written in order while the input offset
 * advances by a per-dimension step. Prepare fills the parameters so that
 * every input offset visited lies inside the input. */
#ifndef TFLM_TRAINING_TT_STRIDED_COPY_H_
#define TFLM_TRAINING_TT_STRIDED_COPY_H_

#include "tt_records.h"
#include "tt_status.h"

typedef struct {
  int32_t rank;               /* 1 .. TT_MAX_RANK */
  int32_t num_elements;       /* product of dims; 0 copies nothing */
  int32_t dims[TT_MAX_RANK];  /* output shape, walked in order */
  int32_t steps[TT_MAX_RANK]; /* input element step per output dimension */
  int32_t base;               /* input element of output element 0 */
} tt_strided_copy_params;

/* output[i0, i1, ...] = input[base + i0 * steps[0] + i1 * steps[1] ...],
 * elements of element_size (1, 2, 4 or 8) bytes. */
void tt_strided_copy(const tt_strided_copy_params* params, int32_t element_size,
                     const void* input, void* output);

#endif /* TFLM_TRAINING_TT_STRIDED_COPY_H_ */
