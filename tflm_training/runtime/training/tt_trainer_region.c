/* The training region: one greedy plan (tt_buffer_planner.h) over the
 * activations, with lifetimes extended to their backward use, the float
 * gradients, the clamp masks and the backward scratch, on the timeline of
 * tt_trainer.h (forward step n = n, loss = N, backward of n = 2N - n). */
#include <stddef.h>

#include "memory/tt_buffer_planner.h"
#include "training/tt_trainer_internal.h"

/* The last step tensor t's int8 values are read: forward, by the loss, or
 * by the backward pass of an operator that saves it. */
static int32_t keep_until(const tt_trainer* t, int32_t tensor) {
  const tt_interpreter* it = &t->interpreter;
  const tt_train_node* nodes = tt_train_nodes(t);
  const int32_t steps = 2 * it->num_nodes;
  int32_t last = it->tensors[tensor].last_op;
  if (tensor == t->logits_tensor && last < it->num_nodes) last = it->num_nodes;
  for (int32_t n = t->first_backward_node; n <= t->loss_node; ++n) {
    if (!(nodes[n].flags & TT_TRAIN_VISITED)) continue;
    const tt_node* node = &it->nodes[n];
    for (int32_t i = 0; i < node->num_inputs && i < 32; ++i)
      if ((nodes[n].saved_inputs >> i & 1u) &&
          tt_train_input(it, node, i) == tensor && steps - n > last)
        last = steps - n;
  }
  return last;
}

static bool is_activation(const tt_trainer* t, int32_t tensor) {
  return t->interpreter.tensors[tensor].location == TT_DATA_ARENA &&
         !(tt_train_tensors(t)[tensor].flags & TT_TRAIN_PARAM_COPY);
}

/* Gradients shared in place: tensor i's gradient lives in the output
 * gradient of its writer when that writer works in place; a chain of them
 * is one buffer, named after the tensor nearest the logits. */
static bool shares_writer_grad(const tt_trainer* t, int32_t i) {
  const tt_interpreter* it = &t->interpreter;
  const int32_t writer = tt_train_tensors(t)[i].grad_writer;
  return writer >= 0 && writer < it->num_nodes &&
         (tt_train_nodes(t)[writer].flags & TT_TRAIN_IN_PLACE) &&
         tt_train_input(it, &it->nodes[writer], 0) == i;
}

/* The tensor whose gradient takes tensor i's place (its producer's input
 * 0), or -1. */
static int32_t next_sharing(const tt_trainer* t, int32_t i) {
  const tt_interpreter* it = &t->interpreter;
  const int32_t producer = tt_train_tensors(t)[i].producer;
  if (producer < 0 || !(tt_train_nodes(t)[producer].flags & TT_TRAIN_IN_PLACE))
    return -1;
  return tt_train_input(it, &it->nodes[producer], 0);
}

/* One buffer: fills it, or (assign) hands its offset to where it belongs. */
typedef struct {
  tt_plan_buffer* buffers; /* NULL: only count */
  int32_t count;
  bool assign;
  bool in_place;  /* gradients share buffers (TT_TRAIN_IN_PLACE) */
  uint32_t start; /* arena offset of the region */
} walk;

static bool add(walk* w, uint64_t size, int32_t first, int32_t last,
                int32_t* offset) {
  if (size > 0x7fffffffu) return false;
  if (w->buffers != NULL) {
    tt_plan_buffer* b = &w->buffers[w->count];
    if (w->assign) {
      *offset = (int32_t)w->start + b->offset;
    } else {
      b->size = (int32_t)size;
      b->first = first;
      b->last = last;
    }
  }
  ++w->count;
  return true;
}

/* The gradient buffer of tensor i and, in place, of the tensors sharing
 * it: as large as the largest, live from i's writer to the last one's
 * producer. */
static bool add_gradient(tt_trainer* t, walk* w, int32_t i) {
  tt_interpreter* it = &t->interpreter;
  tt_train_tensor* tensors = tt_train_tensors(t);
  uint64_t size = (uint64_t)it->tensors[i].num_elements * sizeof(tt_grad);
  int32_t last = i;
  for (int32_t j = w->in_place ? next_sharing(t, i) : -1; j >= 0;
       j = next_sharing(t, j)) {
    const uint64_t bytes =
        (uint64_t)it->tensors[j].num_elements * sizeof(tt_grad);
    if (bytes > size) size = bytes;
    last = j;
  }
  const int32_t steps = 2 * it->num_nodes;
  if (!add(w, size, steps - tensors[i].grad_writer,
           steps - tensors[last].producer, &tensors[i].grad_offset))
    return false;
  for (int32_t j = w->in_place ? next_sharing(t, i) : -1; j >= 0;
       j = next_sharing(t, j))
    tensors[j].grad_offset = tensors[i].grad_offset;
  return true;
}

/* Every buffer in a fixed order: activations (by tensor), gradients (by
 * tensor), masks and scratch (by operator). Returns the number of
 * activations, or -1 when a buffer is over 2 GB. */
static int32_t walk_buffers(tt_trainer* t, walk* w) {
  tt_interpreter* it = &t->interpreter;
  tt_train_tensor* tensors = tt_train_tensors(t);
  tt_train_node* nodes = tt_train_nodes(t);
  const int32_t steps = 2 * it->num_nodes;
  bool ok = true;
  for (int32_t i = 0; i < it->num_tensors; ++i) {
    if (!is_activation(t, i)) continue;
    tt_tensor* tensor = &it->tensors[i];
    ok &= add(w, (uint64_t)tensor->num_bytes, tensor->first_op,
              keep_until(t, i), &tensor->data_offset);
  }
  const int32_t activations = w->count;
  for (int32_t i = 0; i < it->num_tensors; ++i) {
    if (!(tensors[i].flags & TT_TRAIN_HAS_GRAD)) continue;
    if (w->in_place && shares_writer_grad(t, i)) continue;
    ok &= add_gradient(t, w, i);
  }
  for (int32_t n = 0; n < it->num_nodes; ++n) {
    if (!(nodes[n].flags & TT_TRAIN_MASKED)) continue;
    const tt_tensor* out = tt_node_output(it, &it->nodes[n], 0);
    ok &= add(w, ((uint64_t)out->num_elements + 7) / 8, n, steps - n,
              &nodes[n].mask_offset);
  }
  for (int32_t n = 0; n < it->num_nodes; ++n) {
    /* In-place scratch exists only when the gradients share. */
    if (nodes[n].scratch_bytes == 0 ||
        ((nodes[n].flags & TT_TRAIN_IN_PLACE) && !w->in_place))
      continue;
    ok &= add(w, nodes[n].scratch_bytes, steps - n, steps - n,
              &nodes[n].scratch_offset);
  }
  return ok ? activations : -1;
}

static tt_status too_small(tt_interpreter* it, uint32_t start,
                           uint32_t region) {
  return tt_error_set(&it->error, TT_ERR_ARENA_TOO_SMALL,
                      "arena of %u bytes is too small: training needs %u "
                      "bytes (%u before the planned region of %u)",
                      it->arena_size, start + region, start, region);
}

/* Fills and plans the buffers of one layout in the lists at the region's
 * start; returns the region's size (at least the lists'), or UINT64_MAX
 * past 2 GB. */
static uint64_t plan_layout(tt_trainer* t, walk* w, int32_t* activations) {
  w->count = 0;
  w->assign = false;
  *activations = walk_buffers(t, w);
  const uint64_t planned = tt_plan_buffers(
      w->buffers, w->count, (int32_t*)(w->buffers + w->count), false);
  if (planned == UINT64_MAX) return UINT64_MAX;
  const uint64_t lists = (uint64_t)w->count * sizeof(tt_plan_buffer) +
                         tt_plan_order_bytes(w->count);
  return planned > lists ? planned : lists;
}

static bool any_in_place(const tt_trainer* t) {
  for (int32_t n = 0; n < t->interpreter.num_nodes; ++n)
    if (tt_train_nodes(t)[n].flags & TT_TRAIN_IN_PLACE) return true;
  return false;
}

tt_status tt_train_plan_region(tt_trainer* t) {
  tt_interpreter* it = &t->interpreter;
  walk counter = {NULL, 0, false, false, 0};
  if (walk_buffers(t, &counter) < 0)
    return tt_error_set(&it->error, TT_ERR_UNSUPPORTED,
                        "a gradient of the training plan would be over 2 GB");
  /* Sharing only removes buffers: the separate layout has the most. */
  const int32_t count = counter.count;
  /* The planner's lists sit where the region will be, as in inference. */
  const uint32_t start = tt_align_up(it->persistent_used, TT_ARENA_ALIGNMENT);
  const uint64_t lists =
      (uint64_t)count * sizeof(tt_plan_buffer) + tt_plan_order_bytes(count);
  if (start > it->arena_size || lists > it->arena_size - start)
    return tt_error_set(&it->error, TT_ERR_ARENA_TOO_SMALL,
                        "arena of %u bytes is too small: training needs more "
                        "than %u bytes",
                        it->arena_size, (uint32_t)(start + lists));
  walk w = {(tt_plan_buffer*)(it->arena + start), 0, false, false, start};
  int32_t activations;
  uint64_t region = plan_layout(t, &w, &activations);
  /* Gradients share in place only where that makes the region smaller. */
  if (any_in_place(t)) {
    w.in_place = true;
    const uint64_t shared = plan_layout(t, &w, &activations);
    if (shared < region) {
      region = shared;
    } else {
      /* Their only scratch was the in-place one. */
      tt_train_node* nodes = tt_train_nodes(t);
      for (int32_t n = 0; n < it->num_nodes; ++n) {
        if (!(nodes[n].flags & TT_TRAIN_IN_PLACE)) continue;
        nodes[n].flags &= ~TT_TRAIN_IN_PLACE;
        nodes[n].scratch_bytes = 0;
      }
      w.in_place = false;
      region = plan_layout(t, &w, &activations);
    }
  }
  if (region == UINT64_MAX)
    return tt_error_set(&it->error, TT_ERR_UNSUPPORTED,
                        "the training region would be over 2 GB");
  /* It held the separate layout's lists while planning. */
  if (region < lists) region = lists;
  if (start + region > it->arena_size)
    return too_small(it, start, (uint32_t)region);
  /* Survival after a forward-only run: only activations can overwrite. */
  int32_t a = 0;
  for (int32_t i = 0; i < it->num_tensors; ++i)
    if (is_activation(t, i))
      it->tensors[i].intact_after_invoke =
          tt_plan_buffer_survives(w.buffers, activations, a++);
  w.count = 0;
  w.assign = true;
  walk_buffers(t, &w);
  it->activations_offset = start;
  it->activations_size = (uint32_t)region;
  return TT_OK;
}
