/* The builtin operators this runtime can run, and their kernels (those a
 * firmware did not link are NULL: tt_kernel.h). */
#include <stddef.h>

#include "kernels/common/tt_kernel.h"
#include "model/tt_builtin_names.h"

extern const tt_kernel tt_kernel_add TT_KERNEL_IF_LINKED;
extern const tt_kernel tt_kernel_average_pool_2d TT_KERNEL_IF_LINKED;
extern const tt_kernel tt_kernel_concatenation TT_KERNEL_IF_LINKED;
extern const tt_kernel tt_kernel_conv_2d TT_KERNEL_IF_LINKED;
extern const tt_kernel tt_kernel_depthwise_conv_2d TT_KERNEL_IF_LINKED;
extern const tt_kernel tt_kernel_dequantize TT_KERNEL_IF_LINKED;
extern const tt_kernel tt_kernel_fully_connected TT_KERNEL_IF_LINKED;
extern const tt_kernel tt_kernel_max_pool_2d TT_KERNEL_IF_LINKED;
extern const tt_kernel tt_kernel_mean TT_KERNEL_IF_LINKED;
extern const tt_kernel tt_kernel_pad TT_KERNEL_IF_LINKED;
extern const tt_kernel tt_kernel_padv2 TT_KERNEL_IF_LINKED;
extern const tt_kernel tt_kernel_quantize TT_KERNEL_IF_LINKED;
extern const tt_kernel tt_kernel_relu TT_KERNEL_IF_LINKED;
extern const tt_kernel tt_kernel_relu6 TT_KERNEL_IF_LINKED;
extern const tt_kernel tt_kernel_reshape TT_KERNEL_IF_LINKED;
extern const tt_kernel tt_kernel_softmax TT_KERNEL_IF_LINKED;
extern const tt_kernel tt_kernel_squeeze TT_KERNEL_IF_LINKED;
extern const tt_kernel tt_kernel_mul TT_KERNEL_IF_LINKED;
extern const tt_kernel tt_kernel_sub TT_KERNEL_IF_LINKED;
extern const tt_kernel tt_kernel_logistic TT_KERNEL_IF_LINKED;
extern const tt_kernel tt_kernel_tanh TT_KERNEL_IF_LINKED;
extern const tt_kernel tt_kernel_hard_swish TT_KERNEL_IF_LINKED;
extern const tt_kernel tt_kernel_leaky_relu TT_KERNEL_IF_LINKED;
extern const tt_kernel tt_kernel_maximum TT_KERNEL_IF_LINKED;
extern const tt_kernel tt_kernel_minimum TT_KERNEL_IF_LINKED;
extern const tt_kernel tt_kernel_strided_slice TT_KERNEL_IF_LINKED;
extern const tt_kernel tt_kernel_transpose TT_KERNEL_IF_LINKED;
extern const tt_kernel tt_kernel_resize_nearest_neighbor TT_KERNEL_IF_LINKED;
extern const tt_kernel tt_kernel_split TT_KERNEL_IF_LINKED;
extern const tt_kernel tt_kernel_split_v TT_KERNEL_IF_LINKED;
extern const tt_kernel tt_kernel_expand_dims TT_KERNEL_IF_LINKED;

static const tt_kernel* const kKernels[] = {
    &tt_kernel_add,
    &tt_kernel_average_pool_2d,
    &tt_kernel_concatenation,
    &tt_kernel_conv_2d,
    &tt_kernel_depthwise_conv_2d,
    &tt_kernel_dequantize,
    &tt_kernel_fully_connected,
    &tt_kernel_max_pool_2d,
    &tt_kernel_mean,
    &tt_kernel_pad,
    &tt_kernel_padv2,
    &tt_kernel_quantize,
    &tt_kernel_relu,
    &tt_kernel_relu6,
    &tt_kernel_reshape,
    &tt_kernel_softmax,
    &tt_kernel_squeeze,
    &tt_kernel_mul,
    &tt_kernel_sub,
    &tt_kernel_logistic,
    &tt_kernel_tanh,
    &tt_kernel_hard_swish,
    &tt_kernel_leaky_relu,
    &tt_kernel_maximum,
    &tt_kernel_minimum,
    &tt_kernel_strided_slice,
    &tt_kernel_transpose,
    &tt_kernel_resize_nearest_neighbor,
    &tt_kernel_split,
    &tt_kernel_split_v,
    &tt_kernel_expand_dims,
};

#define NUM_KERNELS ((int32_t)(sizeof kKernels / sizeof kKernels[0]))

const tt_kernel* tt_kernel_find(int32_t builtin_code, int32_t* index) {
  for (int32_t i = 0; i < NUM_KERNELS; ++i) {
    if (kKernels[i] != NULL && kKernels[i]->builtin_code == builtin_code) {
      *index = i;
      return kKernels[i];
    }
  }
  return NULL;
}

const tt_kernel* tt_kernel_at(int32_t index) {
  return (index >= 0 && index < NUM_KERNELS) ? kKernels[index] : NULL;
}
