/* What the backward kernels (kernels/<op>_backward.c) share: the clamp and
 * update checks of prepare, per-channel weight scales for the math
 * (tt_backward_math.h), and the loop that computes and applies the
 * gradient of each selected output channel of a layer with parameters. */
#ifndef TFLM_TRAINING_TT_BACKWARD_HELPERS_H_
#define TFLM_TRAINING_TT_BACKWARD_HELPERS_H_

#include <stdint.h>

#include "kernels/common/tt_backward.h"

/* Nothing saved, no scratch, no clamp. */
void tt_backward_needs_clear(tt_backward_needs* needs);

/* The gradient flows only where clamp_min < q < clamp_max on the int8
 * output; has_clamp is set. */
void tt_backward_clamp(tt_backward_needs* needs, int32_t clamp_min,
                       int32_t clamp_max);

/* For an op whose int8 output can only leave [-128, 127] through a clamp
 * to [act_min, act_max] (moved, not rescaled, values): clamps the bounds
 * that narrow int8 and leaves the others open (-129, 128); no clamp at all
 * when neither does. */
void tt_backward_clamp_activation(tt_backward_needs* needs, int32_t act_min,
                                  int32_t act_max);

/* For an op that requantizes x to its output y with y_real ~ x_real:
 * saturation at -128 / 127 stops the gradient, unless input and output
 * share scale and zero point (then nothing saturates). */
void tt_backward_clamp_requantize(tt_backward_needs* needs,
                                  const tt_tensor* input,
                                  const tt_tensor* output);

/* Output scale / input scale: the derivative of an op that moves int8
 * values unchanged between two scales (1 when they agree or either tensor
 * is not quantized, e.g. float32). */
float tt_backward_copy_gain(const tt_tensor* input, const tt_tensor* output);

/* Input 0 and output 0 of an op with as many elements in both; fails
 * ("forward kernel is not prepared") when either is missing or they
 * differ. */
tt_status tt_backward_unary_tensors(tt_interpreter* interpreter,
                                    const tt_node* node,
                                    const tt_tensor** input,
                                    const tt_tensor** output);

/* The backward of an op that moves values unchanged from input 0 to
 * output 0: dx += tt_backward_copy_gain * dy (written, in place). */
tt_status tt_backward_copy_grad(tt_interpreter* interpreter,
                                const tt_node* node, const tt_backward_io* io);

/* The backward of an op that requantizes input 0 to output 0 in the real
 * domain (dy/dx = 1 inside its clamp): dx += dy (written, in place). */
tt_status tt_backward_identity_grad(tt_interpreter* interpreter,
                                    const tt_node* node,
                                    const tt_backward_io* io);

/* Channel scales of a quantized weight tensor in the form the math reads
 * (tt_backward_math.h): bytes + step. */
void tt_backward_scales(const tt_interpreter* interpreter,
                        const tt_tensor* tensor, const void** scales,
                        int32_t* step);

/* Checks what a plan asks of a layer with `num_channels` output channels
 * of weights_per_channel weights each (update NULL: frozen, nothing to
 * check): the kind, ascending channels in range, the optimizer's slot size,
 * a bias to train for TT_UPDATE_BIAS, positive finite weight scales of the
 * selected channels. For TT_UPDATE_WEIGHTS and TT_UPDATE_LOWRANK it asks
 * for input 0 to be saved and scratch for one channel's float weight
 * gradient. */
tt_status tt_backward_prepare_update(
    tt_interpreter* interpreter, const tt_node* node,
    const tt_layer_update* update, const tt_tensor* filter,
    const tt_tensor* bias, int32_t num_channels, int32_t weights_per_channel,
    tt_backward_needs* needs);

/* Computes a selected channel's weight gradient (weights_per_channel
 * floats into weight_grad, or nothing when it is NULL) and bias gradient. */
typedef void (*tt_channel_grad_fn)(const void* context, int32_t channel,
                                   float* weight_grad, float* bias_grad);

/* Where a channel's weights sit in the filter: the first at
 * channel * channel_step, the rest weight_stride elements apart. */
typedef struct {
  int32_t channel_step;
  int32_t weight_stride;
} tt_channel_layout;

/* For each selected channel in turn: its gradients (into scratch for the
 * weights), then tt_update_channel, which applies them right away. The
 * filter and bias must be the trainer's RAM copies (arena tensors). */
tt_status tt_backward_update_channels(tt_interpreter* interpreter,
                                      const tt_node* node,
                                      tt_layer_update* update,
                                      const tt_channel_layout* layout,
                                      float* scratch, tt_channel_grad_fn grad,
                                      const void* context);

/* The backward of a layer with parameters (CONV_2D, DEPTHWISE_CONV_2D,
 * FULLY_CONNECTED: int8 input 0, quantized filter 1, optional bias 2),
 * given how to read its forward op data. */
typedef struct {
  int32_t act_min, act_max; /* the fused activation clamp */
  int32_t num_channels;     /* output channels */
  int32_t weights_per_channel;
  tt_channel_layout layout;
} tt_layer_shape;

/* What a layer's channel_grad gets as its context. */
typedef struct {
  const void* op_data;
  const int8_t* input;
  int32_t input_zero_point;
  float input_scale;
  const tt_grad* dy;
} tt_layer_grad_context;

typedef struct {
  void (*shape)(const void* op_data, tt_layer_shape* shape);
  /* dx += the input gradient of dy, over all output channels. */
  void (*input_grad)(const void* op_data, const int8_t* filter,
                     const void* scales, int32_t scale_step, const tt_grad* dy,
                     tt_grad* dx);
  tt_channel_grad_fn channel_grad; /* context: a tt_layer_grad_context */
  /* dx = the input gradient of dy, written over dy (`grad`) with `scratch`
   * (needs.in_place_scratch_bytes); NULL when the layer never offers it. */
  void (*input_grad_in_place)(const void* op_data, const int8_t* filter,
                              const void* scales, int32_t scale_step,
                              tt_grad* grad, float* scratch);
} tt_layer_backward;

/* A layer's prepare: fails unless the forward kernel prepared it, clamps to
 * the fused activation range, then tt_backward_prepare_update. */
tt_status tt_backward_prepare_layer(tt_interpreter* interpreter,
                                    const tt_node* node,
                                    const tt_layer_update* update,
                                    const tt_layer_backward* layer,
                                    tt_backward_needs* needs);

/* A layer's backward: the input gradient when asked for, then the update of
 * the selected channels (tt_backward_update_channels). In place, the bias
 * update comes first: it reads dY, and the input gradient then overwrites
 * dY with the weights it would have read anyway. */
tt_status tt_backward_layer(tt_interpreter* interpreter, const tt_node* node,
                            const tt_backward_io* io,
                            const tt_layer_backward* layer);

/* Runs the backward kernel's prepare / backward of operator node_index:
 * for tools and tests (the trainer calls the kernels itself). Fails with
 * TT_ERR_UNSUPPORTED when the operator has no backward kernel. */
tt_status tt_backward_prepare_node(tt_interpreter* interpreter,
                                   int32_t node_index,
                                   const tt_layer_update* update,
                                   tt_backward_needs* needs);
tt_status tt_backward_run_node(tt_interpreter* interpreter, int32_t node_index,
                               const tt_backward_io* io);

#endif /* TFLM_TRAINING_TT_BACKWARD_HELPERS_H_ */
