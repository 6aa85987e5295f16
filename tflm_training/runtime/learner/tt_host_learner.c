/* Host glue for the Python binding (tflm_training/learner.py): a learner
 * whose flash is a tt_flash_ram over the caller's bytes, served over
 * callbacks, with plain arguments so ctypes needs no struct mirrors. */
#include <stddef.h>
#include <string.h>

#include "learner/tt_flash_ram.h"
#include "tt_learner.h"

typedef struct {
  tt_learner learner;
  tt_flash_ram ram;
  tt_flash flash;
  tt_error error;
} tt_host_learner;

uint32_t tt_sizeof_host_learner(void) {
  return (uint32_t)sizeof(tt_host_learner);
}

tt_status tt_host_learner_init(tt_host_learner* h, const uint8_t* model,
                               uint32_t model_size, const uint8_t* plan,
                               uint32_t plan_size, uint8_t* arena,
                               uint32_t arena_size, uint8_t* flash,
                               uint32_t flash_size, uint32_t page_bytes,
                               int64_t cut_at, int32_t worn_page,
                               uint8_t* heldout, uint32_t heldout_bytes,
                               uint32_t firmware_crc32, uint8_t* undo,
                               uint32_t undo_bytes) {
  memset(h, 0, sizeof *h);
  if (flash != NULL) {
    tt_flash_ram_init(&h->ram, flash, flash_size, page_bytes, &h->flash);
    h->ram.cut_at = cut_at;
    h->ram.worn_page = worn_page;
  }
  const tt_learner_config config = {model,
                                    model_size,
                                    plan,
                                    plan_size,
                                    arena,
                                    arena_size,
                                    flash != NULL ? &h->flash : NULL,
                                    heldout,
                                    heldout_bytes,
                                    firmware_crc32,
                                    NULL,
                                    0,
                                    undo,
                                    undo_bytes};
  const tt_status status = tt_learner_init(&h->learner, &config);
  if (status != TT_OK) h->error = h->learner.error;
  return status;
}

const char* tt_host_learner_error(const tt_host_learner* h) {
  return h->error.message;
}

void tt_host_learner_serve_one(tt_host_learner* h,
                               bool (*read_byte)(void*, uint8_t*, uint32_t),
                               void (*write)(void*, const uint8_t*, uint32_t),
                               uint32_t idle_ms, uint8_t* buffer,
                               uint32_t capacity) {
  const tt_link link = {read_byte, write, NULL, idle_ms};
  tt_learner_serve_one(&h->learner, &link, buffer, capacity);
}

int64_t tt_host_learner_flash_events(const tt_host_learner* h) {
  return h->ram.events;
}

bool tt_host_learner_powered_off(const tt_host_learner* h) {
  return h->ram.powered_off;
}
