/* What the elementwise int8 kernels share: validation of a unary node,
 * numpy-style broadcasting of a binary node and the walk over its output,
 * and the rescaling arithmetic of ADD and SUB. */
#ifndef TFLM_TRAINING_TT_ELEMENTWISE_H_
#define TFLM_TRAINING_TT_ELEMENTWISE_H_

#include "kernels/common/tt_kernel.h"

/* One input and one output of the same shape, both INT8, the input
 * quantized per tensor. The output's quantization is the kernel's to check
 * (some of TFLM's kernels ignore it). */
tt_status tt_unary_int8_prepare(tt_interpreter* interpreter,
                                const tt_node* node, const tt_tensor** input,
                                const tt_tensor** output);

typedef struct {
  int32_t num_elements;
  int32_t broadcast; /* 0: both inputs have the output's elements in order */
  /* When broadcasting: the output shape right-aligned to TT_MAX_RANK
   * dimensions and each input's element stride per dimension, 0 where the
   * input is broadcast along it. */
  int32_t dims[TT_MAX_RANK];
  int32_t strides1[TT_MAX_RANK];
  int32_t strides2[TT_MAX_RANK];
} tt_broadcast_params;

/* Checks that the input shapes broadcast to the output's shape. */
tt_status tt_broadcast_prepare(tt_interpreter* interpreter, const tt_node* node,
                               const tt_tensor* input1, const tt_tensor* input2,
                               const tt_tensor* output,
                               tt_broadcast_params* params);

/* Computes out[k] = f(in1[k * step1], in2[k * step2]) for k < count. */
typedef void (*tt_binary_row_fn)(const int8_t* in1, int32_t step1,
                                 const int8_t* in2, int32_t step2, int8_t* out,
                                 int32_t count, const void* op_params);

/* Fills the whole output in order, one row (innermost dimension, or the
 * whole tensor when nothing broadcasts) per call of row. */
void tt_broadcast_run(const tt_broadcast_params* params, const int8_t* in1,
                      const int8_t* in2, int8_t* out, tt_binary_row_fn row,
                      const void* op_params);

/* ADD and SUB, int8, as TFLM's reference kernels compute them: both
 * inputs are shifted left by 20 bits and rescaled to a common scale (twice
 * the larger input scale), added or subtracted, rescaled to the output and
 * clamped by the fused activation (option field 0 of AddOptions and
 * SubOptions). Shapes broadcast numpy-style. */
tt_status tt_add_sub_prepare(tt_interpreter* interpreter, tt_node* node,
                             bool subtract);
tt_status tt_add_sub_eval(tt_interpreter* interpreter, const tt_node* node);

/* The clamp range of a fused activation on an int8 output; fails with
 * TT_ERR_UNSUPPORTED for one without an integer range. */
tt_status tt_fused_activation_range(tt_interpreter* interpreter,
                                    const tt_node* node, int32_t activation,
                                    const tt_tensor* output,
                                    int32_t* activation_min,
                                    int32_t* activation_max);

#endif /* TFLM_TRAINING_TT_ELEMENTWISE_H_ */
