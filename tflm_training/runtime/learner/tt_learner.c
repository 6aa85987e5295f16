#include "tt_learner.h"

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include "math/tt_crc.h"
#include "math/tt_math.h"
#include "training/tt_trainer_internal.h"
#include "training/tt_trainer_state.h"
#include "training/tt_training_plan.h"

#define SAMPLE_HEADER_BYTES 8u
#define RESPONSE(code) ((uint8_t)((code) | 0x80u))

/* Little-endian writer into a response payload. */
typedef struct {
  uint8_t* at;
  uint32_t used;
} writer;

static void put(writer* w, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i)
    w->at[w->used++] = (uint8_t)(value >> (8 * i));
}

static uint32_t get_u32(const uint8_t* in) {
  return (uint32_t)in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16 |
         (uint32_t)in[3] << 24;
}

static uint32_t float_bits(float value) {
  uint32_t bits;
  memcpy(&bits, &value, sizeof bits);
  return bits;
}

uint32_t tt_learner_error_frame(uint8_t* buffer, uint32_t capacity,
                                uint16_t sequence, tt_wire_error code,
                                const char* message) {
  if (capacity < TT_FRAME_OVERHEAD + 4) return 0;
  writer w = {buffer + TT_FRAME_HEADER_BYTES, 0};
  put(&w, (uint32_t)code, 2);
  put(&w, 0, 2);
  const uint32_t room = capacity - TT_FRAME_OVERHEAD - w.used;
  uint32_t length = 0;
  while (message[length] != '\0' && length < room) length++;
  memcpy(w.at + w.used, message, length);
  return tt_frame_finish(buffer, TT_FRAME_ERROR, sequence, w.used + length);
}

/* -- the learned state ------------------------------------------------- */

static void measure_none(void (*fn)(void*), void* context, int64_t* count,
                         tt_measure_fn measure) {
  if (measure == NULL) {
    fn(context);
    *count = -1;
  } else {
    *count = measure(fn, context);
  }
}

static tt_status init_trainer(tt_learner* l) {
  const tt_learner_config* c = &l->config;
  TT_RETURN_IF_ERROR(tt_trainer_init(&l->trainer, c->model, c->model_size,
                                     c->plan, c->plan_size, c->arena,
                                     c->arena_size));
  if (c->undo == NULL) return TT_OK;
  return tt_trainer_set_undo(&l->trainer, c->undo, c->undo_bytes);
}

/* The newest saved state into the trainer, or the model's own weights. */
static tt_status load_saved(tt_learner* l) {
  const uint8_t* saved = l->has_store ? tt_state_store_newest(&l->store) : NULL;
  if (saved == NULL) return init_trainer(l);
  return tt_trainer_state_load(&l->trainer, saved, l->store.payload_bytes);
}

typedef struct {
  tt_learner* learner;
  tt_status status;
} restore_call;

static void restore_once(void* context) {
  restore_call* call = context;
  call->status = load_saved(call->learner);
}

tt_status tt_learner_init(tt_learner* l, const tt_learner_config* config) {
  if (l == NULL || config == NULL) return TT_ERR_INVALID_ARGUMENT;
  memset(l, 0, sizeof *l);
  l->config = *config;
  tt_status status = init_trainer(l);
  if (status != TT_OK) {
    l->error = *tt_trainer_error(&l->trainer);
    return status;
  }
  tt_interpreter* it = tt_trainer_interpreter(&l->trainer);
  const tt_tensor* input = &it->tensors[tt_interpreter_input_tensor(it, 0)];
  l->input_bytes = (uint32_t)input->num_bytes;
  l->input_type = input->type;
  l->model_crc32 = tt_crc32(config->model, config->model_size);
  l->plan_crc32 = tt_crc32(config->plan, config->plan_size);
  l->heldout_capacity = config->heldout == NULL
                            ? 0
                            : config->heldout_bytes / (l->input_bytes + 4);
  if (l->heldout_capacity > 0xFFFF) l->heldout_capacity = 0xFFFF;
  l->boot_slots[0] = l->boot_slots[1] = TT_SLOT_EMPTY;
  if (config->flash != NULL) {
    status =
        tt_state_store_open(&l->store, config->flash, l->model_crc32,
                            l->plan_crc32, tt_trainer_state_bytes(&l->trainer));
    if (status != TT_OK) {
      l->error = l->store.error;
      return status;
    }
    l->has_store = true;
    l->boot_slots[0] = (uint8_t)l->store.slots[0];
    l->boot_slots[1] = (uint8_t)l->store.slots[1];
    if (tt_state_store_newest(&l->store) != NULL) {
      restore_call call = {l, TT_OK};
      measure_none(restore_once, &call, &l->restore_count, config->measure);
      if (call.status != TT_OK) {
        l->error = *tt_trainer_error(&l->trainer);
        return call.status;
      }
      l->restored = true;
    }
  }
  l->steps_at_save = l->trainer.steps;
  return TT_OK;
}

/* -- requests ----------------------------------------------------------- */

typedef struct {
  tt_learner* learner;
  uint8_t* buffer;
  uint32_t capacity;
  const tt_frame* request;
  writer out;
} call;

static uint32_t fail(call* c, tt_wire_error code, const char* format, ...) {
  tt_error error;
  va_list args;
  va_start(args, format);
  tt_error_vset(&error, TT_ERR_INVALID_ARGUMENT, format, args);
  va_end(args);
  return tt_learner_error_frame(c->buffer, c->capacity, c->request->sequence,
                                code, error.message);
}

static uint32_t fail_runtime(call* c, tt_wire_error code) {
  return tt_learner_error_frame(
      c->buffer, c->capacity, c->request->sequence, code,
      tt_trainer_error(&c->learner->trainer)->message);
}

static uint32_t answer(call* c) {
  return tt_frame_finish(c->buffer, RESPONSE(c->request->command),
                         c->request->sequence, c->out.used);
}

static const char* type_name(int32_t type) {
  switch (type) {
    case 0:
      return "float32";
    case 3:
      return "uint8";
    case 7:
      return "int16";
    case 9:
      return "int8";
    default:
      return "another type";
  }
}

/* Checks a sample payload; *label and *input on success, else 0 and
 * *response holds the error frame. */
static bool take_sample(call* c, bool labelled, int32_t* label,
                        const uint8_t** input, uint32_t* response) {
  tt_learner* l = c->learner;
  const tt_frame* r = c->request;
  if (r->payload_bytes < SAMPLE_HEADER_BYTES) {
    *response = fail(c, TT_WIRE_BAD_REQUEST,
                     "a sample needs an 8-byte header (dtype, label) before "
                     "its %u bytes; got %u bytes",
                     l->input_bytes, r->payload_bytes);
    return false;
  }
  const int32_t type = r->payload[0];
  if (type != l->input_type) {
    *response = fail(c, TT_WIRE_BAD_SAMPLE,
                     "the sample is %s but the model's input is %s: quantize "
                     "it with the input's scale and zero point",
                     type_name(type), type_name(l->input_type));
    return false;
  }
  if (r->payload_bytes - SAMPLE_HEADER_BYTES != l->input_bytes) {
    *response = fail(c, TT_WIRE_BAD_SAMPLE,
                     "the sample has %u bytes but the model's input has %u",
                     r->payload_bytes - SAMPLE_HEADER_BYTES, l->input_bytes);
    return false;
  }
  *label = (int32_t)get_u32(r->payload + 4);
  if (labelled && (*label < 0 || *label >= l->trainer.num_classes)) {
    *response = fail(c, TT_WIRE_BAD_LABEL,
                     "label %d is not a class of the model (0 to %d)", *label,
                     l->trainer.num_classes - 1);
    return false;
  }
  *input = r->payload + SAMPLE_HEADER_BYTES;
  return true;
}

static uint32_t state_crc(const tt_trainer* t) {
  uint8_t counters[TT_STATE_COUNTERS_BYTES];
  tt_trainer_state_counters(t, counters);
  uint32_t bytes;
  const uint8_t* block = tt_trainer_learned_block(t, &bytes);
  return tt_crc32_update(tt_crc32(counters, sizeof counters), block, bytes);
}

static uint32_t trained_bytes(const tt_trainer* t) {
  uint32_t total = 0;
  for (int32_t k = 0, index; (index = tt_trainer_trained_tensor(t, k)) >= 0;
       ++k)
    total += (uint32_t)t->interpreter.tensors[index].num_bytes;
  return total;
}

static uint32_t handle_info(call* c) {
  tt_learner* l = c->learner;
  tt_trainer* t = &l->trainer;
  if (c->capacity <
      TT_FRAME_OVERHEAD + TT_LEARNER_INFO_BYTES + 8u * (uint32_t)t->num_layers)
    return fail(c, TT_WIRE_BAD_REQUEST,
                "the frame buffer is too small for INFO");
  writer* w = &c->out;
  put(w, TT_FRAME_VERSION, 2);
  put(w, TT_STATE_FORMAT_VERSION, 2);
  put(w, l->config.firmware_crc32, 4);
  put(w, l->model_crc32, 4);
  put(w, l->plan_crc32, 4);
  put(w, l->config.arena_size, 4);
  put(w, tt_trainer_arena_used(t), 4);
  put(w, l->input_bytes, 4);
  put(w, (uint32_t)l->input_type, 1);
  put(w, l->restored ? 1 : 0, 1);
  put(w, (uint32_t)t->num_classes, 2);
  put(w, c->capacity - TT_FRAME_OVERHEAD, 4);
  put(w, tt_trainer_state_bytes(t), 4);
  put(w, l->has_store ? l->store.slot_bytes : 0, 4);
  put(w, l->has_store ? l->store.sequence : 0, 4);
  put(w, state_crc(t), 4);
  put(w, t->steps, 4);
  put(w, t->epoch, 4);
  put(w, (uint32_t)t->samples_in_batch, 4);
  put(w, t->steps - l->steps_at_save, 4);
  put(w, l->heldout_count, 2);
  put(w, l->heldout_capacity, 2);
  put(w, l->boot_slots[0], 1);
  put(w, l->boot_slots[1], 1);
  put(w, (uint32_t)t->num_layers, 2);
  put(w, trained_bytes(t), 4);
  put(w, (uint64_t)l->restore_count, 8);
  put(w, l->config.link_rx_buffer, 4);
  put(w, l->config.undo != NULL ? l->config.undo_bytes : 0, 4);
  for (int32_t i = 0; i < t->num_layers; ++i) {
    const tt_train_layer* layer = &tt_train_layers(t)[i];
    put(w, (uint32_t)layer->operator_index, 4);
    put(w, (uint32_t)layer->kind, 1);
    put(w, 0, 1);
    put(w, (uint32_t)layer->num_channels, 2);
  }
  return answer(c);
}

typedef struct {
  tt_trainer* trainer;
  const uint8_t* input;
  uint32_t input_bytes;
  int32_t label;
  float loss;
  tt_status status;
} step_call;

static void step_once(void* context) {
  step_call* s = context;
  s->status =
      tt_trainer_step(s->trainer, s->input, s->input_bytes, s->label, &s->loss);
}

/* A diverged step: with an undo buffer it changed nothing; without one
 * the device goes back to its saved state rather than train on a
 * half-updated model. */
static uint32_t diverged(call* c) {
  tt_learner* l = c->learner;
  tt_error error = *tt_trainer_error(&l->trainer);
  if (l->config.undo != NULL)
    return fail(c, TT_WIRE_DIVERGED, "%s; the step changed nothing",
                error.message);
  if (load_saved(l) != TT_OK) return fail_runtime(c, TT_WIRE_RUNTIME);
  l->steps_at_save = l->trainer.steps;
  return fail(c, TT_WIRE_DIVERGED,
              "%s; the device went back to its saved state %u (%u steps)",
              error.message, l->store.sequence, l->trainer.steps);
}

static uint32_t handle_train(call* c) {
  tt_learner* l = c->learner;
  int32_t label;
  const uint8_t* input;
  uint32_t response;
  if (!take_sample(c, true, &label, &input, &response)) return response;
  step_call s = {&l->trainer, input, l->input_bytes, label, 0.0f, TT_OK};
  int64_t count;
  measure_none(step_once, &s, &count, l->config.measure);
  if (s.status == TT_ERR_DIVERGED) return diverged(c);
  if (s.status != TT_OK) return fail_runtime(c, TT_WIRE_RUNTIME);
  put(&c->out, float_bits(s.loss), 4);
  put(&c->out, l->trainer.steps, 4);
  put(&c->out, (uint64_t)count, 8);
  return answer(c);
}

static tt_status predict(tt_learner* l, const uint8_t* input,
                         int32_t* predicted) {
  return tt_trainer_predict(&l->trainer, input, l->input_bytes, predicted);
}

static uint32_t handle_predict(call* c) {
  tt_learner* l = c->learner;
  int32_t label, predicted;
  const uint8_t* input;
  uint32_t response;
  if (!take_sample(c, false, &label, &input, &response)) return response;
  if (4u + (uint32_t)l->trainer.num_classes > c->capacity - TT_FRAME_OVERHEAD)
    return fail(c, TT_WIRE_BAD_REQUEST,
                "the frame buffer is too small for the logits");
  if (predict(l, input, &predicted) != TT_OK)
    return fail_runtime(c, TT_WIRE_RUNTIME);
  const tt_interpreter* it = tt_trainer_interpreter(&l->trainer);
  const tt_tensor* logits = &it->tensors[l->trainer.logits_tensor];
  put(&c->out, (uint32_t)predicted, 4);
  memcpy(c->out.at + c->out.used, tt_arena_at(it, logits->data_offset),
         (size_t)l->trainer.num_classes);
  c->out.used += (uint32_t)l->trainer.num_classes;
  return answer(c);
}

/* Held-out sample i: its label, then its input. */
static uint8_t* heldout_at(const tt_learner* l, uint32_t i) {
  return l->config.heldout + (size_t)i * (l->input_bytes + 4);
}

typedef struct {
  uint32_t correct;
  float loss; /* mean */
} heldout_result;

static tt_status evaluate_heldout(tt_learner* l, heldout_result* result) {
  float sum = 0.0f;
  result->correct = 0;
  for (uint32_t i = 0; i < l->heldout_count; ++i) {
    const uint8_t* sample = heldout_at(l, i);
    const int32_t label = (int32_t)get_u32(sample);
    int32_t predicted;
    TT_RETURN_IF_ERROR(predict(l, sample + 4, &predicted));
    if (predicted == label) result->correct++;
    sum += tt_trainer_last_loss(&l->trainer, label);
  }
  result->loss = l->heldout_count ? sum / (float)l->heldout_count : 0.0f;
  return TT_OK;
}

static uint32_t handle_evaluate(call* c) {
  tt_learner* l = c->learner;
  if (c->request->payload_bytes == 0) {
    heldout_result result;
    if (evaluate_heldout(l, &result) != TT_OK)
      return fail_runtime(c, TT_WIRE_RUNTIME);
    put(&c->out, result.correct, 4);
    put(&c->out, l->heldout_count, 4);
    put(&c->out, float_bits(result.loss), 4);
    return answer(c);
  }
  int32_t label, predicted;
  const uint8_t* input;
  uint32_t response;
  if (!take_sample(c, true, &label, &input, &response)) return response;
  if (predict(l, input, &predicted) != TT_OK)
    return fail_runtime(c, TT_WIRE_RUNTIME);
  put(&c->out, (uint32_t)predicted, 4);
  put(&c->out, float_bits(tt_trainer_last_loss(&l->trainer, label)), 4);
  return answer(c);
}

static uint32_t handle_begin_epoch(call* c) {
  tt_learner* l = c->learner;
  if (c->request->payload_bytes != 4)
    return fail(c, TT_WIRE_BAD_REQUEST,
                "BEGIN_EPOCH takes a u32 epoch (4 bytes), got %u",
                c->request->payload_bytes);
  const uint32_t epoch = get_u32(c->request->payload);
  if (tt_trainer_begin_epoch(&l->trainer, epoch) != TT_OK)
    return fail_runtime(c, TT_WIRE_RUNTIME);
  put(&c->out, epoch, 4);
  return answer(c);
}

static uint32_t handle_holdout(call* c) {
  tt_learner* l = c->learner;
  if (c->request->payload_bytes == 0) {
    l->heldout_count = 0;
    l->baseline_known = false;
  } else {
    int32_t label;
    const uint8_t* input;
    uint32_t response;
    if (!take_sample(c, true, &label, &input, &response)) return response;
    if (l->heldout_count >= l->heldout_capacity)
      return fail(c, TT_WIRE_HELDOUT_FULL,
                  "the held-out buffer holds %u samples and is full; clear it "
                  "with an empty HOLDOUT first",
                  l->heldout_capacity);
    uint8_t* into = heldout_at(l, l->heldout_count);
    memcpy(into, c->request->payload + 4, 4);
    memmove(into + 4, input, l->input_bytes);
    l->heldout_count++;
    l->baseline_known = false;
  }
  put(&c->out, l->heldout_count, 2);
  put(&c->out, l->heldout_capacity, 2);
  return answer(c);
}

/* -- SAVE ----------------------------------------------------------------- */

typedef struct {
  tt_learner* learner;
  uint8_t guard;
  uint32_t max_drop;
  tt_learner_save_result* result;
  tt_wire_error error; /* 0 when none */
} save_call;

static tt_status stage_state(tt_learner* l, tt_save_stats* stats) {
  uint8_t counters[TT_STATE_COUNTERS_BYTES];
  tt_trainer_state_counters(&l->trainer, counters);
  uint32_t bytes;
  const uint8_t* block = tt_trainer_learned_block(&l->trainer, &bytes);
  const tt_state_piece pieces[2] = {{counters, sizeof counters},
                                    {block, bytes}};
  return tt_state_store_stage(&l->store, pieces, 2, stats);
}

static void roll_back(save_call* s, uint8_t reason) {
  tt_learner* l = s->learner;
  if (load_saved(l) != TT_OK) {
    s->error = TT_WIRE_RUNTIME;
    return;
  }
  l->steps_at_save = l->trainer.steps;
  s->result->outcome = TT_SAVE_ROLLED_BACK;
  s->result->reason = reason;
}

static bool guard_holds(const save_call* s, const heldout_result* now,
                        const heldout_result* saved) {
  if ((s->guard & 1u) && now->correct + s->max_drop < saved->correct)
    return false;
  if ((s->guard & 2u) &&
      (!tt_is_finite(now->loss) || now->loss > 2.0f * saved->loss))
    return false;
  return true;
}

static void save_once(void* context) {
  save_call* s = context;
  tt_learner* l = s->learner;
  tt_learner_save_result* r = s->result;
  uint32_t bytes;
  const uint8_t* block = tt_trainer_learned_block(&l->trainer, &bytes);
  if (!tt_trainer_state_is_finite(&l->trainer, block))
    return roll_back(s, TT_SAVE_REASON_NOT_FINITE);
  tt_save_stats stats;
  if (stage_state(l, &stats) != TT_OK) {
    s->error = TT_WIRE_FLASH;
    return;
  }
  r->pages_erased = stats.pages_erased;
  r->bytes_written = stats.bytes_written;
  heldout_result now = {0, 0.0f};
  heldout_result saved = {l->baseline_correct, l->baseline_loss};
  if (s->guard != 0) {
    if (evaluate_heldout(l, &now) != TT_OK) {
      s->error = TT_WIRE_RUNTIME;
      return;
    }
    if (!l->baseline_known) {
      /* The saved state's results: load it, measure, and take the staged
       * state back (it is whole in flash, only not committed). */
      if (load_saved(l) != TT_OK || evaluate_heldout(l, &saved) != TT_OK ||
          tt_trainer_state_load(&l->trainer, tt_state_store_staged(&l->store),
                                l->store.payload_bytes) != TT_OK) {
        s->error = TT_WIRE_RUNTIME;
        return;
      }
      l->baseline_known = true;
      l->baseline_correct = saved.correct;
      l->baseline_loss = saved.loss;
    }
    r->heldout_count = l->heldout_count;
    r->correct = now.correct;
    r->saved_correct = saved.correct;
    r->loss_bits = float_bits(now.loss);
    r->saved_loss_bits = float_bits(saved.loss);
    if (!guard_holds(s, &now, &saved)) {
      const bool accuracy =
          (s->guard & 1u) && now.correct + s->max_drop < saved.correct;
      return roll_back(
          s, accuracy ? TT_SAVE_REASON_ACCURACY : TT_SAVE_REASON_LOSS);
    }
  }
  if (tt_state_store_commit(&l->store, &stats) != TT_OK) {
    s->error = TT_WIRE_FLASH;
    return;
  }
  r->bytes_written += stats.bytes_written;
  l->steps_at_save = l->trainer.steps;
  l->baseline_known = s->guard != 0;
  l->baseline_correct = now.correct;
  l->baseline_loss = now.loss;
}

static uint32_t handle_save(call* c) {
  tt_learner* l = c->learner;
  const tt_frame* request = c->request;
  if (request->payload_bytes != 4)
    return fail(c, TT_WIRE_BAD_REQUEST,
                "SAVE takes u8 guard, u8 0, u16 max_drop (4 bytes), got %u",
                request->payload_bytes);
  if (!l->has_store)
    return fail(c, TT_WIRE_NO_FLASH,
                "this firmware keeps no learned state in flash");
  const uint8_t guard = request->payload[0];
  if ((guard & ~3u) != 0 || request->payload[1] != 0)
    return fail(c, TT_WIRE_BAD_REQUEST,
                "SAVE guard %u: only bits 0 and 1 exist", (uint32_t)guard);
  if (guard != 0 && l->heldout_count == 0)
    return fail(
        c, TT_WIRE_BAD_REQUEST,
        "a guarded SAVE needs held-out samples: send them with HOLDOUT");
  if (l->trainer.steps == l->steps_at_save)
    return fail(c, TT_WIRE_NOTHING_TRAINED,
                "nothing to save: no training step since the %s (state %u)",
                l->store.sequence ? "saved state" : "model's own weights",
                l->store.sequence);
  tt_learner_save_result result;
  memset(&result, 0, sizeof result);
  save_call s = {l, guard,
                 (uint32_t)(request->payload[2] | request->payload[3] << 8),
                 &result, (tt_wire_error)0};
  measure_none(save_once, &s, &result.count, l->config.measure);
  if (s.error == TT_WIRE_FLASH)
    return tt_learner_error_frame(c->buffer, c->capacity, request->sequence,
                                  TT_WIRE_FLASH, l->store.error.message);
  if (s.error != 0) return fail_runtime(c, s.error);
  result.sequence = l->store.sequence;
  writer* w = &c->out;
  put(w, result.outcome, 1);
  put(w, result.reason, 1);
  put(w, 0, 2);
  put(w, result.sequence, 4);
  put(w, result.pages_erased, 4);
  put(w, result.bytes_written, 4);
  put(w, result.heldout_count, 4);
  put(w, result.correct, 4);
  put(w, result.saved_correct, 4);
  put(w, result.loss_bits, 4);
  put(w, result.saved_loss_bits, 4);
  put(w, (uint64_t)result.count, 8);
  return answer(c);
}

/* -- PULL and FACTORY_RESET ------------------------------------------------ */

/* Checks a PULL / PULL_STATE range of `total` bytes; 0 when fine, else
 * the error frame's length. */
static uint32_t check_range(call* c, uint32_t total, uint32_t* offset,
                            uint32_t* length) {
  if (c->request->payload_bytes != 8)
    return fail(c, TT_WIRE_BAD_REQUEST,
                "PULL takes u32 offset, u32 length (8 bytes), got %u",
                c->request->payload_bytes);
  *offset = get_u32(c->request->payload);
  *length = get_u32(c->request->payload + 4);
  if (*offset > total || *length > total - *offset)
    return fail(c, TT_WIRE_BAD_REQUEST,
                "PULL of bytes %u..%u, but there are %u", *offset,
                *offset + *length, total);
  if (*length > c->capacity - TT_FRAME_OVERHEAD)
    return fail(c, TT_WIRE_BAD_REQUEST,
                "PULL of %u bytes; at most %u per frame", *length,
                c->capacity - TT_FRAME_OVERHEAD);
  return 0;
}

/* Appends bytes [offset, offset + length) of `data`, which sits at
 * `position` of the whole being pulled. */
static void copy_range(call* c, const uint8_t* data, uint32_t size,
                       uint32_t position, uint32_t offset, uint32_t length) {
  const uint32_t end = offset + length;
  const uint32_t from = offset > position ? offset - position : 0;
  const uint32_t to = end < position + size ? end - position : size;
  if (from >= to || position >= end) return;
  memcpy(c->out.at + c->out.used, data + from, to - from);
  c->out.used += to - from;
}

static uint32_t handle_pull(call* c) {
  const tt_trainer* t = &c->learner->trainer;
  uint32_t offset, length;
  const uint32_t bad = check_range(c, trained_bytes(t), &offset, &length);
  if (bad) return bad;
  if (t->steps == 0)
    return fail(c, TT_WIRE_NOTHING_TRAINED,
                "nothing trained yet: the parameters are the model's own");
  uint32_t position = 0;
  for (int32_t k = 0, index; (index = tt_trainer_trained_tensor(t, k)) >= 0;
       ++k) {
    const tt_tensor* tensor = &t->interpreter.tensors[index];
    const uint32_t size = (uint32_t)tensor->num_bytes;
    copy_range(c, tt_arena_at(&t->interpreter, tensor->data_offset), size,
               position, offset, length);
    position += size;
  }
  return answer(c);
}

static uint32_t handle_pull_state(call* c) {
  const tt_trainer* t = &c->learner->trainer;
  uint32_t offset, length;
  const uint32_t bad =
      check_range(c, tt_trainer_state_bytes(t), &offset, &length);
  if (bad) return bad;
  uint8_t counters[TT_STATE_COUNTERS_BYTES];
  tt_trainer_state_counters(t, counters);
  uint32_t bytes;
  const uint8_t* block = tt_trainer_learned_block(t, &bytes);
  copy_range(c, counters, sizeof counters, 0, offset, length);
  copy_range(c, block, bytes, sizeof counters, offset, length);
  return answer(c);
}

static uint32_t handle_factory_reset(call* c) {
  tt_learner* l = c->learner;
  if (c->request->payload_bytes != 0)
    return fail(c, TT_WIRE_BAD_REQUEST, "FACTORY_RESET takes no payload");
  tt_save_stats stats = {0, 0};
  if (l->has_store && tt_state_store_erase(&l->store, &stats) != TT_OK)
    return tt_learner_error_frame(c->buffer, c->capacity, c->request->sequence,
                                  TT_WIRE_FLASH, l->store.error.message);
  if (init_trainer(l) != TT_OK) return fail_runtime(c, TT_WIRE_RUNTIME);
  l->steps_at_save = 0;
  l->restored = false;
  l->baseline_known = false;
  put(&c->out, stats.pages_erased, 4);
  return answer(c);
}

uint32_t tt_learner_handle(tt_learner* l, const tt_frame* request,
                           uint8_t* buffer, uint32_t capacity) {
  if (capacity < TT_LEARNER_MIN_BUFFER) return 0;
  call c = {l, buffer, capacity, request, {buffer + TT_FRAME_HEADER_BYTES, 0}};
  const bool empty = request->payload_bytes == 0;
  switch (request->command) {
    case TT_CMD_INFO:
      return empty ? handle_info(&c)
                   : fail(&c, TT_WIRE_BAD_REQUEST, "INFO takes no payload");
    case TT_CMD_TRAIN:
      return handle_train(&c);
    case TT_CMD_PREDICT:
      return handle_predict(&c);
    case TT_CMD_EVALUATE:
      return handle_evaluate(&c);
    case TT_CMD_BEGIN_EPOCH:
      return handle_begin_epoch(&c);
    case TT_CMD_SAVE:
      return handle_save(&c);
    case TT_CMD_PULL:
      return handle_pull(&c);
    case TT_CMD_FACTORY_RESET:
      return handle_factory_reset(&c);
    case TT_CMD_HOLDOUT:
      return handle_holdout(&c);
    case TT_CMD_PULL_STATE:
      return handle_pull_state(&c);
    default:
      return fail(&c, TT_WIRE_UNKNOWN_COMMAND,
                  "unknown command %u; this device knows 1 to 10",
                  (uint32_t)request->command);
  }
}

/* -- the link -----------------------------------------------------------------
 */

void tt_learner_serve_one(tt_learner* l, const tt_link* link, uint8_t* buffer,
                          uint32_t capacity) {
  tt_frame_reader reader;
  tt_frame_reader_init(&reader, buffer, capacity);
  tt_frame_event event = TT_FRAME_MORE;
  while (event == TT_FRAME_MORE) {
    uint8_t byte;
    const bool idle = reader.have == 0 && reader.skipped == 0;
    if (link->read_byte(link->context, &byte,
                        idle ? TT_LINK_FOREVER : link->idle_ms)) {
      event = tt_frame_reader_push(&reader, byte);
    } else {
      event = tt_frame_reader_idle(&reader);
    }
  }
  uint32_t length;
  if (event == TT_FRAME_READY) {
    tt_frame frame;
    tt_frame_reader_frame(&reader, &frame);
    length = tt_learner_handle(l, &frame, buffer, capacity);
  } else {
    uint8_t byte; /* the rest of the broken frame */
    while (link->read_byte(link->context, &byte, link->idle_ms)) {
    }
    tt_error error;
    if (reader.problem == TT_FRAME_OVERSIZED) {
      tt_error_set(&error, TT_ERR_INVALID_ARGUMENT, "%s (%u bytes; at most %u)",
                   tt_frame_problem_text(reader.problem), reader.declared,
                   capacity - TT_FRAME_OVERHEAD);
    } else {
      tt_error_set(&error, TT_ERR_INVALID_ARGUMENT, "%s",
                   tt_frame_problem_text(reader.problem));
    }
    length = tt_learner_error_frame(buffer, capacity,
                                    tt_frame_reader_sequence(&reader),
                                    TT_WIRE_BAD_FRAME, error.message);
  }
  link->write(link->context, buffer, length);
}
