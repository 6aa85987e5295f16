/* Bump allocation of the interpreter's persistent records inside the
 * caller's arena. Offsets, not pointers, are what records store. */
#ifndef TFLM_TRAINING_TT_ARENA_H_
#define TFLM_TRAINING_TT_ARENA_H_

#include "tt_records.h"
#include "tt_status.h"

#define TT_PERSISTENT_ALIGNMENT 8

static inline uint32_t tt_align_up(uint32_t value, uint32_t alignment) {
  return (value + alignment - 1u) & ~(alignment - 1u);
}

/* Reserves num_bytes (zero-filled) and returns their arena offset; fails
 * with TT_ERR_ARENA_TOO_SMALL, naming what was being allocated. */
tt_status tt_arena_alloc_persistent(tt_interpreter* interpreter,
                                    uint64_t num_bytes, const char* what,
                                    int32_t* offset);

static inline void* tt_arena_at(const tt_interpreter* interpreter,
                                int32_t offset) {
  return interpreter->arena + offset;
}

#endif /* TFLM_TRAINING_TT_ARENA_H_ */
