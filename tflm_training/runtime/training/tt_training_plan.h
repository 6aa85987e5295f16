/* The training plan: which layers train and how, written by Python
 * (tflm_training/plan.py) and validated here against the model.
 *
 * Binary format, version 2. Little-endian; every field is 4 bytes (int32
 * unless marked float32 / uint32):
 *
 *   offset  field
 *        0  magic            "TTPL"
 *        4  version          2
 *        8  total_size       bytes of the whole plan
 *       12  crc32            CRC-32 (IEEE 802.3, as zlib.crc32) of bytes
 *                            [16, total_size)
 *       16  model_crc32      CRC-32 of the .tflite file the plan is for
 *       20  num_tensors      of that model's subgraph (cross-check)
 *       24  num_operators    of that model's subgraph (cross-check)
 *       28  logits_tensor    int8 tensor the loss reads (softmax input)
 *       32  num_classes      elements of logits_tensor
 *       36  batch_size       samples per update (>= 1)
 *       40  optimizer        0 = SGD
 *       44  learning_rate    float32, > 0
 *       48  momentum         float32 in [0, 1)
 *       52  flags            bit 0: QAS (quantization-aware scaling) on;
 *                            bit 1: no master residual (tt_optimizer.h);
 *                            bit 2: 16-bit gradients (tt_grad.h)
 *       56  num_layers       entries in the layer table
 *       60  seed             uint32: seeds the channel sampling of sampled
 *                            layers (tt_channel_sampler.h) and the initial
 *                            projectors of low-rank layers (tt_lowrank.h)
 *       64  sample_budget    bytes of optimizer state the sampled channels
 *                            share; 0 when no layer is sampled, > 0 (and at
 *                            least the cheapest channel_cost) when one is
 *       68  adam_beta1       float32  Adam settings of low-rank layers:
 *       72  adam_beta2       float32  all 0 when no layer is low-rank;
 *       76  adam_epsilon     float32  else 0 <= beta < 1, epsilon > 0
 *       80  layer table      num_layers entries of 8 fields:
 *                              operator_index  (ascending, unique)
 *                              update_kind     TT_UPDATE_*
 *                              num_channels    selected output channels
 *                                              (kind 2: the candidates;
 *                                              kind 3: all of them)
 *                              lr_scale        float32, > 0
 *                              channel_cost    kind 2: bytes of the
 *                                              sample_budget one of its
 *                                              channels takes, at least
 *                                              its optimizer state
 *                                              (tt_plan_channel_state_bytes)
 *                                              and 1; else 0
 *                              rank            kind 3: the projector's
 *                                              rank r, 1 <= r <= min(output
 *                                              channels, weights per
 *                                              channel); else 0
 *                              refresh_steps   kind 3: updates between
 *                                              projector refreshes, >= 1
 *                                              (tt_lowrank.h); else 0
 *                              reserved        0
 *           channel lists    for each layer in order, num_channels
 *                            ascending output-channel indices
 *
 * total_size must equal 80 + 32 * num_layers + 4 * (sum of num_channels).
 * The candidates of all sampled layers together are at most
 * TT_PLAN_MAX_CANDIDATES. */
#ifndef TFLM_TRAINING_TT_TRAINING_PLAN_H_
#define TFLM_TRAINING_TT_TRAINING_PLAN_H_

#include <stdbool.h>
#include <stdint.h>

#include "optimizer/tt_optimizer.h"
#include "tt_records.h"
#include "tt_status.h"

#define TT_PLAN_MAGIC "TTPL"
#define TT_PLAN_VERSION 2
#define TT_PLAN_HEADER_SIZE 80
#define TT_PLAN_LAYER_SIZE 32
/* The sampler's shuffle holds candidate indices as uint16. */
#define TT_PLAN_MAX_CANDIDATES 65535

enum { TT_OPTIMIZER_SGD = 0 };
enum {
  TT_PLAN_FLAG_QAS = 1,         /* quantization-aware scaling */
  TT_PLAN_FLAG_NO_RESIDUAL = 2, /* no float residual: updates round to whole
                                 * steps at once (saves 4 bytes/parameter) */
  /* Activation gradients stored as bfloat16 (tt_grad.h): needs a runtime
   * built with TT_GRADIENT_BITS=16, which runs only such plans. */
  TT_PLAN_FLAG_GRADIENTS_16 = 4,
};

/* The header fields of a validated plan. */
typedef struct {
  int32_t logits_tensor;
  int32_t num_classes;
  int32_t batch_size;
  float learning_rate;
  float momentum;
  int32_t flags;
  int32_t num_layers;
  uint32_t seed;
  int32_t sample_budget;
  float adam_beta1;
  float adam_beta2;
  float adam_epsilon;
  int32_t sampled_candidates; /* candidates of all sampled layers */
} tt_plan_info;

/* One entry of a validated plan's layer table. */
typedef struct {
  int32_t operator_index;
  int32_t update_kind;
  int32_t num_channels;
  float lr_scale;
  int32_t channel_cost;
  int32_t rank;
  int32_t refresh_steps;
  uint32_t channels_pos; /* plan byte offset of its channel list */
} tt_plan_layer;

/* Where an operator with parameters (CONV_2D, DEPTHWISE_CONV_2D,
 * FULLY_CONNECTED: weights are input 1, the optional bias input 2) keeps
 * them. Output channel c's weights start at element c * channel_step and
 * lie weight_stride elements apart. */
typedef struct {
  int32_t weights_tensor;
  int32_t bias_tensor; /* -1 when the operator has no bias */
  int32_t num_channels;
  int32_t weights_per_channel;
  int32_t channel_step;
  int32_t weight_stride;
} tt_param_layout;

/* Fails (TT_ERR_BAD_PLAN) when the operator's weights are not a constant
 * int8 tensor or its bias not a constant int32 one per output channel. */
tt_status tt_param_layout_of(tt_interpreter* interpreter, int32_t node_index,
                             tt_param_layout* layout);

/* Bytes of optimizer state one output channel of a layer keeps (weights
 * and bias: a float residual unless TT_PLAN_FLAG_NO_RESIDUAL, a velocity
 * with momentum, an accumulator with batches), per what `info` says. */
uint64_t tt_plan_channel_state_bytes(const tt_plan_info* info,
                                     int32_t weights_per_channel,
                                     bool has_bias);

/* Checks every field of the plan against the model the interpreter has
 * loaded (tt_interpreter_load) and fills *info. Every failure is
 * TT_ERR_BAD_PLAN with a message saying what is wrong and what to do. */
tt_status tt_plan_parse(tt_interpreter* interpreter, const uint8_t* plan,
                        uint32_t plan_size, tt_plan_info* info);

/* Layer `index` of a plan tt_plan_parse accepted. */
void tt_plan_layer_at(const uint8_t* plan, int32_t index, tt_plan_layer* layer);
int32_t tt_plan_channel(const uint8_t* plan, const tt_plan_layer* layer,
                        int32_t slot);

#endif /* TFLM_TRAINING_TT_TRAINING_PLAN_H_ */
