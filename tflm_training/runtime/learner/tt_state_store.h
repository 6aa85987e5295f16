/* Learned state in flash, safe against power loss at any instant.
 *
 * The region (tt_flash.h) holds two slots of whole pages. A slot is a
 * 32-byte header then the payload (tt_trainer_state.h), little-endian:
 *
 *   offset  field
 *        0  magic           "TTLS"
 *        4  version         uint16 TT_STATE_FORMAT_VERSION
 *        6  header_bytes    uint16 32
 *        8  model_crc32     CRC-32 of the .tflite the state belongs to
 *       12  plan_crc32      CRC-32 of the plan (its bytes, as tt_crc32)
 *       16  sequence        uint32, 1 for the first save, +1 for each
 *                           (after 0xFFFFFFFF comes 1; the newer of two
 *                           slots is found counting around the wrap)
 *       20  payload_bytes   uint32
 *       24  payload_crc32   CRC-32 of the payload
 *       28  header_crc32    CRC-32 of header bytes [0, 28)
 *
 * A save writes the slot that does NOT hold the newest state: it erases
 * the slot's pages, programs the payload, reads it back, and programs the
 * header last (its CRC word the very last), so until that word is whole
 * the slot is invalid and the previous state stays the newest. At open,
 * the valid slot (header and payload CRCs right, this model's and plan's
 * CRCs, the expected length) with the highest sequence is the state; a
 * torn erase or write only ever makes a slot invalid. */
#ifndef TFLM_TRAINING_TT_STATE_STORE_H_
#define TFLM_TRAINING_TT_STATE_STORE_H_

#include <stdbool.h>
#include <stdint.h>

#include "tt_flash.h"
#include "tt_status.h"

#define TT_STATE_HEADER_BYTES 32u
#define TT_STATE_SLOTS 2

/* Why a slot holds no state this model can load. */
typedef enum {
  TT_SLOT_VALID = 0,
  TT_SLOT_EMPTY,        /* erased (or never written) */
  TT_SLOT_CORRUPT,      /* a header or payload CRC does not match: an
                           interrupted save, or damaged flash */
  TT_SLOT_OTHER_MODEL,  /* a whole state, for another model or plan */
  TT_SLOT_OTHER_FORMAT, /* a whole state of another format or size */
} tt_slot_status;

typedef struct {
  uint32_t pages_erased;
  uint32_t bytes_written; /* header + payload */
} tt_save_stats;

/* A piece of the payload to save (they are concatenated). */
typedef struct {
  const uint8_t* data;
  uint32_t size;
} tt_state_piece;

typedef struct {
  tt_flash flash;
  uint32_t model_crc32;
  uint32_t plan_crc32;
  uint32_t payload_bytes;
  uint32_t slot_bytes;
  int32_t newest;    /* slot of the newest valid state; -1 when none */
  uint32_t sequence; /* its sequence; 0 when none */
  tt_slot_status slots[TT_STATE_SLOTS];
  int32_t staged; /* slot of a staged, uncommitted state; -1 */
  uint32_t staged_crc32;
  tt_error error;
} tt_state_store;

/* Bytes of flash one slot takes for a payload: header and payload,
 * rounded up to whole pages. Two of them are the region's minimum. */
uint32_t tt_state_slot_bytes(uint32_t payload_bytes, uint32_t page_bytes);

/* Checks the region holds two slots and finds the newest valid state. */
tt_status tt_state_store_open(tt_state_store* store, const tt_flash* flash,
                              uint32_t model_crc32, uint32_t plan_crc32,
                              uint32_t payload_bytes);

/* The newest valid payload (memory-mapped flash), or NULL when none. */
const uint8_t* tt_state_store_newest(const tt_state_store* store);

/* Saves the concatenated pieces (payload_bytes in all) as the next
 * sequence. On success they are the newest state; on any error the
 * previous newest state still is, and store->error says what failed. */
tt_status tt_state_store_save(tt_state_store* store,
                              const tt_state_piece* pieces, int32_t count,
                              tt_save_stats* stats);

/* A save in two halves, so a caller can look at the new state before it
 * counts: stage erases the slot a save would write and programs the
 * payload (readable at tt_state_store_staged()); commit programs its
 * header. Until commit, the newest state is unchanged. */
tt_status tt_state_store_stage(tt_state_store* store,
                               const tt_state_piece* pieces, int32_t count,
                               tt_save_stats* stats);
const uint8_t* tt_state_store_staged(const tt_state_store* store);
tt_status tt_state_store_commit(tt_state_store* store, tt_save_stats* stats);

/* Erases both slots, the older first, so a cut leaves either the newest
 * state or none: the model's own weights come back at the next boot. */
tt_status tt_state_store_erase(tt_state_store* store, tt_save_stats* stats);

#endif /* TFLM_TRAINING_TT_STATE_STORE_H_ */
