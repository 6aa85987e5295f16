#include "memory/tt_arena.h"

#include <string.h>

tt_status tt_arena_alloc_persistent(tt_interpreter* interpreter,
                                    uint64_t num_bytes, const char* what,
                                    int32_t* offset) {
  const uint32_t start =
      tt_align_up(interpreter->persistent_used, TT_PERSISTENT_ALIGNMENT);
  if (start > interpreter->arena_size ||
      num_bytes > (uint64_t)(interpreter->arena_size - start)) {
    return tt_error_set(&interpreter->error, TT_ERR_ARENA_TOO_SMALL,
                        "arena of %u bytes is too small: ran out while "
                        "allocating %s",
                        interpreter->arena_size, what);
  }
  memset(interpreter->arena + start, 0, (size_t)num_bytes);
  interpreter->persistent_used = start + (uint32_t)num_bytes;
  *offset = (int32_t)start;
  return TT_OK;
}
