#include "training/tt_training_plan.h"

#include <stdarg.h>
#include <string.h>

#include "kernels/common/tt_backward.h"
#include "kernels/common/tt_kernel.h"
#include "math/tt_crc.h"
#include "math/tt_grad.h"
#include "math/tt_math.h"
#include "memory/tt_arena.h"
#include "model/tt_schema.h"

#define FIELD_VERSION 4
#define FIELD_TOTAL_SIZE 8
#define FIELD_CRC 12
#define FIELD_MODEL_CRC 16
#define FIELD_NUM_TENSORS 20
#define FIELD_NUM_OPERATORS 24
#define FIELD_LOGITS 28
#define FIELD_NUM_CLASSES 32
#define FIELD_BATCH 36
#define FIELD_OPTIMIZER 40
#define FIELD_LEARNING_RATE 44
#define FIELD_MOMENTUM 48
#define FIELD_FLAGS 52
#define FIELD_NUM_LAYERS 56
#define FIELD_SEED 60
#define FIELD_SAMPLE_BUDGET 64
#define FIELD_ADAM_BETA1 68
#define FIELD_ADAM_BETA2 72
#define FIELD_ADAM_EPSILON 76

/* Fields of a layer-table entry. */
#define LAYER_OPERATOR 0
#define LAYER_KIND 4
#define LAYER_CHANNELS 8
#define LAYER_LR_SCALE 12
#define LAYER_CHANNEL_COST 16
#define LAYER_RANK 20
#define LAYER_REFRESH_STEPS 24
#define LAYER_RESERVED 28

static int32_t read_i32(const uint8_t* plan, uint32_t pos) {
  int32_t value;
  memcpy(&value, plan + pos, sizeof value);
  return value;
}

static float read_f32(const uint8_t* plan, uint32_t pos) {
  float value;
  memcpy(&value, plan + pos, sizeof value);
  return value;
}

static tt_status bad_plan(tt_interpreter* it, const char* format, ...) {
  tt_error detail;
  va_list args;
  va_start(args, format);
  tt_error_vset(&detail, TT_ERR_BAD_PLAN, format, args);
  va_end(args);
  return tt_error_set(&it->error, TT_ERR_BAD_PLAN, "training plan: %s",
                      detail.message);
}

tt_status tt_param_layout_of(tt_interpreter* it, int32_t node_index,
                             tt_param_layout* layout) {
  const tt_node* node = &it->nodes[node_index];
  const char* name = tt_builtin_name(node->builtin_code);
  const tt_tensor* weights = tt_node_input(it, node, 1);
  const tt_tensor* bias = tt_node_input(it, node, 2);
  if (weights == NULL || weights->location != TT_DATA_MODEL ||
      weights->type != TT_TYPE_INT8 || weights->rank < 1)
    return bad_plan(it,
                    "operator %d (%s) has no constant int8 weights "
                    "(input 1) to train",
                    node_index, name);
  /* DEPTHWISE_CONV_2D weights are [1, H, W, C]; the others [C, ...]. */
  const bool last_axis = node->builtin_code == TT_OP_DEPTHWISE_CONV_2D;
  const int32_t channels = weights->dims[last_axis ? weights->rank - 1 : 0];
  if (channels < 1)
    return bad_plan(it, "operator %d (%s) has no output channels", node_index,
                    name);
  layout->weights_tensor = tt_node_input_index(it, node, 1);
  layout->bias_tensor = bias != NULL ? tt_node_input_index(it, node, 2) : -1;
  layout->num_channels = channels;
  layout->weights_per_channel = weights->num_elements / channels;
  layout->channel_step = last_axis ? 1 : layout->weights_per_channel;
  layout->weight_stride = last_axis ? channels : 1;
  if (bias != NULL &&
      (bias->location != TT_DATA_MODEL || bias->type != TT_TYPE_INT32 ||
       bias->num_elements != channels))
    return bad_plan(it,
                    "operator %d (%s) has a bias (input 2) that is not a "
                    "constant int32 tensor of %d values",
                    node_index, name, channels);
  return TT_OK;
}

static bool produced_by_an_operator(const tt_interpreter* it, int32_t tensor) {
  for (int32_t n = 0; n < it->num_nodes; ++n) {
    const tt_node* node = &it->nodes[n];
    const int32_t* out = (const int32_t*)tt_arena_at(it, node->outputs_offset);
    for (int32_t i = 0; i < node->num_outputs; ++i)
      if (out[i] == tensor) return true;
  }
  return false;
}

static tt_status check_envelope(tt_interpreter* it, const uint8_t* plan,
                                uint32_t size) {
  if (plan == NULL) return bad_plan(it, "no plan given (NULL)");
  if (size < TT_PLAN_HEADER_SIZE)
    return bad_plan(it,
                    "%u bytes is shorter than the %d-byte header; write "
                    "plans with tflm_training.TrainingPlan.to_bytes()",
                    size, TT_PLAN_HEADER_SIZE);
  if (memcmp(plan, TT_PLAN_MAGIC, 4) != 0)
    return bad_plan(it,
                    "the bytes do not start with \"TTPL\"; this is not a "
                    "training plan");
  const int32_t version = read_i32(plan, FIELD_VERSION);
  if (version != TT_PLAN_VERSION)
    return bad_plan(it,
                    "version %d; this runtime reads version %d, so "
                    "regenerate the plan with the matching tflm_training",
                    version, TT_PLAN_VERSION);
  const uint32_t total = (uint32_t)read_i32(plan, FIELD_TOTAL_SIZE);
  if (total != size)
    return bad_plan(it,
                    "the header says %u bytes but %u were given; the "
                    "plan is truncated or has extra bytes",
                    total, size);
  const uint32_t stored = (uint32_t)read_i32(plan, FIELD_CRC);
  const uint32_t computed = tt_crc32(plan + 16, size - 16);
  if (stored != computed)
    return bad_plan(it,
                    "checksum mismatch (stored %u, computed %u): the "
                    "plan is damaged; regenerate it",
                    stored, computed);
  return TT_OK;
}

static tt_status check_model(tt_interpreter* it, const uint8_t* plan) {
  const uint32_t plan_crc = (uint32_t)read_i32(plan, FIELD_MODEL_CRC);
  const uint32_t model_crc = tt_crc32(it->model.data, it->model.size);
  if (plan_crc != model_crc)
    return bad_plan(it,
                    "made for another model (model CRC-32 %u, this "
                    "model's is %u); make the plan from this .tflite "
                    "file",
                    plan_crc, model_crc);
  const int32_t tensors = read_i32(plan, FIELD_NUM_TENSORS);
  const int32_t operators = read_i32(plan, FIELD_NUM_OPERATORS);
  if (tensors != it->num_tensors || operators != it->num_nodes)
    return bad_plan(it,
                    "made for a model with %d tensors and %d operators, "
                    "but this one has %d and %d",
                    tensors, operators, it->num_tensors, it->num_nodes);
  return TT_OK;
}

static tt_status check_settings(tt_interpreter* it, const uint8_t* plan,
                                tt_plan_info* info) {
  info->batch_size = read_i32(plan, FIELD_BATCH);
  info->learning_rate = read_f32(plan, FIELD_LEARNING_RATE);
  info->momentum = read_f32(plan, FIELD_MOMENTUM);
  info->flags = read_i32(plan, FIELD_FLAGS);
  info->num_layers = read_i32(plan, FIELD_NUM_LAYERS);
  info->seed = (uint32_t)read_i32(plan, FIELD_SEED);
  info->sample_budget = read_i32(plan, FIELD_SAMPLE_BUDGET);
  info->adam_beta1 = read_f32(plan, FIELD_ADAM_BETA1);
  info->adam_beta2 = read_f32(plan, FIELD_ADAM_BETA2);
  info->adam_epsilon = read_f32(plan, FIELD_ADAM_EPSILON);
  const int32_t optimizer = read_i32(plan, FIELD_OPTIMIZER);
  if (optimizer != TT_OPTIMIZER_SGD)
    return bad_plan(it, "optimizer %d is unknown; 0 (SGD) is the only one",
                    optimizer);
  if (info->batch_size < 1)
    return bad_plan(it, "batch size %d must be at least 1", info->batch_size);
  if (!(info->learning_rate > 0.0f) || !tt_is_finite(info->learning_rate))
    return bad_plan(it,
                    "the learning rate must be a positive finite "
                    "number");
  if (!(info->momentum >= 0.0f && info->momentum < 1.0f))
    return bad_plan(it, "momentum must be in [0, 1)");
  if ((info->flags & ~(TT_PLAN_FLAG_QAS | TT_PLAN_FLAG_NO_RESIDUAL |
                       TT_PLAN_FLAG_GRADIENTS_16)) != 0)
    return bad_plan(it,
                    "flags %d has unknown bits; only bit 0 (QAS), bit 1 "
                    "(no residual) and bit 2 (16-bit gradients) are "
                    "defined",
                    info->flags);
  const int32_t bits = (info->flags & TT_PLAN_FLAG_GRADIENTS_16) ? 16 : 32;
  if (bits != TT_GRADIENT_BITS)
    return bad_plan(it,
                    "it stores gradients in %d bits, this runtime in %d; "
                    "build the runtime with TT_GRADIENT_BITS=%d (the "
                    "tools build the one a plan needs)",
                    bits, TT_GRADIENT_BITS, bits);
  return TT_OK;
}

static tt_status check_logits(tt_interpreter* it, const uint8_t* plan,
                              tt_plan_info* info) {
  info->logits_tensor = read_i32(plan, FIELD_LOGITS);
  info->num_classes = read_i32(plan, FIELD_NUM_CLASSES);
  const int32_t index = info->logits_tensor;
  if (index < 0 || index >= it->num_tensors)
    return bad_plan(it,
                    "logits tensor %d does not exist (the model has %d "
                    "tensors)",
                    index, it->num_tensors);
  const tt_tensor* t = &it->tensors[index];
  if (t->type != TT_TYPE_INT8 || t->num_scales == 0 || !(t->scale > 0.0f) ||
      !tt_is_finite(t->scale))
    return bad_plan(it,
                    "logits tensor %d is %s without a positive scale; "
                    "the loss needs a quantized int8 tensor (the input of "
                    "the final SOFTMAX)",
                    index, tt_type_name(t->type));
  if (t->location != TT_DATA_ARENA || !produced_by_an_operator(it, index))
    return bad_plan(it, "logits tensor %d is not computed by an operator",
                    index);
  if (info->num_classes < 2 || t->num_elements != info->num_classes)
    return bad_plan(it,
                    "logits tensor %d has %d values but the plan says %d "
                    "classes (at least 2)",
                    index, t->num_elements, info->num_classes);
  return TT_OK;
}

static tt_status check_channels(tt_interpreter* it, const uint8_t* plan,
                                int32_t index, const tt_plan_layer* layer,
                                const tt_param_layout* layout) {
  for (int32_t slot = 0; slot < layer->num_channels; ++slot) {
    const int32_t channel = tt_plan_channel(plan, layer, slot);
    if (channel < 0 || channel >= layout->num_channels)
      return bad_plan(it,
                      "layer %d: channel %d is out of range; operator %d "
                      "has output channels 0 to %d",
                      index, channel, layer->operator_index,
                      layout->num_channels - 1);
    if (slot > 0 && channel <= tt_plan_channel(plan, layer, slot - 1))
      return bad_plan(it,
                      "layer %d: channel %d follows %d; list channels in "
                      "ascending order, each once",
                      index, channel, tt_plan_channel(plan, layer, slot - 1));
  }
  return TT_OK;
}

uint64_t tt_plan_channel_state_bytes(const tt_plan_info* info,
                                     int32_t weights_per_channel,
                                     bool has_bias) {
  const uint64_t arrays =
      (uint64_t)((info->flags & TT_PLAN_FLAG_NO_RESIDUAL) == 0) +
      (uint64_t)(info->momentum > 0.0f) + (uint64_t)(info->batch_size > 1);
  const uint64_t values =
      (uint64_t)(weights_per_channel > 0 ? weights_per_channel : 0) +
      (has_bias ? 1u : 0u);
  return arrays * values * sizeof(float);
}

static tt_status check_kind(tt_interpreter* it, int32_t index,
                            const tt_plan_layer* layer) {
  if (layer->update_kind != TT_UPDATE_BIAS &&
      layer->update_kind != TT_UPDATE_WEIGHTS &&
      layer->update_kind != TT_UPDATE_SAMPLED &&
      layer->update_kind != TT_UPDATE_LOWRANK)
    return bad_plan(it,
                    "layer %d: update kind %d is unknown (0 = bias only, "
                    "1 = weights and bias, 2 = sampled channels, 3 = "
                    "low-rank)",
                    index, layer->update_kind);
  if (layer->update_kind != TT_UPDATE_LOWRANK &&
      (layer->rank != 0 || layer->refresh_steps != 0))
    return bad_plan(it,
                    "layer %d: rank %d and refresh_steps %d are for "
                    "low-rank layers (kind 3); set both to 0",
                    index, layer->rank, layer->refresh_steps);
  if (layer->update_kind != TT_UPDATE_SAMPLED && layer->channel_cost != 0)
    return bad_plan(it,
                    "layer %d: channel_cost %d is for sampled layers "
                    "(kind 2); set it to 0",
                    index, layer->channel_cost);
  return TT_OK;
}

/* A sampled channel's cost must cover its optimizer state, so the shared
 * pool (sample_budget bytes) can never overflow. */
static tt_status check_channel_cost(tt_interpreter* it,
                                    const tt_plan_info* info, int32_t index,
                                    const tt_plan_layer* layer,
                                    const tt_param_layout* layout) {
  if (layer->update_kind != TT_UPDATE_SAMPLED) return TT_OK;
  uint64_t minimum = tt_plan_channel_state_bytes(
      info, layout->weights_per_channel, layout->bias_tensor >= 0);
  if (minimum < 1) minimum = 1;
  if (minimum > INT32_MAX)
    return bad_plan(it,
                    "layer %d: operator %d has %d weights per channel, "
                    "too many for a sampled layer's optimizer state",
                    index, layer->operator_index, layout->weights_per_channel);
  if (layer->channel_cost < 1 || (uint64_t)layer->channel_cost < minimum)
    return bad_plan(it,
                    "layer %d: channel_cost %d must be at least %d bytes "
                    "(the optimizer state of one of its channels, and at "
                    "least 1); raise it",
                    index, layer->channel_cost, (int32_t)minimum);
  return TT_OK;
}

/* A low-rank layer (tt_lowrank.h): a FULLY_CONNECTED or pointwise CONV_2D
 * (1x1 filter, one group), all output channels, 1 <= rank <= min(C, D),
 * refresh_steps >= 1. */
static tt_status check_lowrank(tt_interpreter* it, int32_t index,
                               const tt_plan_layer* layer,
                               const tt_param_layout* layout) {
  if (layer->update_kind != TT_UPDATE_LOWRANK) return TT_OK;
  const int32_t op = layer->operator_index;
  const tt_node* node = &it->nodes[op];
  const char* name = tt_builtin_name(node->builtin_code);
  if (node->builtin_code == TT_OP_CONV_2D) {
    const tt_tensor* filter = tt_node_input(it, node, 1);
    const tt_tensor* input = tt_node_input(it, node, 0);
    if (filter == NULL || filter->rank != 4 || filter->dims[1] != 1 ||
        filter->dims[2] != 1)
      return bad_plan(it,
                      "layer %d: operator %d (CONV_2D) has a %dx%d "
                      "filter; low-rank updates (kind 3) train only "
                      "FULLY_CONNECTED and pointwise (1x1) CONV_2D "
                      "layers, so train it with kind 1 (weights)",
                      index, op, filter != NULL ? filter->dims[1] : 0,
                      filter != NULL && filter->rank > 2 ? filter->dims[2] : 0);
    if (input == NULL || input->rank < 1 ||
        input->dims[input->rank - 1] != filter->dims[3])
      return bad_plan(it,
                      "layer %d: operator %d (CONV_2D) is a grouped "
                      "convolution; low-rank updates (kind 3) need one "
                      "group, so train it with kind 1 (weights)",
                      index, op);
  } else if (node->builtin_code != TT_OP_FULLY_CONNECTED) {
    return bad_plan(it,
                    "layer %d: operator %d is %s; low-rank updates "
                    "(kind 3) train only FULLY_CONNECTED and pointwise "
                    "(1x1) CONV_2D layers, so train it with kind 1 "
                    "(weights)",
                    index, op, name);
  }
  if (layer->num_channels != layout->num_channels)
    return bad_plan(it,
                    "layer %d: a low-rank layer trains all %d output "
                    "channels of operator %d (%s), but %d are listed; "
                    "list them all",
                    index, layout->num_channels, op, name, layer->num_channels);
  const int32_t rows = layout->num_channels;
  const int32_t cols = layout->weights_per_channel;
  const int32_t most = rows < cols ? rows : cols;
  if (layer->rank < 1 || layer->rank > most)
    return bad_plan(it,
                    "layer %d: rank %d must be between 1 and %d, the "
                    "smaller of operator %d's %d output channels and %d "
                    "weights per channel",
                    index, layer->rank, most, op, rows, cols);
  if (layer->refresh_steps < 1)
    return bad_plan(it,
                    "layer %d: refresh_steps %d must be at least 1 (the "
                    "updates between refreshes of the low-rank "
                    "projector)",
                    index, layer->refresh_steps);
  return TT_OK;
}

static tt_status check_layer(tt_interpreter* it, const uint8_t* plan,
                             const tt_plan_info* info, int32_t index,
                             int32_t previous_operator) {
  tt_plan_layer layer;
  tt_plan_layer_at(plan, index, &layer);
  const int32_t op = layer.operator_index;
  if (op < 0 || op >= it->num_nodes)
    return bad_plan(it,
                    "layer %d: operator %d does not exist (the model has "
                    "%d operators)",
                    index, op, it->num_nodes);
  if (op <= previous_operator)
    return bad_plan(it,
                    "layer %d: operator %d does not come after operator "
                    "%d; list layers by ascending operator index, each "
                    "once",
                    index, op, previous_operator);
  const int32_t code = it->nodes[op].builtin_code;
  const tt_backward_kernel* kernel = tt_backward_find(code);
  if (kernel == NULL || !kernel->has_parameters)
    return bad_plan(
        it,
        "layer %d: operator %d (%s) has no trainable "
        "parameters%s",
        index, op, tt_builtin_name(code),
        kernel == NULL ? " (no backward kernel in this build)" : "");
  TT_RETURN_IF_ERROR(check_kind(it, index, &layer));
  if (read_i32(plan, TT_PLAN_HEADER_SIZE +
                         (uint32_t)index * TT_PLAN_LAYER_SIZE +
                         LAYER_RESERVED) != 0)
    return bad_plan(it, "layer %d: the reserved field must be 0", index);
  if (!(layer.lr_scale > 0.0f) || !tt_is_finite(layer.lr_scale))
    return bad_plan(it,
                    "layer %d: lr_scale must be a positive finite "
                    "number",
                    index);
  tt_param_layout layout;
  TT_RETURN_IF_ERROR(tt_param_layout_of(it, op, &layout));
  if (layer.update_kind == TT_UPDATE_BIAS && layout.bias_tensor < 0)
    return bad_plan(it,
                    "layer %d: operator %d (%s) has no bias, so a "
                    "bias-only update cannot train it; use update kind 1 "
                    "(weights)",
                    index, op, tt_builtin_name(code));
  TT_RETURN_IF_ERROR(check_channel_cost(it, info, index, &layer, &layout));
  TT_RETURN_IF_ERROR(check_lowrank(it, index, &layer, &layout));
  return check_channels(it, plan, index, &layer, &layout);
}

static tt_status check_layer_table(tt_interpreter* it, const uint8_t* plan,
                                   uint32_t size, const tt_plan_info* info) {
  const int32_t num_layers = info->num_layers;
  if (num_layers < 1)
    return bad_plan(it, "%d layers; a plan trains at least one", num_layers);
  if ((uint64_t)num_layers * TT_PLAN_LAYER_SIZE > size - TT_PLAN_HEADER_SIZE)
    return bad_plan(it, "%d layers do not fit in %u bytes", num_layers, size);
  uint64_t expected =
      TT_PLAN_HEADER_SIZE + (uint64_t)num_layers * TT_PLAN_LAYER_SIZE;
  for (int32_t i = 0; i < num_layers; ++i) {
    const int32_t channels =
        read_i32(plan, TT_PLAN_HEADER_SIZE + (uint32_t)i * TT_PLAN_LAYER_SIZE +
                           LAYER_CHANNELS);
    if (channels < 1)
      return bad_plan(it, "layer %d selects %d channels; select at least one",
                      i, channels);
    expected += 4u * (uint64_t)channels;
  }
  if (expected != size)
    return bad_plan(it,
                    "the layer table and channel lists take %u bytes but "
                    "the plan has %u",
                    (uint32_t)expected, size);
  int32_t previous = -1;
  for (int32_t i = 0; i < num_layers; ++i) {
    TT_RETURN_IF_ERROR(check_layer(it, plan, info, i, previous));
    tt_plan_layer layer;
    tt_plan_layer_at(plan, i, &layer);
    previous = layer.operator_index;
  }
  return TT_OK;
}

/* The sample budget against the sampled layers, and the Adam settings
 * against the low-rank ones (after the layer table is known to be sound). */
static tt_status check_sampling(tt_interpreter* it, const uint8_t* plan,
                                tt_plan_info* info) {
  int32_t sampled = 0, lowrank = 0, cheapest = 0;
  int64_t candidates = 0;
  for (int32_t i = 0; i < info->num_layers; ++i) {
    tt_plan_layer layer;
    tt_plan_layer_at(plan, i, &layer);
    if (layer.update_kind == TT_UPDATE_LOWRANK) ++lowrank;
    if (layer.update_kind != TT_UPDATE_SAMPLED) continue;
    if (sampled == 0 || layer.channel_cost < cheapest)
      cheapest = layer.channel_cost;
    ++sampled;
    candidates += layer.num_channels;
  }
  if (sampled == 0 && info->sample_budget != 0)
    return bad_plan(it,
                    "sample_budget is %d but no layer is sampled (update "
                    "kind 2); set it to 0",
                    info->sample_budget);
  if (sampled > 0 && info->sample_budget < cheapest)
    return bad_plan(it,
                    "sample_budget %d bytes is less than the cheapest "
                    "sampled channel (channel_cost %d): no channel could "
                    "ever train; raise the budget",
                    info->sample_budget, cheapest);
  if (candidates > TT_PLAN_MAX_CANDIDATES)
    return bad_plan(it,
                    "the sampled layers have %d candidate channels in "
                    "all; at most %d are supported, so list fewer "
                    "candidates",
                    (int32_t)candidates, TT_PLAN_MAX_CANDIDATES);
  info->sampled_candidates = (int32_t)candidates;
  if (lowrank == 0) {
    if (info->adam_beta1 != 0.0f || info->adam_beta2 != 0.0f ||
        info->adam_epsilon != 0.0f)
      return bad_plan(it,
                      "adam_beta1, adam_beta2 and adam_epsilon are for "
                      "low-rank layers (kind 3); with none, set them to "
                      "0");
    return TT_OK;
  }
  if (!(info->adam_beta1 >= 0.0f && info->adam_beta1 < 1.0f) ||
      !(info->adam_beta2 >= 0.0f && info->adam_beta2 < 1.0f))
    return bad_plan(it, "adam_beta1 and adam_beta2 must be in [0, 1)");
  if (!(info->adam_epsilon > 0.0f) || !tt_is_finite(info->adam_epsilon))
    return bad_plan(it, "adam_epsilon must be a positive finite number");
  return TT_OK;
}

tt_status tt_plan_parse(tt_interpreter* it, const uint8_t* plan,
                        uint32_t plan_size, tt_plan_info* info) {
  memset(info, 0, sizeof *info);
  TT_RETURN_IF_ERROR(check_envelope(it, plan, plan_size));
  TT_RETURN_IF_ERROR(check_model(it, plan));
  TT_RETURN_IF_ERROR(check_settings(it, plan, info));
  TT_RETURN_IF_ERROR(check_logits(it, plan, info));
  TT_RETURN_IF_ERROR(check_layer_table(it, plan, plan_size, info));
  return check_sampling(it, plan, info);
}

void tt_plan_layer_at(const uint8_t* plan, int32_t index,
                      tt_plan_layer* layer) {
  const int32_t num_layers = read_i32(plan, FIELD_NUM_LAYERS);
  uint32_t channels_pos =
      TT_PLAN_HEADER_SIZE + (uint32_t)num_layers * TT_PLAN_LAYER_SIZE;
  for (int32_t i = 0; i < index; ++i)
    channels_pos +=
        4u * (uint32_t)read_i32(plan, TT_PLAN_HEADER_SIZE +
                                          (uint32_t)i * TT_PLAN_LAYER_SIZE +
                                          LAYER_CHANNELS);
  const uint32_t pos =
      TT_PLAN_HEADER_SIZE + (uint32_t)index * TT_PLAN_LAYER_SIZE;
  layer->operator_index = read_i32(plan, pos + LAYER_OPERATOR);
  layer->update_kind = read_i32(plan, pos + LAYER_KIND);
  layer->num_channels = read_i32(plan, pos + LAYER_CHANNELS);
  layer->lr_scale = read_f32(plan, pos + LAYER_LR_SCALE);
  layer->channel_cost = read_i32(plan, pos + LAYER_CHANNEL_COST);
  layer->rank = read_i32(plan, pos + LAYER_RANK);
  layer->refresh_steps = read_i32(plan, pos + LAYER_REFRESH_STEPS);
  layer->channels_pos = channels_pos;
}

int32_t tt_plan_channel(const uint8_t* plan, const tt_plan_layer* layer,
                        int32_t slot) {
  return read_i32(plan, layer->channels_pos + 4u * (uint32_t)slot);
}
