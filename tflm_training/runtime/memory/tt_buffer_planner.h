/* Greedy placement of buffers with known lifetimes in one memory region,
 * shared by inference (activation tensors) and training (activations kept
 * for the backward pass, gradients, masks, scratch).
 *
 * Buffers are placed largest first (ties: earlier first step, then lower
 * index) at the lowest offset that no already-placed buffer with an
 * overlapping lifetime occupies. Every buffer starts on a
 * TT_ARENA_ALIGNMENT boundary. The Python cost model mirrors this exactly. */
#ifndef TFLM_TRAINING_TT_BUFFER_PLANNER_H_
#define TFLM_TRAINING_TT_BUFFER_PLANNER_H_

#include <stdbool.h>
#include <stdint.h>

typedef struct {
  int32_t size;   /* bytes */
  int32_t first;  /* first step the buffer is live */
  int32_t last;   /* last step it is live (inclusive) */
  int32_t offset; /* result: from the region's start */
} tt_plan_buffer;

/* Bytes of scratch tt_plan_buffers() needs besides the buffers. */
uint32_t tt_plan_order_bytes(int32_t count);

/* Places every buffer; `order` is scratch of tt_plan_order_bytes(count)
 * bytes (4-byte aligned). With `sequential`, buffers never share bytes (each
 * is placed after the previous one, in index order). Returns the region's
 * size in bytes, or UINT64_MAX when it would exceed 2 GB. */
uint64_t tt_plan_buffers(tt_plan_buffer* buffers, int32_t count, int32_t* order,
                         bool sequential);

/* Whether buffer `index`'s bytes survive to the end: no buffer whose
 * lifetime starts after its own reuses any of them. */
bool tt_plan_buffer_survives(const tt_plan_buffer* buffers, int32_t count,
                             int32_t index);

#endif /* TFLM_TRAINING_TT_BUFFER_PLANNER_H_ */
