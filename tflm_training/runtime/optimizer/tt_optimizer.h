/* Applying one output channel's gradient: QAS and SGD on int8 weights and
 * int32 biases.
 *
 * Quantization-aware scaling ("On-Device Training Under 256KB Memory"):
 * the int8 weight is W_q = W / s_W, so dL/dW_q = s_W * dL/dW, and QAS
 * multiplies it by s_W^-2 (bias: b_q = b / (s_W s_x), scaled by
 * (s_W s_x)^-2). Without QAS the quantized-domain gradient is used as is.
 *
 * Master values: each trainable parameter keeps its int8 / int32 value plus
 * a float32 residual r (4 bytes). An SGD step does r -= lr * g (with
 * momentum v = m v + g when momentum > 0, another 4 bytes), then moves the
 * whole steps k = round(r) into the integer value (saturating at
 * [-127, 127] for weights, int32 for biases) and keeps r - k (at most
 * 0.5 in magnitude). This equals a float master copy for int8 weights and
 * stays exact for int32 biases of any size. A plan may drop the residual
 * (TT_PLAN_FLAG_NO_RESIDUAL, residual pointers NULL): each update is then
 * rounded to whole steps on its own, so updates under half a step are
 * lost (tests/test_trainer.py measures both the bytes saved and the
 * updates lost). With batch_size > 1 gradients are summed into a float
 * accumulator (4 more bytes per parameter) and applied, averaged, every
 * batch_size samples.
 *
 * Low-rank layers (TT_UPDATE_LOWRANK, tt_lowrank.h) train their weights by
 * Adam on a projected gradient instead; see `lowrank` below. */
#ifndef TFLM_TRAINING_TT_OPTIMIZER_H_
#define TFLM_TRAINING_TT_OPTIMIZER_H_

#include <stdbool.h>
#include <stdint.h>

#include "tt_status.h"

/* What a plan trains in a layer (training/tt_training_plan.h). */
typedef enum {
  TT_UPDATE_BIAS = 0,    /* biases of the selected channels */
  TT_UPDATE_WEIGHTS = 1, /* weights and biases of the selected channels */
  /* Weights and biases of channels drawn from the candidates every epoch
   * within the plan's sample_budget (TraDy, training/tt_channel_sampler.h). */
  TT_UPDATE_SAMPLED = 2,
  /* Weights by low-rank gradient projection with Adam (tt_lowrank.h),
   * biases by SGD: FULLY_CONNECTED and pointwise CONV_2D, all channels. */
  TT_UPDATE_LOWRANK = 3,
} tt_update_kind;

typedef struct {
  int32_t kind;         /* tt_update_kind */
  int32_t num_channels; /* selected output channels */
  const int32_t* channels;
  int32_t weights_per_channel;
  float learning_rate; /* plan rate times the layer's lr_scale */
  float momentum;
  bool qas;
  bool apply; /* false while accumulating a batch */
  /* Set when the caller restores the whole learned block if an update
   * fails (the trainer's undo buffer): a channel is then updated in one
   * pass and may be left part-way on failure. Otherwise a failed update
   * leaves the channel untouched (a check pass first). */
  bool restored_on_failure;
  float batch_scale; /* 1 / batch_size when applying */
  /* Optimizer state, slot-major: channel slot s owns
   * [s * weights_per_channel, (s + 1) * weights_per_channel). NULL when
   * unused (e.g. velocity without momentum). */
  float* weight_residual;
  float* weight_velocity;
  float* weight_accumulator;
  float* bias_residual;
  float* bias_velocity;
  float* bias_accumulator;
  tt_error* error;
  /* The gradient probe (tt_trainer_gradient_norms): when `probe` is set,
   * tt_update_channel changes nothing and adds the squared L2 norm of the
   * channel's real-valued weight gradient to probe_weight_sq[slot] and the
   * square of its bias gradient to probe_bias_sq[slot] (either may be
   * NULL). */
  bool probe;
  float* probe_weight_sq;
  float* probe_bias_sq;
  /* TT_UPDATE_LOWRANK: the layer's state block (tt_lowrank.h). Each
   * channel's weight gradient is added to the layer's compact gradient
   * (tt_lowrank_accumulate, quantized domain as above); the weights change
   * only at the layer's Adam step (tt_lowrank_apply, which the trainer runs
   * after the layer's backward pass of the sample that completes a batch).
   * Biases take the SGD step of TT_UPDATE_WEIGHTS. NULL for other kinds. */
  void* lowrank;
} tt_layer_update;

/* One selected channel's parameters, in the RAM copies. */
typedef struct {
  int8_t* weights;       /* first weight of the channel */
  int32_t weight_stride; /* elements between the channel's weights */
  int32_t* bias;         /* NULL when the operator has no bias */
  float weight_scale;    /* s_W of this channel */
  float bias_scale;      /* s_W * s_x */
} tt_channel_params;

/* Applies (or accumulates) the real-valued gradients of channel slot
 * `slot`: weight_grad has weights_per_channel values (ignored for
 * TT_UPDATE_BIAS). Fails with TT_ERR_DIVERGED, leaving the channel
 * untouched (unless restored_on_failure), when a gradient is NaN or
 * infinite. With update->probe it
 * only adds the gradients' squared norms (see tt_layer_update). */
tt_status tt_update_channel(tt_layer_update* update, int32_t slot,
                            const tt_channel_params* params,
                            const float* weight_grad, float bias_grad);

#endif /* TFLM_TRAINING_TT_OPTIMIZER_H_ */
