/* What AVERAGE_POOL_2D and MAX_POOL_2D share: validation of an int8 NHWC
 * pooling node and the window geometry its eval walks. */
#ifndef TFLM_TRAINING_TT_POOL_PARAMS_H_
#define TFLM_TRAINING_TT_POOL_PARAMS_H_

#include "kernels/common/tt_kernel.h"

typedef struct {
  int32_t batches;
  int32_t input_height;
  int32_t input_width;
  int32_t depth;
  int32_t output_height;
  int32_t output_width;
  int32_t stride_height;
  int32_t stride_width;
  int32_t filter_height;
  int32_t filter_width;
  int32_t padding_height; /* leading padding rows */
  int32_t padding_width;
  int32_t activation_min;
  int32_t activation_max;
} tt_pool_params;

/* Checks the node (one int8 [N,H,W,C] input and output sharing the input's
 * quantization, Pool2DOptions) and fills params. */
tt_status tt_pool_prepare(tt_interpreter* interpreter, const tt_node* node,
                          tt_pool_params* params);

/* The part of the filter window of output (out_y, out_x) that lies inside
 * the input: filter rows [*y_start, *y_end), columns [*x_start, *x_end),
 * with the window's input origin in *in_y_origin / *in_x_origin. */
void tt_pool_window(const tt_pool_params* params, int32_t out_y, int32_t out_x,
                    int32_t* in_y_origin, int32_t* in_x_origin,
                    int32_t* y_start, int32_t* y_end, int32_t* x_start,
                    int32_t* x_end);

#endif /* TFLM_TRAINING_TT_POOL_PARAMS_H_ */
