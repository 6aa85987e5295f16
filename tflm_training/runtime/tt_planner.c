#include "tt_planner.h"

#include "tt_arena.h"
#include "tt_kernel.h"
#include "tt_model_reader.h"

static tt_status graph_error(tt_interpreter* it, const char* format,
                             int32_t a, int32_t b) {
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
      return graph_error(it, "corrupt model: graph input %d (tensor %d) is a "
                             "constant", i, inputs[i]);
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
        return graph_error(it, "corrupt model: operator %d reads tensor %d "
                               "before any operator writes it", n, in[i]);
      t->last_op = n;
    }
    const int32_t* out = index_list(it, node->outputs_offset);
    for (int32_t i = 0; i < node->num_outputs; ++i) {
      tt_tensor* t = &it->tensors[out[i]];
      if (t->location == TT_DATA_MODEL || t->first_op >= 0)
        return graph_error(it, "corrupt model: operator %d writes tensor %d, "
                               "which is constant or already written", n,
                           out[i]);
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
      return graph_error(it, "corrupt model: graph output %d (tensor %d) is "
                             "never written", i, outputs[i]);
    t->last_op = end;
  }
  for (int32_t i = 0; i < it->num_tensors; ++i) {
    tt_tensor* t = &it->tensors[i];
    if (t->location == TT_DATA_MODEL || t->first_op < 0) continue;
    if (tt_type_size(t->type) == 0)
      return tt_error_set(&it->error, TT_ERR_UNSUPPORTED,
                          "tensor %d has type %s, which the runtime cannot "
                          "hold", i, tt_type_name(t->type));
    t->location = TT_DATA_ARENA;
  }
  return TT_OK;
}

static uint32_t padded_size(const tt_tensor* t) {
  return tt_align_up((uint32_t)t->num_bytes, TT_ARENA_ALIGNMENT);
}

static bool lifetimes_overlap(const tt_tensor* a, const tt_tensor* b) {
  return a->first_op <= b->last_op && b->first_op <= a->last_op;
}

/* The unplaced arena tensor (data_offset < 0) to place next: largest
 * first, then earliest written. */
static int32_t next_to_place(const tt_interpreter* it) {
  int32_t best = -1;
  for (int32_t i = 0; i < it->num_tensors; ++i) {
    const tt_tensor* t = &it->tensors[i];
    if (t->location != TT_DATA_ARENA || t->data_offset >= 0) continue;
    if (best < 0 || t->num_bytes > it->tensors[best].num_bytes ||
        (t->num_bytes == it->tensors[best].num_bytes &&
         t->first_op < it->tensors[best].first_op))
      best = i;
  }
  return best;
}

/* Lowest offset where `t` fits among the already placed tensors, which
 * `placed` lists in increasing offset order. */
static uint64_t lowest_free_offset(const tt_interpreter* it, const tt_tensor* t,
                                   const int32_t* placed, int32_t num_placed) {
  uint64_t candidate = 0;
  for (int32_t j = 0; j < num_placed; ++j) {
    const tt_tensor* p = &it->tensors[placed[j]];
    if (!lifetimes_overlap(p, t)) continue;
    if ((uint64_t)p->data_offset >= candidate + padded_size(t)) break;
    const uint64_t end = (uint64_t)p->data_offset + padded_size(p);
    if (end > candidate) candidate = end;
  }
  return candidate;
}

static void insert_by_offset(const tt_interpreter* it, int32_t* placed,
                             int32_t num_placed, int32_t tensor) {
  int32_t j = num_placed;
  while (j > 0 &&
         it->tensors[placed[j - 1]].data_offset > it->tensors[tensor].data_offset) {
    placed[j] = placed[j - 1];
    --j;
  }
  placed[j] = tensor;
}

/* A tensor's bytes survive invoke() unless a later tensor reuses them. */
static void mark_intact(tt_interpreter* it, const int32_t* placed,
                        int32_t num_placed) {
  for (int32_t i = 0; i < num_placed; ++i)
    it->tensors[placed[i]].intact_after_invoke = 1;
  for (int32_t i = 0; i < num_placed; ++i) {
    tt_tensor* a = &it->tensors[placed[i]];
    const uint64_t a_end = (uint64_t)a->data_offset + padded_size(a);
    for (int32_t j = i + 1; j < num_placed; ++j) {
      tt_tensor* b = &it->tensors[placed[j]];
      if ((uint64_t)b->data_offset >= a_end) break;
      if (padded_size(b) == 0 || padded_size(a) == 0) continue;
      (a->last_op < b->first_op ? a : b)->intact_after_invoke = 0;
    }
  }
}

tt_status tt_plan_activations(tt_interpreter* it, bool preserve_all_tensors) {
  int32_t num_arena = 0;
  for (int32_t i = 0; i < it->num_tensors; ++i) {
    if (it->tensors[i].location != TT_DATA_ARENA) continue;
    it->tensors[i].data_offset = -1;
    ++num_arena;
  }
  int32_t list_offset;
  TT_RETURN_IF_ERROR(tt_arena_alloc_persistent(
      it, (uint64_t)num_arena * 4, "the activation plan", &list_offset));
  int32_t* placed = (int32_t*)tt_arena_at(it, list_offset);

  uint64_t plan_size = 0;
  for (int32_t n = 0; n < num_arena; ++n) {
    const int32_t index = next_to_place(it);
    tt_tensor* t = &it->tensors[index];
    const uint64_t offset =
        preserve_all_tensors ? plan_size
                             : lowest_free_offset(it, t, placed, n);
    if (offset + padded_size(t) > 0x7fffffffu)
      return tt_error_set(&it->error, TT_ERR_ARENA_TOO_SMALL,
                          "the model's activations need more than 2 GB");
    t->data_offset = (int32_t)offset;
    insert_by_offset(it, placed, n, index);
    if (offset + padded_size(t) > plan_size) plan_size = offset + padded_size(t);
  }
  mark_intact(it, placed, num_arena);

  const uint64_t start =
      tt_align_up(it->persistent_used, TT_ARENA_ALIGNMENT);
  if (start + plan_size > it->arena_size)
    return tt_error_set(&it->error, TT_ERR_ARENA_TOO_SMALL,
                        "arena of %u bytes is too small: the model needs %u "
                        "bytes (%u for tables, %u for activations)",
                        it->arena_size, (uint32_t)(start + plan_size),
                        (uint32_t)start, (uint32_t)plan_size);
  it->activations_offset = (uint32_t)start;
  it->activations_size = (uint32_t)plan_size;
  for (int32_t i = 0; i < num_arena; ++i)
    it->tensors[placed[i]].data_offset += (int32_t)start;
  return TT_OK;
}
