/* The operators training can pass through, and their backward kernels
 * (kernels/<op>_backward.c). */
#include <stddef.h>

#include "kernels/common/tt_backward.h"

extern const tt_backward_kernel tt_backward_add TT_KERNEL_IF_LINKED;
extern const tt_backward_kernel tt_backward_average_pool_2d TT_KERNEL_IF_LINKED;
extern const tt_backward_kernel tt_backward_concatenation TT_KERNEL_IF_LINKED;
extern const tt_backward_kernel tt_backward_conv_2d TT_KERNEL_IF_LINKED;
extern const tt_backward_kernel tt_backward_depthwise_conv_2d
    TT_KERNEL_IF_LINKED;
extern const tt_backward_kernel tt_backward_expand_dims TT_KERNEL_IF_LINKED;
extern const tt_backward_kernel tt_backward_fully_connected TT_KERNEL_IF_LINKED;
extern const tt_backward_kernel tt_backward_max_pool_2d TT_KERNEL_IF_LINKED;
extern const tt_backward_kernel tt_backward_mean TT_KERNEL_IF_LINKED;
extern const tt_backward_kernel tt_backward_pad TT_KERNEL_IF_LINKED;
extern const tt_backward_kernel tt_backward_padv2 TT_KERNEL_IF_LINKED;
extern const tt_backward_kernel tt_backward_quantize TT_KERNEL_IF_LINKED;
extern const tt_backward_kernel tt_backward_relu TT_KERNEL_IF_LINKED;
extern const tt_backward_kernel tt_backward_relu6 TT_KERNEL_IF_LINKED;
extern const tt_backward_kernel tt_backward_reshape TT_KERNEL_IF_LINKED;
extern const tt_backward_kernel tt_backward_squeeze TT_KERNEL_IF_LINKED;
extern const tt_backward_kernel tt_backward_sub TT_KERNEL_IF_LINKED;

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
    if (kBackwardKernels[i] != NULL &&
        kBackwardKernels[i]->builtin_code == builtin_code) {
      return kBackwardKernels[i];
    }
  }
  return NULL;
}
