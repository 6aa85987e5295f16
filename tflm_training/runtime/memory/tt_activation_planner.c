#include "memory/tt_activation_planner.h"

#include "memory/tt_arena.h"
#include "memory/tt_buffer_planner.h"
#include "model/tt_types.h"

static tt_status graph_error(tt_interpreter* it, const char* format, int32_t a,
                             int32_t b) {
  return tt_error_set(&it->error, TT_ERR_CORRUPT_MODEL, format, a, b);
}

static const int32_t* index_list(const tt_interpreter* it, int32_t offset) {
  return (const int32_t*)tt_arena_at(it, offset);
}

tt_status tt_plan_lifetimes(tt_interpreter* it) {
  const int32_t* inputs = index_list(it, it->inputs_offset);
  for (int32_t i = 0; i < it->num_inputs; ++i) {
    tt_tensor* t = &it->tensors[inputs[i]];
    if (t->location == TT_DATA_MODEL)
      return graph_error(it,
                         "corrupt model: graph input %d (tensor %d) is a "
                         "constant",
                         i, inputs[i]);
    t->first_op = 0;
    t->last_op = 0;
  }
  for (int32_t n = 0; n < it->num_nodes; ++n) {
    const tt_node* node = &it->nodes[n];
    const int32_t* in = index_list(it, node->inputs_offset);
    for (int32_t i = 0; i < node->num_inputs; ++i) {
      if (in[i] < 0) continue;
      tt_tensor* t = &it->tensors[in[i]];
      if (t->location == TT_DATA_MODEL) continue;
      if (t->first_op < 0)
        return graph_error(it,
                           "corrupt model: operator %d reads tensor %d "
                           "before any operator writes it",
                           n, in[i]);
      t->last_op = n;
    }
    const int32_t* out = index_list(it, node->outputs_offset);
    for (int32_t i = 0; i < node->num_outputs; ++i) {
      tt_tensor* t = &it->tensors[out[i]];
      if (t->location == TT_DATA_MODEL || t->first_op >= 0)
        return graph_error(it,
                           "corrupt model: operator %d writes tensor %d, "
                           "which is constant or already written",
                           n, out[i]);
      t->first_op = n;
      t->last_op = n;
    }
  }
  const int32_t* outputs = index_list(it, it->outputs_offset);
  const int32_t end = it->num_nodes > 0 ? it->num_nodes - 1 : 0;
  for (int32_t i = 0; i < it->num_outputs; ++i) {
    tt_tensor* t = &it->tensors[outputs[i]];
    if (t->location == TT_DATA_MODEL) continue;
    if (t->first_op < 0)
      return graph_error(it,
                         "corrupt model: graph output %d (tensor %d) is "
                         "never written",
                         i, outputs[i]);
    t->last_op = end;
  }
  for (int32_t i = 0; i < it->num_tensors; ++i) {
    tt_tensor* t = &it->tensors[i];
    if (t->location == TT_DATA_MODEL || t->first_op < 0) continue;
    if (tt_type_size(t->type) == 0)
      return tt_error_set(&it->error, TT_ERR_UNSUPPORTED,
                          "tensor %d has type %s, which the runtime cannot "
                          "hold",
                          i, tt_type_name(t->type));
    t->location = TT_DATA_ARENA;
  }
  return TT_OK;
}

tt_status tt_plan_activations(tt_interpreter* it, bool preserve_all_tensors) {
  int32_t count = 0;
  for (int32_t i = 0; i < it->num_tensors; ++i)
    if (it->tensors[i].location == TT_DATA_ARENA) ++count;

  /* The planner's working lists live where the activations will go, so
   * they cost no persistent bytes; the region is at least their size. */
  const uint32_t start = tt_align_up(it->persistent_used, TT_ARENA_ALIGNMENT);
  const uint64_t scratch =
      (uint64_t)count * sizeof(tt_plan_buffer) + tt_plan_order_bytes(count);
  if (start > it->arena_size || scratch > it->arena_size - start)
    return tt_error_set(&it->error, TT_ERR_ARENA_TOO_SMALL,
                        "arena of %u bytes is too small: the model needs "
                        "more than %u bytes",
                        it->arena_size, (uint32_t)(start + scratch));
  tt_plan_buffer* buffers = (tt_plan_buffer*)(it->arena + start);
  int32_t* order = (int32_t*)(buffers + count);
  for (int32_t i = 0, b = 0; i < it->num_tensors; ++i) {
    const tt_tensor* t = &it->tensors[i];
    if (t->location != TT_DATA_ARENA) continue;
    buffers[b].size = t->num_bytes;
    buffers[b].first = t->first_op;
    buffers[b].last = t->last_op;
    ++b;
  }
  const uint64_t planned =
      tt_plan_buffers(buffers, count, order, preserve_all_tensors);
  const uint64_t region = planned > scratch ? planned : scratch;
  if (planned == UINT64_MAX || start + region > it->arena_size)
    return tt_error_set(
        &it->error, TT_ERR_ARENA_TOO_SMALL,
        "arena of %u bytes is too small: the model needs %u "
        "bytes (%u for tables, %u for activations)",
        it->arena_size,
        (uint32_t)(planned == UINT64_MAX ? 0xffffffffu : start + region), start,
        (uint32_t)region);
  for (int32_t i = 0, b = 0; i < it->num_tensors; ++i) {
    tt_tensor* t = &it->tensors[i];
    if (t->location != TT_DATA_ARENA) continue;
    t->data_offset = (int32_t)start + buffers[b].offset;
    t->intact_after_invoke = tt_plan_buffer_survives(buffers, count, b);
    ++b;
  }
  it->activations_offset = start;
  it->activations_size = (uint32_t)region;
  return TT_OK;
}
