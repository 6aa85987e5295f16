/* The builtin operators this runtime can run, and their kernels. */
#include <stddef.h>

#include "tt_builtin_names.h"
#include "tt_kernel.h"

extern const tt_kernel tt_kernel_add;
extern const tt_kernel tt_kernel_average_pool_2d;
extern const tt_kernel tt_kernel_concatenation;
extern const tt_kernel tt_kernel_conv_2d;
extern const tt_kernel tt_kernel_depthwise_conv_2d;
extern const tt_kernel tt_kernel_dequantize;
extern const tt_kernel tt_kernel_fully_connected;
extern const tt_kernel tt_kernel_max_pool_2d;
extern const tt_kernel tt_kernel_mean;
extern const tt_kernel tt_kernel_pad;
extern const tt_kernel tt_kernel_padv2;
extern const tt_kernel tt_kernel_quantize;
extern const tt_kernel tt_kernel_relu;
extern const tt_kernel tt_kernel_relu6;
extern const tt_kernel tt_kernel_reshape;
extern const tt_kernel tt_kernel_softmax;
extern const tt_kernel tt_kernel_squeeze;
extern const tt_kernel tt_kernel_mul;
extern const tt_kernel tt_kernel_sub;
extern const tt_kernel tt_kernel_logistic;
extern const tt_kernel tt_kernel_tanh;
extern const tt_kernel tt_kernel_hard_swish;
extern const tt_kernel tt_kernel_leaky_relu;
extern const tt_kernel tt_kernel_maximum;
extern const tt_kernel tt_kernel_minimum;
extern const tt_kernel tt_kernel_strided_slice;
extern const tt_kernel tt_kernel_transpose;
extern const tt_kernel tt_kernel_resize_nearest_neighbor;
extern const tt_kernel tt_kernel_split;
extern const tt_kernel tt_kernel_split_v;
extern const tt_kernel tt_kernel_expand_dims;

static const tt_kernel* const kKernels[] = {
    &tt_kernel_add,         &tt_kernel_average_pool_2d,
    &tt_kernel_concatenation, &tt_kernel_conv_2d,
    &tt_kernel_depthwise_conv_2d, &tt_kernel_dequantize,
    &tt_kernel_fully_connected, &tt_kernel_max_pool_2d,
    &tt_kernel_mean,        &tt_kernel_pad,
    &tt_kernel_padv2,       &tt_kernel_quantize,
    &tt_kernel_relu,        &tt_kernel_relu6,
    &tt_kernel_reshape,     &tt_kernel_softmax,
    &tt_kernel_squeeze,     &tt_kernel_mul,
    &tt_kernel_sub,         &tt_kernel_logistic,
    &tt_kernel_tanh,        &tt_kernel_hard_swish,
    &tt_kernel_leaky_relu,  &tt_kernel_maximum,
    &tt_kernel_minimum,     &tt_kernel_strided_slice,
    &tt_kernel_transpose,   &tt_kernel_resize_nearest_neighbor,
    &tt_kernel_split,       &tt_kernel_split_v,
    &tt_kernel_expand_dims,
};

#define NUM_KERNELS ((int32_t)(sizeof kKernels / sizeof kKernels[0]))

const tt_kernel* tt_kernel_find(int32_t builtin_code, int32_t* index) {
  for (int32_t i = 0; i < NUM_KERNELS; ++i) {
    if (kKernels[i]->builtin_code == builtin_code) {
      *index = i;
      return kKernels[i];
    }
  }
  return NULL;
}

const tt_kernel* tt_kernel_at(int32_t index) {
  return (index >= 0 && index < NUM_KERNELS) ? kKernels[index] : NULL;
}

const char* tt_builtin_name(int32_t builtin_code) {
  const char* name = tt_builtin_names_lookup(builtin_code);
  return name ? name : "an operator unknown to this schema version";
}

const char* tt_type_name(int32_t type) {
  static const char* const kNames[] = {
      "FLOAT32", "FLOAT16", "INT32", "UINT8",  "INT64",   "STRING",
      "BOOL",    "INT16",   "COMPLEX64", "INT8", "FLOAT64", "COMPLEX128",
      "UINT64",  "RESOURCE", "VARIANT", "UINT32", "UINT16", "INT4",
  };
  if (type < 0 || type >= (int32_t)(sizeof kNames / sizeof kNames[0]))
    return "an unknown type";
  return kNames[type];
}
