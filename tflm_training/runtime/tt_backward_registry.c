/* The operators training can pass through, and their backward kernels
 * (kernels/<op>_backward.c). */
#include <stddef.h>

#include "tt_backward.h"

extern const tt_backward_kernel tt_backward_add;
extern const tt_backward_kernel tt_backward_average_pool_2d;
extern const tt_backward_kernel tt_backward_concatenation;
extern const tt_backward_kernel tt_backward_conv_2d;
extern const tt_backward_kernel tt_backward_depthwise_conv_2d;
extern const tt_backward_kernel tt_backward_expand_dims;
extern const tt_backward_kernel tt_backward_fully_connected;
extern const tt_backward_kernel tt_backward_max_pool_2d;
extern const tt_backward_kernel tt_backward_mean;
extern const tt_backward_kernel tt_backward_pad;
extern const tt_backward_kernel tt_backward_padv2;
extern const tt_backward_kernel tt_backward_quantize;
extern const tt_backward_kernel tt_backward_relu;
extern const tt_backward_kernel tt_backward_relu6;
extern const tt_backward_kernel tt_backward_reshape;
extern const tt_backward_kernel tt_backward_squeeze;
extern const tt_backward_kernel tt_backward_sub;

static const tt_backward_kernel* const kBackwardKernels[] = {
    &tt_backward_add,
    &tt_backward_average_pool_2d,
    &tt_backward_concatenation,
    &tt_backward_conv_2d,
    &tt_backward_depthwise_conv_2d,
    &tt_backward_expand_dims,
    &tt_backward_fully_connected,
    &tt_backward_max_pool_2d,
    &tt_backward_mean,
    &tt_backward_pad,
    &tt_backward_padv2,
    &tt_backward_quantize,
    &tt_backward_relu,
    &tt_backward_relu6,
    &tt_backward_reshape,
    &tt_backward_squeeze,
    &tt_backward_sub,
};

#define NUM_BACKWARD_KERNELS \
  ((int32_t)(sizeof kBackwardKernels / sizeof kBackwardKernels[0]))

const tt_backward_kernel* tt_backward_find(int32_t builtin_code) {
  for (int32_t i = 0; i < NUM_BACKWARD_KERNELS; ++i) {
    if (kBackwardKernels[i]->builtin_code == builtin_code) {
      return kBackwardKernels[i];
    }
  }
  return NULL;
}
