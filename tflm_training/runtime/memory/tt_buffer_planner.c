#include "memory/tt_buffer_planner.h"

#include "memory/tt_arena.h"

static uint64_t padded(const tt_plan_buffer* b) {
  return tt_align_up((uint32_t)b->size, TT_ARENA_ALIGNMENT);
}

static bool lifetimes_overlap(const tt_plan_buffer* a,
                              const tt_plan_buffer* b) {
  return a->first <= b->last && b->first <= a->last;
}

static bool bytes_overlap(const tt_plan_buffer* a, const tt_plan_buffer* b) {
  return (uint64_t)a->offset < (uint64_t)b->offset + padded(b) &&
         (uint64_t)b->offset < (uint64_t)a->offset + padded(a);
}

uint32_t tt_plan_order_bytes(int32_t count) { return (uint32_t)count * 4u; }

/* The unplaced buffer (offset < 0) to place next. */
static int32_t next_to_place(const tt_plan_buffer* buffers, int32_t count) {
  int32_t best = -1;
  for (int32_t i = 0; i < count; ++i) {
    const tt_plan_buffer* b = &buffers[i];
    if (b->offset >= 0) continue;
    if (best < 0 || b->size > buffers[best].size ||
        (b->size == buffers[best].size && b->first < buffers[best].first))
      best = i;
  }
  return best;
}

/* Lowest offset where `b` fits among the placed buffers, which `order`
 * lists in increasing offset order. */
static uint64_t lowest_free_offset(const tt_plan_buffer* buffers,
                                   const tt_plan_buffer* b,
                                   const int32_t* order, int32_t num_placed) {
  uint64_t candidate = 0;
  for (int32_t j = 0; j < num_placed; ++j) {
    const tt_plan_buffer* p = &buffers[order[j]];
    if (!lifetimes_overlap(p, b)) continue;
    if ((uint64_t)p->offset >= candidate + padded(b)) break;
    const uint64_t end = (uint64_t)p->offset + padded(p);
    if (end > candidate) candidate = end;
  }
  return candidate;
}

static void insert_by_offset(const tt_plan_buffer* buffers, int32_t* order,
                             int32_t num_placed, int32_t index) {
  int32_t j = num_placed;
  while (j > 0 && buffers[order[j - 1]].offset > buffers[index].offset) {
    order[j] = order[j - 1];
    --j;
  }
  order[j] = index;
}

uint64_t tt_plan_buffers(tt_plan_buffer* buffers, int32_t count, int32_t* order,
                         bool sequential) {
  for (int32_t i = 0; i < count; ++i) buffers[i].offset = -1;
  uint64_t region = 0;
  for (int32_t n = 0; n < count; ++n) {
    const int32_t index = sequential ? n : next_to_place(buffers, count);
    tt_plan_buffer* b = &buffers[index];
    const uint64_t offset =
        sequential ? region : lowest_free_offset(buffers, b, order, n);
    if (offset + padded(b) > 0x7fffffffu) return UINT64_MAX;
    b->offset = (int32_t)offset;
    insert_by_offset(buffers, order, n, index);
    if (offset + padded(b) > region) region = offset + padded(b);
  }
  return region;
}

bool tt_plan_buffer_survives(const tt_plan_buffer* buffers, int32_t count,
                             int32_t index) {
  const tt_plan_buffer* a = &buffers[index];
  if (padded(a) == 0) return true;
  for (int32_t i = 0; i < count; ++i) {
    const tt_plan_buffer* b = &buffers[i];
    if (i != index && padded(b) != 0 && b->first > a->last &&
        bytes_overlap(a, b))
      return false;
  }
  return true;
}
