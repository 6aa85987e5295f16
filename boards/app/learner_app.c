/* The learner firmware: a device that keeps learning after it ships.
 * Only the model, the plan and code are in flash (plus the reserved
 * pages of the learned state); samples arrive over the board's link
 * (tt_learner.h documents the protocol, tools/learn.py is the host side).
 *
 * At boot it restores the newest learned state from flash
 * (tt_state_store.h), or starts from the model's own weights; then it
 * answers frames for ever. APP_ARENA_BYTES, APP_BUFFER_BYTES (the largest
 * frame), APP_HELDOUT_BYTES and APP_UNDO_BYTES (0: no undo buffer, a
 * diverged step restores the saved state) come from the build tool
 * (tools/learner_firmware.py). */
#include <stdint.h>

#include "board.h"
#include "exit_status.h"
#include "kernels/common/tt_kernel.h"
#include "math/tt_crc.h"
#include "training/tt_training_plan.h"
#include "tt_learner.h"

/* learner_app_data.S */
extern const uint8_t app_model_start[], app_model_end[];
extern const uint8_t app_plan_start[], app_plan_end[];
/* boards/common/cortex_m.ld: the flash image (firmware.bin). */
extern const uint8_t __image_start[], __image_end[];

static uint8_t arena[APP_ARENA_BYTES]
    __attribute__((aligned(TT_ARENA_ALIGNMENT)));
/* A sample starts 20 bytes into its frame (header, dtype, label): a frame
 * at 4 mod 8 puts it on an 8-byte boundary, where the trainer copies it
 * into the arena with the fewest instructions (as embedded samples are). */
static uint8_t frame_storage[APP_BUFFER_BYTES + 4] __attribute__((aligned(8)));
static uint8_t* const buffer = frame_storage + 4;
static uint8_t heldout[APP_HELDOUT_BYTES] __attribute__((aligned(4)));
#if APP_UNDO_BYTES > 0
/* Makes every training step all or nothing (tt_trainer_set_undo). */
static uint8_t undo[APP_UNDO_BYTES] __attribute__((aligned(4)));
#define APP_UNDO undo
#else
#define APP_UNDO 0
#endif
static tt_learner learner;
static tt_flash flash;

static bool read_byte(void* context, uint8_t* byte, uint32_t timeout_ms) {
  (void)context;
  return board_link_read_byte(byte, timeout_ms);
}

static void write(void* context, const uint8_t* data, uint32_t size) {
  (void)context;
  board_link_write(data, size);
}

/* Answers every request with the reason the learner could not start. */
static void serve_failure(const tt_link* link) {
  for (;;) {
    tt_frame_reader reader;
    tt_frame_reader_init(&reader, buffer, APP_BUFFER_BYTES);
    uint8_t byte;
    tt_frame_event event = TT_FRAME_MORE;
    while (event == TT_FRAME_MORE)
      event = board_link_read_byte(
                  &byte, reader.have ? link->idle_ms : BOARD_LINK_FOREVER)
                  ? tt_frame_reader_push(&reader, byte)
                  : tt_frame_reader_idle(&reader);
    while (board_link_read_byte(&byte, link->idle_ms)) {
    }
    const uint32_t length = tt_learner_error_frame(
        buffer, APP_BUFFER_BYTES, tt_frame_reader_sequence(&reader),
        TT_WIRE_RUNTIME, learner.error.message);
    board_link_write(buffer, length);
  }
}

int main(void) {
  /* The counter calibrates its own cost first: once the link is up, its
   * receive interrupt may run (the host can send before the device is
   * ready) and would be counted as part of that cost. */
  board_counter_init();
  board_link_init();
  board_flash_open(&flash);
  const tt_learner_config config = {
      app_model_start,
      (uint32_t)(app_model_end - app_model_start),
      app_plan_start,
      (uint32_t)(app_plan_end - app_plan_start),
      arena,
      sizeof arena,
      &flash,
      heldout,
      sizeof heldout,
      tt_crc32(__image_start, (uint32_t)(__image_end - __image_start)),
      board_counter_measure,
      board_link_rx_buffer_bytes(),
      APP_UNDO,
      APP_UNDO_BYTES};
  const tt_link link = {read_byte, write, 0, BOARD_LINK_IDLE_MS};
  if (tt_learner_init(&learner, &config) != TT_OK) serve_failure(&link);
  for (;;) tt_learner_serve_one(&learner, &link, buffer, APP_BUFFER_BYTES);
  return EXIT_STATUS_OK;
}
