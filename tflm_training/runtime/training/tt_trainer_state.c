#include "training/tt_trainer_state.h"

#include <stdint.h>
#include <string.h>

#include "math/tt_math.h"
#include "memory/tt_arena.h"
#include "optimizer/tt_lowrank.h"
#include "training/tt_loss.h"
#include "training/tt_trainer_internal.h"

static uint32_t block_start(const tt_trainer* t) {
  return t->interpreter_tables_bytes + t->trainer_tables_bytes;
}

static uint32_t block_bytes(const tt_trainer* t) {
  return t->weight_copies_bytes + t->optimizer_state_bytes +
         t->sampled_state_bytes;
}

uint32_t tt_trainer_state_bytes(const tt_trainer* t) {
  return TT_STATE_COUNTERS_BYTES + block_bytes(t);
}

const uint8_t* tt_trainer_learned_block(const tt_trainer* t, uint32_t* size) {
  *size = block_bytes(t);
  return t->interpreter.arena + block_start(t);
}

static void put_u32(uint8_t* out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out[i] = (uint8_t)(value >> (8 * i));
}

static uint32_t get_u32(const uint8_t* in) {
  return (uint32_t)in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16 |
         (uint32_t)in[3] << 24;
}

void tt_trainer_state_counters(const tt_trainer* t,
                               uint8_t counters[TT_STATE_COUNTERS_BYTES]) {
  put_u32(counters, t->steps);
  put_u32(counters + 4, t->epoch);
  put_u32(counters + 8, (uint32_t)t->samples_in_batch);
  put_u32(counters + 12, 0);
}

tt_status tt_trainer_state_write(const tt_trainer* t, uint8_t* out,
                                 uint32_t size) {
  if (t == NULL || out == NULL || !t->ready) return TT_ERR_INVALID_ARGUMENT;
  if (size != tt_trainer_state_bytes(t)) return TT_ERR_INVALID_ARGUMENT;
  tt_trainer_state_counters(t, out);
  uint32_t bytes;
  const uint8_t* block = tt_trainer_learned_block(t, &bytes);
  memcpy(out + TT_STATE_COUNTERS_BYTES, block, bytes);
  return TT_OK;
}

static bool floats_finite(const uint8_t* at, uint64_t count) {
  for (uint64_t i = 0; i < count; ++i) {
    float value;
    memcpy(&value, at + 4 * i, sizeof value);
    if (!tt_is_finite(value)) return false;
  }
  return true;
}

/* The float arrays of layer state `s`: how many floats. */
static uint64_t state_floats(const tt_train_layer* layer, int32_t s) {
  const uint64_t channels = (uint64_t)layer->num_channels;
  if (s == TT_STATE_WEIGHT_RESIDUAL || s == TT_STATE_WEIGHT_VELOCITY ||
      s == TT_STATE_WEIGHT_ACCUMULATOR)
    return channels * (uint64_t)layer->weights_per_channel;
  return channels;
}

bool tt_trainer_state_is_finite(const tt_trainer* t, const uint8_t* block) {
  const uint32_t start = block_start(t);
  const tt_train_layer* layers = tt_train_layers(t);
  /* The pool holds only the sampled layers' float arrays (and zeros). */
  if (t->sample_pool_offset >= 0 &&
      !floats_finite(block + ((uint32_t)t->sample_pool_offset - start),
                     (uint64_t)t->sample_budget / 4))
    return false;
  for (int32_t l = 0; l < t->num_layers; ++l) {
    const tt_train_layer* layer = &layers[l];
    for (int32_t s = 0; s < TT_STATE_COUNT; ++s) {
      if (layer->state[s] < 0 || layer->kind == TT_UPDATE_SAMPLED) continue;
      const uint8_t* at = block + ((uint32_t)layer->state[s] - start);
      if (!floats_finite(at, state_floats(layer, s))) return false;
    }
    if (layer->lowrank_offset >= 0) {
      const uint8_t* at = block + ((uint32_t)layer->lowrank_offset - start);
      const uint64_t bytes = tt_lowrank_state_bytes(
          layer->num_channels, layer->weights_per_channel, layer->rank);
      /* beta1_power, beta2_power, then the float arrays */
      if (!floats_finite(at + 24, 2) ||
          !floats_finite(at + TT_LOWRANK_HEADER_BYTES,
                         (bytes - TT_LOWRANK_HEADER_BYTES) / 4))
        return false;
    }
  }
  return true;
}

/* A low-rank header in `block` must describe the same layer as the
 * trainer's own (its arrays' extents come from it). */
static bool lowrank_headers_match(const tt_trainer* t, const uint8_t* block) {
  const uint32_t start = block_start(t);
  const tt_train_layer* layers = tt_train_layers(t);
  for (int32_t l = 0; l < t->num_layers; ++l) {
    const int32_t offset = layers[l].lowrank_offset;
    if (offset < 0) continue;
    const uint8_t* mine = tt_arena_at(&t->interpreter, offset);
    const uint8_t* theirs = block + ((uint32_t)offset - start);
    /* rows, cols, rank, refresh_steps (updates may differ), seed */
    if (memcmp(mine, theirs, 16) != 0 || memcmp(mine + 20, theirs + 20, 4) != 0)
      return false;
  }
  return true;
}

tt_status tt_trainer_state_load(tt_trainer* t, const uint8_t* payload,
                                uint32_t size) {
  if (t == NULL || payload == NULL) return TT_ERR_INVALID_ARGUMENT;
  if (!t->ready)
    return tt_error_set(&t->interpreter.error, TT_ERR_BAD_STATE,
                        "the trainer did not initialise");
  tt_error* error = &t->interpreter.error;
  if (size != tt_trainer_state_bytes(t))
    return tt_error_set(error, TT_ERR_BAD_STATE,
                        "learned state of %u bytes, but this model and plan "
                        "keep %u",
                        size, tt_trainer_state_bytes(t));
  const uint32_t steps = get_u32(payload);
  const uint32_t epoch = get_u32(payload + 4);
  const int32_t in_batch = (int32_t)get_u32(payload + 8);
  if (in_batch < 0 || in_batch >= t->batch_size || get_u32(payload + 12) != 0)
    return tt_error_set(error, TT_ERR_BAD_STATE,
                        "learned state: %d samples into a batch of %d",
                        in_batch, t->batch_size);
  const uint8_t* block = payload + TT_STATE_COUNTERS_BYTES;
  if (!lowrank_headers_match(t, block) || !tt_trainer_state_is_finite(t, block))
    return tt_error_set(error, TT_ERR_BAD_STATE,
                        "learned state: optimizer state not finite or not "
                        "this plan's");
  tt_train_resample(t, epoch); /* the selection; it zeroes the pool */
  uint32_t bytes;
  uint8_t* into = (uint8_t*)tt_trainer_learned_block(t, &bytes);
  memcpy(into, block, bytes);
  t->steps = steps;
  t->epoch = epoch;
  t->samples_in_batch = in_batch;
  return TT_OK;
}

uint32_t tt_trainer_undo_bytes(const tt_trainer* t) {
  return (t == NULL || !t->ready) ? 0 : block_bytes(t);
}

tt_status tt_trainer_set_undo(tt_trainer* t, uint8_t* undo, uint32_t size) {
  if (t == NULL) return TT_ERR_INVALID_ARGUMENT;
  if (!t->ready)
    return tt_error_set(&t->interpreter.error, TT_ERR_BAD_STATE,
                        "the trainer did not initialise");
  if (undo != NULL && size < block_bytes(t))
    return tt_error_set(&t->interpreter.error, TT_ERR_INVALID_ARGUMENT,
                        "an undo buffer of %u bytes; this trainer's steps "
                        "change %u",
                        size, block_bytes(t));
  const uintptr_t arena = (uintptr_t)t->interpreter.arena;
  const uintptr_t start = (uintptr_t)undo;
  if (undo != NULL && start < arena + t->interpreter.arena_size &&
      start + size > arena)
    return tt_error_set(&t->interpreter.error, TT_ERR_INVALID_ARGUMENT,
                        "the undo buffer overlaps the trainer's arena; give "
                        "it its own memory");
  t->undo = undo;
  return TT_OK;
}

int32_t tt_trainer_trained_tensor(const tt_trainer* t, int32_t k) {
  const tt_interpreter* it = &t->interpreter;
  const tt_train_tensor* tensors = tt_train_tensors(t);
  int32_t seen = 0;
  for (int32_t l = 0; l < t->num_layers; ++l) {
    const tt_train_layer* layer = &tt_train_layers(t)[l];
    const tt_node* node = &it->nodes[layer->operator_index];
    for (int32_t input = 1; input <= 2; ++input) {
      const int32_t index = tt_train_input(it, node, input);
      if (index < 0 || !(tensors[index].flags & TT_TRAIN_PARAM_COPY)) continue;
      if (input == 1 && layer->kind == TT_UPDATE_BIAS) continue;
      if (seen++ == k) return index;
    }
  }
  return -1;
}

float tt_trainer_last_loss(const tt_trainer* t, int32_t label) {
  const tt_interpreter* it = &t->interpreter;
  const tt_tensor* logits = &it->tensors[t->logits_tensor];
  return tt_softmax_cross_entropy(
      (const int8_t*)tt_arena_at(it, logits->data_offset), t->num_classes,
      logits->scale, label, NULL);
}
