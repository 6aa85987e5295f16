/* Trainer setup: the tables, which operators the backward pass visits and
 * what their backward kernels need, the RAM copies of trainable
 * parameters, and the optimizer state. */
#include <string.h>

#include "kernels/common/tt_kernel.h"
#include "model/tt_schema.h"
#include "training/tt_trainer_internal.h"

static tt_status alloc_tables(tt_trainer* t, const tt_plan_info* info,
                              int64_t total_channels,
                              int32_t* channels_offset) {
  tt_interpreter* it = &t->interpreter;
  TT_RETURN_IF_ERROR(tt_arena_alloc_persistent(
      it, (uint64_t)it->num_tensors * sizeof(tt_train_tensor),
      "the trainer's tensor table", &t->tensor_info_offset));
  TT_RETURN_IF_ERROR(tt_arena_alloc_persistent(
      it, (uint64_t)it->num_nodes * sizeof(tt_train_node),
      "the trainer's operator table", &t->node_info_offset));
  TT_RETURN_IF_ERROR(tt_arena_alloc_persistent(
      it, (uint64_t)info->num_layers * sizeof(tt_train_layer),
      "the trainer's layer table", &t->layers_offset));
  TT_RETURN_IF_ERROR(tt_arena_alloc_persistent(it, (uint64_t)total_channels * 4,
                                               "the selected channel lists",
                                               channels_offset));
  t->sample_order_offset = -1;
  t->sample_pool_offset = -1;
  t->sampled_candidates = info->sampled_candidates;
  t->sample_budget = info->sample_budget;
  t->seed = info->seed;
  if (info->sampled_candidates > 0)
    TT_RETURN_IF_ERROR(tt_arena_alloc_persistent(
        it, (uint64_t)info->sampled_candidates * sizeof(uint16_t),
        "the channel sampler's shuffle", &t->sample_order_offset));
  t->num_layers = info->num_layers;
  tt_train_tensor* tensors = tt_train_tensors(t);
  for (int32_t i = 0; i < it->num_tensors; ++i) {
    tensors[i].producer = -1;
    tensors[i].grad_offset = -1;
    tensors[i].grad_writer = -1;
  }
  tt_train_node* nodes = tt_train_nodes(t);
  for (int32_t n = 0; n < it->num_nodes; ++n) {
    nodes[n].layer = -1;
    nodes[n].mask_offset = -1;
    nodes[n].scratch_offset = -1;
    const tt_node* node = &it->nodes[n];
    for (int32_t o = 0; o < node->num_outputs; ++o)
      tensors[tt_train_output(it, node, o)].producer = n;
  }
  return TT_OK;
}

/* Fills layer `index`; *channels_offset and *sample_base advance past
 * its channel lists and sampled candidates. */
static tt_status fill_layer(tt_trainer* t, const uint8_t* plan,
                            const tt_plan_info* info, int32_t index,
                            int32_t* channels_offset, int32_t* sample_base) {
  tt_interpreter* it = &t->interpreter;
  tt_plan_layer entry;
  tt_plan_layer_at(plan, index, &entry);
  tt_param_layout layout;
  TT_RETURN_IF_ERROR(tt_param_layout_of(it, entry.operator_index, &layout));
  tt_train_layer* layer = &tt_train_layers(t)[index];
  layer->operator_index = entry.operator_index;
  layer->kind = entry.update_kind;
  layer->weights_per_channel = layout.weights_per_channel;
  layer->has_bias = layout.bias_tensor >= 0;
  layer->learning_rate = info->learning_rate * entry.lr_scale;
  for (int32_t s = 0; s < TT_STATE_COUNT; ++s) layer->state[s] = -1;
  layer->lowrank_offset = -1; /* tt_train_lowrank_alloc */
  layer->rank = entry.rank;
  layer->refresh_steps = entry.refresh_steps;
  layer->candidates_offset = *channels_offset;
  layer->num_candidates = entry.num_channels;
  layer->sample_base = *sample_base;
  int32_t* channels = (int32_t*)tt_arena_at(it, layer->candidates_offset);
  for (int32_t c = 0; c < entry.num_channels; ++c)
    channels[c] = tt_plan_channel(plan, &entry, c);
  *channels_offset += 4 * entry.num_channels;
  if (entry.update_kind == TT_UPDATE_SAMPLED) {
    /* Nothing selected until tt_train_resample. */
    layer->num_channels = 0;
    layer->channels_offset = *channels_offset;
    layer->channel_cost = entry.channel_cost;
    *channels_offset += 4 * entry.num_channels;
    *sample_base += entry.num_channels;
  } else {
    layer->num_channels = entry.num_channels;
    layer->channels_offset = layer->candidates_offset;
  }
  tt_train_node* node = &tt_train_nodes(t)[entry.operator_index];
  node->layer = index;
  node->flags |= TT_TRAIN_TRAINED;
  return TT_OK;
}

static bool any_output_has(const tt_trainer* t, const tt_node* node,
                           int32_t flag) {
  const tt_train_tensor* tensors = tt_train_tensors(t);
  for (int32_t o = 0; o < node->num_outputs; ++o)
    if (tensors[tt_train_output(&t->interpreter, node, o)].flags & flag)
      return true;
  return false;
}

/* FEEDS_LOSS backwards from the logits, in reverse operator order. */
static void mark_loss_ancestors(tt_trainer* t) {
  tt_interpreter* it = &t->interpreter;
  tt_train_tensor* tensors = tt_train_tensors(t);
  tensors[t->logits_tensor].flags |= TT_TRAIN_FEEDS_LOSS;
  for (int32_t n = it->num_nodes - 1; n >= 0; --n) {
    const tt_node* node = &it->nodes[n];
    if (!any_output_has(t, node, TT_TRAIN_FEEDS_LOSS)) continue;
    for (int32_t i = 0; i < node->num_inputs; ++i) {
      const int32_t input = tt_train_input(it, node, i);
      if (input >= 0 && it->tensors[input].location == TT_DATA_ARENA)
        tensors[input].flags |= TT_TRAIN_FEEDS_LOSS;
    }
  }
}

static tt_status bad_plan_at(tt_interpreter* it, int32_t n, const char* format,
                             int32_t a, int32_t b) {
  tt_error detail;
  tt_error_set(&detail, TT_ERR_BAD_PLAN, format, a, b);
  return tt_error_set(
      &it->error, TT_ERR_BAD_PLAN, "training plan: operator %d (%s) %s", n,
      tt_builtin_name(it->nodes[n].builtin_code), detail.message);
}

static tt_status check_visited(tt_trainer* t, int32_t n) {
  tt_interpreter* it = &t->interpreter;
  const tt_node* node = &it->nodes[n];
  if (tt_backward_find(node->builtin_code) == NULL)
    return bad_plan_at(it, n,
                       "has no backward kernel, but gradients must "
                       "pass through it to reach trained operators "
                       "(from operator %d); train only operators "
                       "after %d",
                       t->first_backward_node, n);
  if (node->num_outputs != 1 || node->num_inputs > TT_BACKWARD_MAX_INPUTS)
    return bad_plan_at(it, n,
                       "has %d outputs and %d inputs; the backward "
                       "pass supports one output and up to 8 inputs",
                       node->num_outputs, node->num_inputs);
  return TT_OK;
}

/* Which operators run backward: those the plan trains or that lie between
 * a trained operator and the logits. Gradients exist only for tensors such
 * operators write and the logits read. */
static tt_status find_backward_path(tt_trainer* t) {
  tt_interpreter* it = &t->interpreter;
  tt_train_tensor* tensors = tt_train_tensors(t);
  tt_train_node* nodes = tt_train_nodes(t);
  mark_loss_ancestors(t);
  for (int32_t n = 0; n < it->num_nodes; ++n) {
    const tt_node* node = &it->nodes[n];
    bool needed = (nodes[n].flags & TT_TRAIN_TRAINED) != 0;
    for (int32_t i = 0; i < node->num_inputs; ++i) {
      const int32_t input = tt_train_input(it, node, i);
      if (input >= 0 && (tensors[input].flags & TT_TRAIN_HAS_GRAD))
        needed = true;
    }
    const bool feeds = any_output_has(t, node, TT_TRAIN_FEEDS_LOSS);
    if ((nodes[n].flags & TT_TRAIN_TRAINED) && !feeds)
      return bad_plan_at(it, n,
                         "does not feed the logits (tensor %d), so "
                         "training it cannot change the loss",
                         t->logits_tensor, 0);
    if (!needed || !feeds) continue;
    TT_RETURN_IF_ERROR(check_visited(t, n));
    nodes[n].flags |= TT_TRAIN_VISITED;
    tensors[tt_train_output(it, node, 0)].flags |= TT_TRAIN_HAS_GRAD;
    for (int32_t i = 0; i < node->num_inputs; ++i) {
      const int32_t input = tt_train_input(it, node, i);
      if (input >= 0 && (tensors[input].flags & TT_TRAIN_HAS_GRAD))
        tensors[input].grad_writer = n;
    }
  }
  tensors[t->logits_tensor].grad_writer = it->num_nodes;
  return TT_OK;
}

/* Whether operator n may write input 0's gradient over its output
 * gradient: its kernel offers it (with no other scratch), it is the first
 * to write that gradient (the others add to it later), input 0 is no
 * other input of n, and its gradient is not smaller than the output's (a
 * small gradient would hold a large buffer for the rest of its life). */
static bool can_share_input_grad(const tt_trainer* t, int32_t n,
                                 const tt_backward_needs* needs) {
  const tt_interpreter* it = &t->interpreter;
  const tt_node* node = &it->nodes[n];
  if (!needs->in_place || needs->scratch_bytes != 0 || node->num_inputs < 1)
    return false;
  const int32_t input = tt_train_input(it, node, 0);
  if (input < 0) return false;
  const tt_train_tensor* info = &tt_train_tensors(t)[input];
  if (!(info->flags & TT_TRAIN_HAS_GRAD) || info->grad_writer != n)
    return false;
  for (int32_t i = 1; i < node->num_inputs; ++i)
    if (tt_train_input(it, node, i) == input) return false;
  return it->tensors[input].num_elements >=
         it->tensors[tt_train_output(it, node, 0)].num_elements;
}

static tt_status prepare_backward(tt_trainer* t) {
  tt_interpreter* it = &t->interpreter;
  tt_train_node* nodes = tt_train_nodes(t);
  for (int32_t n = t->first_backward_node; n <= t->loss_node; ++n) {
    tt_train_node* info = &nodes[n];
    if (!(info->flags & TT_TRAIN_VISITED)) continue;
    const tt_node* node = &it->nodes[n];
    tt_layer_update update;
    if (info->layer >= 0) {
      /* A sampled layer is checked for all its candidates. */
      const tt_train_layer* layer = &tt_train_layers(t)[info->layer];
      tt_train_layer_update(t, layer, true, &update);
      update.channels =
          (const int32_t*)tt_arena_at(it, layer->candidates_offset);
      update.num_channels = layer->num_candidates;
    }
    tt_backward_needs needs = {0, 0, false, -129, 128, false, 0};
    it->current_node = n;
    TT_RETURN_IF_ERROR(
        tt_backward_find(node->builtin_code)
            ->prepare(it, node, info->layer >= 0 ? &update : NULL, &needs));
    info->saved_inputs = needs.saved_inputs;
    info->scratch_bytes = needs.scratch_bytes;
    if (can_share_input_grad(t, n, &needs)) {
      info->flags |= TT_TRAIN_IN_PLACE;
      info->scratch_bytes = needs.in_place_scratch_bytes;
    }
    info->clamp_min = needs.clamp_min;
    info->clamp_max = needs.clamp_max;
    if (needs.has_clamp) {
      if (tt_node_output(it, node, 0)->type != TT_TYPE_INT8)
        return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                            "its backward clamps the gradient, which needs an "
                            "int8 output");
      info->flags |= TT_TRAIN_MASKED;
    }
  }
  it->current_node = -1;
  return TT_OK;
}

tt_status tt_train_build_tables(tt_trainer* t, const uint8_t* plan,
                                const tt_plan_info* info) {
  tt_interpreter* it = &t->interpreter;
  const uint32_t before = it->persistent_used;
  /* Each layer's plan list, and a selection list as long for a sampled
   * layer. */
  int64_t total_channels = 0;
  for (int32_t l = 0; l < info->num_layers; ++l) {
    tt_plan_layer entry;
    tt_plan_layer_at(plan, l, &entry);
    total_channels += (int64_t)entry.num_channels *
                      (entry.update_kind == TT_UPDATE_SAMPLED ? 2 : 1);
  }
  int32_t channels_offset, sample_base = 0;
  TT_RETURN_IF_ERROR(alloc_tables(t, info, total_channels, &channels_offset));
  for (int32_t l = 0; l < info->num_layers; ++l)
    TT_RETURN_IF_ERROR(
        fill_layer(t, plan, info, l, &channels_offset, &sample_base));
  t->first_backward_node = tt_train_layers(t)[0].operator_index;
  t->loss_node = tt_train_tensors(t)[t->logits_tensor].producer;
  TT_RETURN_IF_ERROR(find_backward_path(t));
  TT_RETURN_IF_ERROR(prepare_backward(t));
  t->trainer_tables_bytes = it->persistent_used - before;
  return TT_OK;
}

static tt_status copy_tensor(tt_trainer* t, int32_t index) {
  tt_interpreter* it = &t->interpreter;
  tt_train_tensor* info = &tt_train_tensors(t)[index];
  if (index < 0 || (info->flags & TT_TRAIN_PARAM_COPY)) return TT_OK;
  tt_tensor* tensor = &it->tensors[index];
  int32_t offset;
  TT_RETURN_IF_ERROR(tt_arena_alloc_persistent(it, (uint64_t)tensor->num_bytes,
                                               "a copy of trainable parameters",
                                               &offset));
  memcpy(it->arena + offset, it->model.data + tensor->data_offset,
         (size_t)tensor->num_bytes);
  tensor->location = TT_DATA_ARENA;
  tensor->data_offset = offset;
  tensor->intact_after_invoke = 1;
  info->flags |= TT_TRAIN_PARAM_COPY;
  return TT_OK;
}

tt_status tt_train_copy_parameters(tt_trainer* t) {
  tt_interpreter* it = &t->interpreter;
  const uint32_t before = it->persistent_used;
  for (int32_t l = 0; l < t->num_layers; ++l) {
    const tt_train_layer* layer = &tt_train_layers(t)[l];
    const tt_node* node = &it->nodes[layer->operator_index];
    if (layer->kind == TT_UPDATE_WEIGHTS || layer->kind == TT_UPDATE_SAMPLED ||
        layer->kind == TT_UPDATE_LOWRANK)
      TT_RETURN_IF_ERROR(copy_tensor(t, tt_train_input(it, node, 1)));
    if (layer->has_bias)
      TT_RETURN_IF_ERROR(copy_tensor(t, tt_train_input(it, node, 2)));
  }
  t->weight_copies_bytes = it->persistent_used - before;
  return TT_OK;
}

static tt_status alloc_state(tt_interpreter* it, int32_t* offset,
                             uint64_t count) {
  return tt_arena_alloc_persistent(it, count * sizeof(float),
                                   "the optimizer state", offset);
}

tt_status tt_train_alloc_state(tt_trainer* t) {
  tt_interpreter* it = &t->interpreter;
  const uint32_t before = it->persistent_used;
  const bool momentum = t->momentum > 0.0f;
  const bool accumulate = t->batch_size > 1;
  const bool residual = (t->flags & TT_PLAN_FLAG_NO_RESIDUAL) == 0;
  for (int32_t l = 0; l < t->num_layers; ++l) {
    tt_train_layer* layer = &tt_train_layers(t)[l];
    if (layer->kind == TT_UPDATE_SAMPLED) continue; /* in the pool */
    if (layer->kind == TT_UPDATE_WEIGHTS) {
      const uint64_t count =
          (uint64_t)layer->num_channels * (uint64_t)layer->weights_per_channel;
      if (residual)
        TT_RETURN_IF_ERROR(
            alloc_state(it, &layer->state[TT_STATE_WEIGHT_RESIDUAL], count));
      if (momentum)
        TT_RETURN_IF_ERROR(
            alloc_state(it, &layer->state[TT_STATE_WEIGHT_VELOCITY], count));
      if (accumulate)
        TT_RETURN_IF_ERROR(
            alloc_state(it, &layer->state[TT_STATE_WEIGHT_ACCUMULATOR], count));
    }
    if (layer->kind == TT_UPDATE_LOWRANK)
      TT_RETURN_IF_ERROR(tt_train_lowrank_alloc(t, layer));
    if (layer->has_bias) {
      const uint64_t count = (uint64_t)layer->num_channels;
      if (residual)
        TT_RETURN_IF_ERROR(
            alloc_state(it, &layer->state[TT_STATE_BIAS_RESIDUAL], count));
      if (momentum)
        TT_RETURN_IF_ERROR(
            alloc_state(it, &layer->state[TT_STATE_BIAS_VELOCITY], count));
      if (accumulate)
        TT_RETURN_IF_ERROR(
            alloc_state(it, &layer->state[TT_STATE_BIAS_ACCUMULATOR], count));
    }
  }
  t->optimizer_state_bytes = it->persistent_used - before;
  if (t->sampled_candidates == 0) return TT_OK;
  const uint32_t pool_start = it->persistent_used;
  TT_RETURN_IF_ERROR(tt_arena_alloc_persistent(
      it, (uint64_t)t->sample_budget,
      "the optimizer state pool of the sampled channels",
      &t->sample_pool_offset));
  t->sampled_state_bytes = it->persistent_used - pool_start;
  return TT_OK;
}
