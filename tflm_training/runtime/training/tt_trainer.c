#include "tt_trainer.h"

#include <stddef.h>
#include <string.h>

#include "kernels/common/tt_kernel.h"
#include "math/tt_math.h"
#include "training/tt_loss.h"
#include "training/tt_trainer_internal.h"
#include "training/tt_trainer_state.h"

static float* arena_floats(const tt_interpreter* it, int32_t offset) {
  return offset < 0 ? NULL : (float*)tt_arena_at(it, offset);
}

static tt_grad* arena_grads(const tt_interpreter* it, int32_t offset) {
  return offset < 0 ? NULL : (tt_grad*)tt_arena_at(it, offset);
}

void tt_train_layer_update(tt_trainer* t, const tt_train_layer* layer,
                           bool apply, tt_layer_update* u) {
  const tt_interpreter* it = &t->interpreter;
  /* Sampled channels train like static ones: weights and bias. */
  u->kind = layer->kind == TT_UPDATE_SAMPLED ? TT_UPDATE_WEIGHTS : layer->kind;
  u->num_channels = layer->num_channels;
  u->channels = (const int32_t*)tt_arena_at(it, layer->channels_offset);
  u->weights_per_channel = layer->weights_per_channel;
  u->learning_rate = layer->learning_rate;
  u->momentum = t->momentum;
  u->qas = (t->flags & TT_PLAN_FLAG_QAS) != 0;
  u->apply = apply;
  u->restored_on_failure = t->undo != NULL;
  u->batch_scale = apply ? 1.0f / (float)t->batch_size : 1.0f;
  u->weight_residual = arena_floats(it, layer->state[TT_STATE_WEIGHT_RESIDUAL]);
  u->weight_velocity = arena_floats(it, layer->state[TT_STATE_WEIGHT_VELOCITY]);
  u->weight_accumulator =
      arena_floats(it, layer->state[TT_STATE_WEIGHT_ACCUMULATOR]);
  u->bias_residual = arena_floats(it, layer->state[TT_STATE_BIAS_RESIDUAL]);
  u->bias_velocity = arena_floats(it, layer->state[TT_STATE_BIAS_VELOCITY]);
  u->bias_accumulator =
      arena_floats(it, layer->state[TT_STATE_BIAS_ACCUMULATOR]);
  u->error = &t->interpreter.error;
  u->probe = false;
  u->probe_weight_sq = NULL;
  u->probe_bias_sq = NULL;
  u->lowrank = layer->lowrank_offset >= 0
                   ? (void*)tt_arena_at(it, layer->lowrank_offset)
                   : NULL;
}

static tt_status check_one_input(tt_interpreter* it) {
  if (it->num_inputs != 1)
    return tt_error_set(&it->error, TT_ERR_UNSUPPORTED,
                        "training needs a model with one input; this one has "
                        "%d",
                        it->num_inputs);
  return TT_OK;
}

tt_status tt_trainer_init(tt_trainer* t, const uint8_t* model,
                          uint32_t model_size, const uint8_t* plan,
                          uint32_t plan_size, uint8_t* arena,
                          uint32_t arena_size) {
  if (t == NULL) return TT_ERR_INVALID_ARGUMENT;
  memset(t, 0, sizeof *t);
  tt_interpreter* it = &t->interpreter;
  TT_RETURN_IF_ERROR(
      tt_interpreter_load(it, model, model_size, arena, arena_size));
  t->interpreter_tables_bytes = it->persistent_used;
  TT_RETURN_IF_ERROR(check_one_input(it));
  tt_plan_info info;
  TT_RETURN_IF_ERROR(tt_plan_parse(it, plan, plan_size, &info));
  t->learning_rate = info.learning_rate;
  t->momentum = info.momentum;
  t->batch_size = info.batch_size;
  t->flags = info.flags;
  t->logits_tensor = info.logits_tensor;
  t->num_classes = info.num_classes;
  t->adam_beta1 = info.adam_beta1;
  t->adam_beta2 = info.adam_beta2;
  t->adam_epsilon = info.adam_epsilon;
  TT_RETURN_IF_ERROR(tt_train_build_tables(t, plan, &info));
  TT_RETURN_IF_ERROR(tt_train_copy_parameters(t));
  TT_RETURN_IF_ERROR(tt_train_alloc_state(t));
  TT_RETURN_IF_ERROR(tt_train_plan_region(t));
  tt_train_resample(t, 0);
  it->ready = true;
  t->ready = true;
  return TT_OK;
}

static tt_status check_ready(tt_trainer* t) {
  if (t == NULL) return TT_ERR_INVALID_ARGUMENT;
  if (!t->ready)
    return tt_error_set(&t->interpreter.error, TT_ERR_BAD_STATE,
                        "the trainer did not initialise");
  return TT_OK;
}

static tt_status set_input(tt_trainer* t, const void* input,
                           uint32_t input_bytes) {
  tt_interpreter* it = &t->interpreter;
  const int32_t tensor = tt_interpreter_input_tensor(it, 0);
  return tt_interpreter_set_input(it, 0, input, input_bytes,
                                  it->tensors[tensor].type);
}

/* Bit j of the mask: the gradient passes output value j. */
static void write_mask(const tt_interpreter* it, const tt_node* node,
                       const tt_train_node* info) {
  const tt_tensor* out = &it->tensors[tt_train_output(it, node, 0)];
  const int8_t* q = (const int8_t*)tt_arena_at(it, out->data_offset);
  uint8_t* mask = (uint8_t*)tt_arena_at(it, info->mask_offset);
  memset(mask, 0, ((size_t)out->num_elements + 7) / 8);
  for (int32_t j = 0; j < out->num_elements; ++j)
    if (q[j] > info->clamp_min && q[j] < info->clamp_max)
      mask[j >> 3] |= (uint8_t)(1u << (j & 7));
}

/* One operator's work in a step, as tt_operator_run sees it. */
typedef struct {
  tt_trainer* trainer;
  int32_t node;
  bool apply; /* backward */
} operator_work;

static tt_status run_operator(tt_trainer* t, int32_t n, int32_t phase,
                              tt_operator_run run, bool apply) {
  operator_work work = {t, n, apply};
  if (t->operator_hook == NULL) return run(&work);
  return t->operator_hook(t->operator_hook_context, n, phase, run, &work);
}

static tt_status forward_node(void* context) {
  const operator_work* work = (const operator_work*)context;
  tt_interpreter* it = &work->trainer->interpreter;
  const tt_train_node* info = &tt_train_nodes(work->trainer)[work->node];
  const tt_node* node = &it->nodes[work->node];
  it->current_node = work->node;
  TT_RETURN_IF_ERROR(tt_kernel_at(node->kernel_index)->eval(it, node));
  if (info->flags & TT_TRAIN_MASKED) write_mask(it, node, info);
  return TT_OK;
}

static tt_status forward(tt_trainer* t) {
  for (int32_t n = 0; n <= t->loss_node; ++n)
    TT_RETURN_IF_ERROR(
        run_operator(t, n, TT_PHASE_FORWARD, forward_node, false));
  t->interpreter.current_node = -1;
  return TT_OK;
}

static tt_status loss(tt_trainer* t, int32_t label, float* value) {
  tt_interpreter* it = &t->interpreter;
  const tt_tensor* logits = &it->tensors[t->logits_tensor];
  tt_grad* grad =
      arena_grads(it, tt_train_tensors(t)[t->logits_tensor].grad_offset);
  *value = tt_softmax_cross_entropy(
      (const int8_t*)tt_arena_at(it, logits->data_offset), t->num_classes,
      logits->scale, label, grad);
  if (!tt_is_finite(*value))
    return tt_error_set(&it->error, TT_ERR_DIVERGED,
                        "training diverged: the loss is NaN or infinite");
  return TT_OK;
}

/* Checks the finished output gradient and applies the clamp mask. */
static tt_status finish_output_grad(tt_interpreter* it, const tt_node* node,
                                    const tt_train_node* info, tt_grad* grad) {
  const int32_t count = it->tensors[tt_train_output(it, node, 0)].num_elements;
  const uint8_t* mask = (info->flags & TT_TRAIN_MASKED)
                            ? (const uint8_t*)tt_arena_at(it, info->mask_offset)
                            : NULL;
  /* One pass, eight values per mask byte. Values are zeroed before a later
   * one may turn out not finite: a diverged step's gradients are dropped. */
  for (int32_t base = 0; base < count; base += 8) {
    const uint32_t kept = mask != NULL ? mask[base >> 3] : 0xFFu;
    const int32_t end = count - base < 8 ? count : base + 8;
    for (int32_t j = base; j < end; ++j) {
      if (!tt_is_finite(tt_grad_value(grad[j])))
        return tt_node_fail(it, node, TT_ERR_DIVERGED,
                            "training diverged: the gradient of its output is "
                            "NaN or infinite; lower the learning rate");
      if (!(kept >> (j - base) & 1u)) grad[j] = tt_grad_from_float(0.0f);
    }
  }
  return TT_OK;
}

static tt_status backward_node(tt_trainer* t, int32_t n, bool apply) {
  tt_interpreter* it = &t->interpreter;
  const tt_train_tensor* tensors = tt_train_tensors(t);
  const tt_train_node* info = &tt_train_nodes(t)[n];
  const tt_node* node = &it->nodes[n];
  it->current_node = n;
  tt_backward_io io;
  memset(&io, 0, sizeof io);
  tt_grad* out_grad =
      arena_grads(it, tensors[tt_train_output(it, node, 0)].grad_offset);
  TT_RETURN_IF_ERROR(finish_output_grad(it, node, info, out_grad));
  io.output_grad = out_grad;
  io.in_place = (info->flags & TT_TRAIN_IN_PLACE) != 0;
  for (int32_t i = 0; i < node->num_inputs; ++i) {
    const int32_t input = tt_train_input(it, node, i);
    if (input < 0 || !(tensors[input].flags & TT_TRAIN_HAS_GRAD)) continue;
    io.input_grads[i] = arena_grads(it, tensors[input].grad_offset);
    if (tensors[input].grad_writer == n && !(io.in_place && i == 0))
      memset(io.input_grads[i], 0,
             (size_t)it->tensors[input].num_elements * sizeof(tt_grad));
  }
  io.scratch = arena_floats(it, info->scratch_offset);
  tt_layer_update update;
  /* A sampled layer without channels this epoch only passes gradients. */
  if (info->layer >= 0 && tt_train_layers(t)[info->layer].num_channels > 0) {
    const tt_train_layer* layers = tt_train_layers(t);
    tt_train_layer_update(t, &layers[info->layer], apply, &update);
    if (t->probing) {
      int32_t first_slot = 0;
      for (int32_t l = 0; l < info->layer; ++l)
        first_slot += layers[l].num_channels;
      update.probe = true;
      update.probe_weight_sq =
          t->probe_weight_sq != NULL ? t->probe_weight_sq + first_slot : NULL;
      update.probe_bias_sq =
          t->probe_bias_sq != NULL ? t->probe_bias_sq + first_slot : NULL;
    }
    io.update = &update;
  }
  TT_RETURN_IF_ERROR(
      tt_backward_find(node->builtin_code)->backward(it, node, &io));
  /* A low-rank layer has every channel's gradient now: its Adam step. */
  if (io.update != NULL && apply && !t->probing &&
      io.update->kind == TT_UPDATE_LOWRANK)
    return tt_train_lowrank_apply(t, &tt_train_layers(t)[info->layer]);
  return TT_OK;
}

static tt_status run_backward_node(void* context) {
  const operator_work* work = (const operator_work*)context;
  return backward_node(work->trainer, work->node, work->apply);
}

static tt_status backward(tt_trainer* t, bool apply) {
  const tt_train_node* nodes = tt_train_nodes(t);
  for (int32_t n = t->loss_node; n >= t->first_backward_node; --n)
    if (nodes[n].flags & TT_TRAIN_VISITED)
      TT_RETURN_IF_ERROR(
          run_operator(t, n, TT_PHASE_BACKWARD, run_backward_node, apply));
  t->interpreter.current_node = -1;
  return TT_OK;
}

/* The forward pass and the loss of one labelled sample. */
static tt_status forward_and_loss(tt_trainer* t, const void* input,
                                  uint32_t input_bytes, int32_t label,
                                  float* value) {
  TT_RETURN_IF_ERROR(check_ready(t));
  if (label < 0 || label >= t->num_classes)
    return tt_error_set(&t->interpreter.error, TT_ERR_INVALID_ARGUMENT,
                        "label %d is outside the model's classes 0 to %d",
                        label, t->num_classes - 1);
  TT_RETURN_IF_ERROR(set_input(t, input, input_bytes));
  TT_RETURN_IF_ERROR(forward(t));
  return loss(t, label, value);
}

tt_status tt_trainer_step(tt_trainer* t, const void* input,
                          uint32_t input_bytes, int32_t label,
                          float* loss_out) {
  float value;
  TT_RETURN_IF_ERROR(forward_and_loss(t, input, input_bytes, label, &value));
  const bool apply = t->samples_in_batch + 1 >= t->batch_size;
  /* Only the backward pass writes the learned block. */
  uint32_t block_bytes;
  uint8_t* block = (uint8_t*)tt_trainer_learned_block(t, &block_bytes);
  if (t->undo != NULL) memcpy(t->undo, block, block_bytes);
  const tt_status status = backward(t, apply);
  if (status != TT_OK) {
    if (t->undo != NULL) memcpy(block, t->undo, block_bytes);
    return status;
  }
  t->samples_in_batch = apply ? 0 : t->samples_in_batch + 1;
  ++t->steps;
  if (loss_out != NULL) *loss_out = value;
  return TT_OK;
}

tt_status tt_trainer_gradient_norms(tt_trainer* t, const void* input,
                                    uint32_t input_bytes, int32_t label,
                                    float* weight_sq_norms,
                                    float* bias_sq_norms, float* loss_out) {
  float value;
  TT_RETURN_IF_ERROR(forward_and_loss(t, input, input_bytes, label, &value));
  t->probing = true;
  t->probe_weight_sq = weight_sq_norms;
  t->probe_bias_sq = bias_sq_norms;
  const tt_status status = backward(t, true);
  t->probing = false;
  t->probe_weight_sq = NULL;
  t->probe_bias_sq = NULL;
  t->interpreter.current_node = -1;
  if (status == TT_OK && loss_out != NULL) *loss_out = value;
  return status;
}

tt_status tt_trainer_begin_epoch(tt_trainer* t, uint32_t epoch) {
  TT_RETURN_IF_ERROR(check_ready(t));
  /* The redraw restarts the sampled channels' state, batch sums included:
   * refuse rather than drop an unfinished batch. */
  if (t->sample_budget > 0 && t->samples_in_batch != 0)
    return tt_error_set(&t->interpreter.error, TT_ERR_BAD_STATE,
                        "epoch %d starts %d samples into a batch of %d; the "
                        "redraw of sampled channels would drop them, so give "
                        "each epoch a multiple of %d samples",
                        (int32_t)epoch, t->samples_in_batch, t->batch_size,
                        t->batch_size);
  tt_train_resample(t, epoch);
  return TT_OK;
}

const int32_t* tt_trainer_layer_channels(const tt_trainer* t, int32_t layer,
                                         int32_t* count) {
  if (count != NULL) *count = 0;
  if (t == NULL || !t->ready || layer < 0 || layer >= t->num_layers)
    return NULL;
  const tt_train_layer* record = &tt_train_layers(t)[layer];
  if (count != NULL) *count = record->num_channels;
  return (const int32_t*)tt_arena_at(&t->interpreter, record->channels_offset);
}

int32_t tt_trainer_selected_slots(const tt_trainer* t) {
  if (t == NULL || !t->ready) return 0;
  int32_t slots = 0;
  for (int32_t l = 0; l < t->num_layers; ++l)
    slots += tt_train_layers(t)[l].num_channels;
  return slots;
}

tt_status tt_trainer_predict(tt_trainer* t, const void* input,
                             uint32_t input_bytes, int32_t* predicted_class) {
  TT_RETURN_IF_ERROR(check_ready(t));
  tt_interpreter* it = &t->interpreter;
  TT_RETURN_IF_ERROR(set_input(t, input, input_bytes));
  TT_RETURN_IF_ERROR(tt_interpreter_invoke(it));
  const tt_tensor* logits = &it->tensors[t->logits_tensor];
  const int8_t* q = (const int8_t*)tt_arena_at(it, logits->data_offset);
  int32_t best = 0;
  for (int32_t i = 1; i < t->num_classes; ++i)
    if (q[i] > q[best]) best = i;
  if (predicted_class != NULL) *predicted_class = best;
  return TT_OK;
}

void tt_trainer_set_operator_hook(tt_trainer* t, tt_operator_hook hook,
                                  void* context) {
  if (t == NULL) return;
  t->operator_hook = hook;
  t->operator_hook_context = context;
}

tt_interpreter* tt_trainer_interpreter(tt_trainer* t) {
  return t == NULL ? NULL : &t->interpreter;
}

uint32_t tt_trainer_arena_used(const tt_trainer* t) {
  return (t == NULL || !t->ready) ? 0
                                  : t->interpreter.activations_offset +
                                        t->interpreter.activations_size;
}

void tt_trainer_memory(const tt_trainer* t, tt_training_memory* memory) {
  if (memory == NULL) return;
  memset(memory, 0, sizeof *memory);
  if (t == NULL || !t->ready) return;
  memory->interpreter_tables = t->interpreter_tables_bytes;
  memory->trainer_tables = t->trainer_tables_bytes;
  memory->weight_copies = t->weight_copies_bytes;
  memory->optimizer_state = t->optimizer_state_bytes;
  memory->sampled_state = t->sampled_state_bytes;
  memory->total = tt_trainer_arena_used(t);
  memory->planned_region = memory->total - memory->interpreter_tables -
                           memory->trainer_tables - memory->weight_copies -
                           memory->optimizer_state - memory->sampled_state;
}

const tt_error* tt_trainer_error(const tt_trainer* t) {
  return t == NULL ? NULL : &t->interpreter.error;
}

uint32_t tt_sizeof_trainer(void) { return (uint32_t)sizeof(tt_trainer); }

int32_t tt_gradient_bits(void) { return TT_GRADIENT_BITS; }
