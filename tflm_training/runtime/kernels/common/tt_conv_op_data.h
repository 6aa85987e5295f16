/* Op data of FULLY_CONNECTED, CONV_2D and DEPTHWISE_CONV_2D: what their
 * prepare() stores and eval() reads, shared here with their backward twins
 * (kernels/<op>_backward.c) so that those reuse the shapes and clamps the
 * forward pass checked instead of deriving them again. Each struct is
 * followed in the arena by num_multipliers int32 multipliers, then as
 * many int8 shifts (tt_conv_params.h). */
#ifndef TFLM_TRAINING_TT_CONV_OP_DATA_H_
#define TFLM_TRAINING_TT_CONV_OP_DATA_H_

#include <stdint.h>

#include "kernels/common/tt_conv_params.h"

typedef struct {
  int32_t batches;       /* rows */
  int32_t accum_depth;   /* D */
  int32_t units;         /* U */
  int32_t filter_offset; /* minus the filter zero point (per tensor), or 0 */
  tt_conv_quant quant;
  int32_t num_multipliers; /* 1, or one per unit */
} tt_fc_op_data;

typedef struct {
  int32_t batches;
  int32_t in_h, in_w, in_c;
  int32_t filter_h, filter_w;
  int32_t filter_depth; /* input channels each output channel reads */
  int32_t out_h, out_w, out_c;
  int32_t filters_per_group;
} tt_conv_shape;

typedef struct {
  tt_conv_shape shape;
  tt_conv_window window;
  tt_conv_quant quant;
  int32_t num_multipliers; /* 1, or one per output channel */
} tt_conv_op_data;

typedef struct {
  int32_t batches;
  int32_t in_h, in_w, in_c;
  int32_t filter_h, filter_w;
  int32_t depth_multiplier;
  int32_t out_h, out_w, out_c;
} tt_depthwise_shape;

typedef struct {
  tt_depthwise_shape shape;
  tt_conv_window window;
  tt_conv_quant quant;
  int32_t num_multipliers; /* 1, or one per output channel */
} tt_depthwise_op_data;

#endif /* TFLM_TRAINING_TT_CONV_OP_DATA_H_ */
