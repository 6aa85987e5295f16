/* The learner: a device that trains on samples it is sent for its whole
 * life, keeps what it learned in flash, and answers a host over a byte
 * link (UART). It is one client of the trainer (tt_trainer.h) and the
 * state store (tt_state_store.h); a product's own firmware may call those
 * directly instead (sensor -> tt_trainer_step -> tt_state_store_save).
 *
 * Frames are tt_frame.h's. Requests and their responses (code | 0x80),
 * payloads little-endian; a "sample" is: u8 dtype (the TFLite type code
 * of the data: 9 int8, 3 uint8, 0 float32, 7 int16), 3 bytes 0, i32 label
 * (-1 for PREDICT), then the input's bytes.
 *
 *   0x01 INFO          -> tt_learner_info (TT_LEARNER_INFO_BYTES), then
 *                         per plan layer: i32 operator, u8 update kind,
 *                         u8 0, u16 channels trained now
 *   0x02 TRAIN         sample -> u32 loss (float32 bits), u32 steps,
 *                         i64 count (board counter units; -1 unknown)
 *   0x03 PREDICT       sample -> i32 class, then the int8 logits
 *   0x04 EVALUATE      sample -> i32 class, u32 loss bits;
 *                      empty -> the held-out samples: u32 correct,
 *                         u32 count, u32 mean loss bits
 *   0x05 BEGIN_EPOCH   u32 epoch -> u32 epoch
 *   0x06 SAVE          u8 guard (bit 0: held-out accuracy may not drop
 *                         by more than max_drop samples; bit 1: held-out
 *                         loss may not exceed twice the saved state's),
 *                         u8 0, u16 max_drop -> tt_learner_save_result
 *   0x07 PULL          u32 offset, u32 length -> the trained parameter
 *                         bytes [offset, offset + length): every trained
 *                         tensor in plan order (tt_trainer_trained_tensor)
 *   0x08 FACTORY_RESET -> u32 pages erased; the model's own weights again
 *   0x09 HOLDOUT       sample -> u16 held-out count, u16 capacity;
 *                      empty -> clears them (same answer)
 *   0x0A PULL_STATE    u32 offset, u32 length -> bytes of the learned state
 *                         in RAM (tt_trainer_state.h), e.g. for a host to
 *                         mirror the device or keep a backup
 *   0xFF ERROR         u16 tt_wire_error, u16 0, then a message (UTF-8)
 *
 * A request that fails changes nothing. A TRAIN step that diverges
 * answers TT_WIRE_DIVERGED: with an undo buffer (tt_learner_config.undo)
 * the step changed nothing; without one the device goes back to its
 * saved state (or the model's own weights) at once, losing the steps
 * since the save but never training on, or saving, a half-updated model.
 * SAVE rolls back when the state holds a NaN or infinity, or when a
 * guard fails; the answer says so. */
#ifndef TFLM_TRAINING_TT_LEARNER_H_
#define TFLM_TRAINING_TT_LEARNER_H_

#include <stdbool.h>
#include <stdint.h>

#include "learner/tt_frame.h"
#include "learner/tt_state_store.h"
#include "tt_flash.h"
#include "tt_trainer.h"

enum {
  TT_CMD_INFO = 0x01,
  TT_CMD_TRAIN = 0x02,
  TT_CMD_PREDICT = 0x03,
  TT_CMD_EVALUATE = 0x04,
  TT_CMD_BEGIN_EPOCH = 0x05,
  TT_CMD_SAVE = 0x06,
  TT_CMD_PULL = 0x07,
  TT_CMD_FACTORY_RESET = 0x08,
  TT_CMD_HOLDOUT = 0x09,
  TT_CMD_PULL_STATE = 0x0A,
};

typedef enum {
  TT_WIRE_BAD_FRAME = 1, /* tt_frame_problem, in the message */
  TT_WIRE_UNKNOWN_COMMAND = 2,
  TT_WIRE_BAD_REQUEST = 3,     /* a payload of the wrong length */
  TT_WIRE_BAD_SAMPLE = 4,      /* wrong size or dtype for the model */
  TT_WIRE_BAD_LABEL = 5,       /* not a class of the model */
  TT_WIRE_NOTHING_TRAINED = 6, /* PULL / SAVE with nothing to give */
  TT_WIRE_FLASH = 7,           /* the state flash failed; state unchanged */
  TT_WIRE_RUNTIME = 8,         /* the runtime refused (its message) */
  TT_WIRE_HELDOUT_FULL = 9,
  TT_WIRE_DIVERGED = 10,
  TT_WIRE_NO_FLASH = 11, /* this device keeps no state */
} tt_wire_error;

enum { /* tt_learner_save_result.outcome */
       TT_SAVE_SAVED = 0,
       TT_SAVE_ROLLED_BACK = 1,
};

enum { /* tt_learner_save_result.reason */
       TT_SAVE_REASON_NONE = 0,
       TT_SAVE_REASON_ACCURACY = 1, /* held-out accuracy dropped */
       TT_SAVE_REASON_LOSS = 2,     /* held-out loss diverged */
       TT_SAVE_REASON_NOT_FINITE = 4,
};

/* The fixed part of the INFO answer, in wire order (little-endian):
 *   u16 protocol version (TT_FRAME_VERSION), u16 state format
 *   (TT_STATE_FORMAT_VERSION), u32 firmware CRC-32, u32 model CRC-32,
 *   u32 plan CRC-32, u32 arena bytes, u32 arena used, u32 input bytes,
 *   u8 input type (TFLite code), u8 restored (1: the state came from flash
 *   at boot), u16 classes, u32 max request payload, u32 learned-state
 *   bytes, u32 flash per slot (0 without flash), u32 sequence of the
 *   newest saved state (0: none), u32 CRC-32 of the learned state in RAM,
 *   u32 steps, u32 epoch, u32 samples into the batch, u32 steps since the
 *   last save, u16 held-out samples, u16 their capacity, u8 x 2 the slots'
 *   tt_slot_status at boot, u16 plan layers, u32 trained parameter bytes
 *   (what PULL gives), i64 board counter units of the boot restore, u32
 *   bytes the link receives into while the device computes (a host may
 *   send the next frame before the answer when it fits), u32 bytes of the
 *   undo buffer (0: none, a diverged step restores the saved state). */
#define TT_LEARNER_INFO_BYTES 96u

typedef struct {
  uint8_t outcome;
  uint8_t reason;
  uint16_t reserved;
  uint32_t sequence; /* newest saved state afterwards */
  uint32_t pages_erased;
  uint32_t bytes_written;
  uint32_t heldout_count;
  uint32_t correct;       /* held-out, the state trained since the save */
  uint32_t saved_correct; /* held-out, the state saved before */
  uint32_t loss_bits;     /* mean held-out loss (float32 bits), likewise */
  uint32_t saved_loss_bits;
  int64_t count; /* board counter units the save took */
} tt_learner_save_result;

#define TT_LEARNER_SAVE_BYTES 44u

typedef int64_t (*tt_measure_fn)(void (*fn)(void* context), void* context);

typedef struct {
  const uint8_t* model;
  uint32_t model_size;
  const uint8_t* plan;
  uint32_t plan_size;
  uint8_t* arena;
  uint32_t arena_size;
  const tt_flash* flash; /* NULL: nothing persists (SAVE refused) */
  uint8_t* heldout;      /* room for held-out samples; may be NULL */
  uint32_t heldout_bytes;
  uint32_t firmware_crc32; /* reported by INFO */
  tt_measure_fn measure;   /* times TRAIN, SAVE and the restore; may be NULL */
  uint32_t link_rx_buffer; /* reported by INFO (tt_learner_info) */
  /* tt_trainer_set_undo's buffer, at least tt_trainer_undo_bytes(): every
   * step all or nothing. NULL: a diverged step restores the saved state. */
  uint8_t* undo;
  uint32_t undo_bytes;
} tt_learner_config;

typedef struct {
  tt_learner_config config;
  tt_trainer trainer;
  tt_state_store store;
  bool has_store;
  bool restored;
  int64_t restore_count;
  uint8_t boot_slots[2];
  uint32_t model_crc32;
  uint32_t plan_crc32;
  uint32_t input_bytes;
  int32_t input_type;
  uint32_t heldout_count;
  uint32_t heldout_capacity;
  uint32_t steps_at_save; /* trainer steps when last saved or restored */
  bool baseline_known;    /* the saved state's held-out results: */
  uint32_t baseline_correct;
  float baseline_loss;
  tt_error error;
} tt_learner;

/* Loads the model and plan, opens the store and restores its newest
 * state (a state of another model or plan is not loaded: slot_status
 * says so). Errors leave error.message set. */
tt_status tt_learner_init(tt_learner* learner, const tt_learner_config* config);

/* The smallest frame buffer the learner answers with: room for every
 * fixed-size answer (SAVE's is the largest, 60 bytes). */
#define TT_LEARNER_MIN_BUFFER 64u

/* Answers one intact request frame: the response replaces it in
 * `buffer` (capacity bytes, the same the frame was read into, at least
 * TT_LEARNER_MIN_BUFFER). Returns the response frame's length (0, and
 * nothing written, for a smaller buffer). */
uint32_t tt_learner_handle(tt_learner* learner, const tt_frame* request,
                           uint8_t* buffer, uint32_t capacity);

/* An ERROR frame in `buffer` (the message cut to fit); returns its
 * length, 0 when not even an empty message fits. */
uint32_t tt_learner_error_frame(uint8_t* buffer, uint32_t capacity,
                                uint16_t sequence, tt_wire_error code,
                                const char* message);

/* The byte link to the host. read_byte waits at most timeout_ms for a
 * byte (TT_LINK_FOREVER: as long as it takes) and says whether one came. */
#define TT_LINK_FOREVER 0xFFFFFFFFu
typedef struct {
  bool (*read_byte)(void* context, uint8_t* byte, uint32_t timeout_ms);
  void (*write)(void* context, const uint8_t* data, uint32_t size);
  void* context;
  uint32_t idle_ms; /* a frame's bytes come closer together than this */
} tt_link;

/* Receives bytes until a frame (or a broken one, then the rest of it:
 * until the line is quiet for idle_ms) and sends the answer. Returns at
 * once, reading nothing, when capacity < TT_LEARNER_MIN_BUFFER. */
void tt_learner_serve_one(tt_learner* learner, const tt_link* link,
                          uint8_t* buffer, uint32_t capacity);

#endif /* TFLM_TRAINING_TT_LEARNER_H_ */
