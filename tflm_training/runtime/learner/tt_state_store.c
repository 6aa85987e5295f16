#include "learner/tt_state_store.h"

#include <stddef.h>
#include <string.h>

#include "math/tt_crc.h"
#include "training/tt_trainer_state.h"
#include "training/tt_training_plan.h"

#define MAGIC 0x534C5454u /* "TTLS" little-endian */

static uint32_t get_u32(const uint8_t* in) {
  return (uint32_t)in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16 |
         (uint32_t)in[3] << 24;
}

static void put_u32(uint8_t* out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out[i] = (uint8_t)(value >> (8 * i));
}

uint32_t tt_state_slot_bytes(uint32_t payload_bytes, uint32_t page_bytes) {
  const uint64_t bytes = (uint64_t)TT_STATE_HEADER_BYTES + payload_bytes;
  const uint64_t pages = (bytes + page_bytes - 1) / page_bytes;
  return pages * page_bytes > UINT32_MAX ? UINT32_MAX
                                         : (uint32_t)(pages * page_bytes);
}

static const uint8_t* slot_at(const tt_state_store* s, int32_t slot) {
  return s->flash.base + (uint32_t)slot * s->slot_bytes;
}

static tt_slot_status check_slot(const tt_state_store* s, int32_t slot,
                                 uint32_t* sequence) {
  const uint8_t* h = slot_at(s, slot);
  bool blank = true;
  for (uint32_t i = 0; i < TT_STATE_HEADER_BYTES; ++i)
    if (h[i] != 0xFF) blank = false;
  if (blank) return TT_SLOT_EMPTY;
  if (get_u32(h) != MAGIC || tt_crc32(h, 28) != get_u32(h + 28))
    return TT_SLOT_CORRUPT;
  if (get_u32(h + 4) != (TT_STATE_FORMAT_VERSION | TT_STATE_HEADER_BYTES << 16))
    return TT_SLOT_OTHER_FORMAT;
  if (get_u32(h + 8) != s->model_crc32 || get_u32(h + 12) != s->plan_crc32)
    return TT_SLOT_OTHER_MODEL;
  if (get_u32(h + 20) != s->payload_bytes) return TT_SLOT_OTHER_FORMAT;
  if (tt_crc32(h + TT_STATE_HEADER_BYTES, s->payload_bytes) != get_u32(h + 24))
    return TT_SLOT_CORRUPT;
  *sequence = get_u32(h + 16);
  /* Sequences count from 1 and skip 0 when they wrap (next_sequence). */
  return *sequence == 0 ? TT_SLOT_OTHER_FORMAT : TT_SLOT_VALID;
}

/* Whether sequence a comes after b, counting around the wrap (serial
 * number arithmetic): two live slots are never 2^31 saves apart. */
static bool later(uint32_t a, uint32_t b) { return (int32_t)(a - b) > 0; }

static uint32_t next_sequence(uint32_t sequence) {
  return sequence == UINT32_MAX ? 1 : sequence + 1;
}

static void scan(tt_state_store* s) {
  s->newest = -1;
  s->sequence = 0;
  for (int32_t slot = 0; slot < TT_STATE_SLOTS; ++slot) {
    uint32_t sequence = 0;
    s->slots[slot] = check_slot(s, slot, &sequence);
    if (s->slots[slot] == TT_SLOT_VALID &&
        (s->newest < 0 || later(sequence, s->sequence))) {
      s->newest = slot;
      s->sequence = sequence;
    }
  }
}

tt_status tt_state_store_open(tt_state_store* s, const tt_flash* flash,
                              uint32_t model_crc32, uint32_t plan_crc32,
                              uint32_t payload_bytes) {
  if (s == NULL || flash == NULL) return TT_ERR_INVALID_ARGUMENT;
  memset(s, 0, sizeof *s);
  s->flash = *flash;
  s->model_crc32 = model_crc32;
  s->plan_crc32 = plan_crc32;
  s->payload_bytes = payload_bytes;
  s->newest = -1;
  s->staged = -1;
  if (flash->base == NULL || flash->page_bytes < 4 ||
      flash->page_bytes % 4 != 0 || flash->size % flash->page_bytes != 0)
    return tt_error_set(&s->error, TT_ERR_INVALID_ARGUMENT,
                        "the state flash is not a whole number of pages");
  s->slot_bytes = tt_state_slot_bytes(payload_bytes, flash->page_bytes);
  if ((uint64_t)s->slot_bytes * TT_STATE_SLOTS > flash->size)
    return tt_error_set(&s->error, TT_ERR_ARENA_TOO_SMALL,
                        "the state flash has %u bytes but two slots of a "
                        "%u-byte learned state need %u; reserve more flash "
                        "for it",
                        flash->size, payload_bytes, 2 * s->slot_bytes);
  scan(s);
  return TT_OK;
}

const uint8_t* tt_state_store_newest(const tt_state_store* s) {
  if (s == NULL || s->newest < 0) return NULL;
  return slot_at(s, s->newest) + TT_STATE_HEADER_BYTES;
}

static tt_status erase_slot(tt_state_store* s, int32_t slot,
                            tt_save_stats* stats) {
  const uint32_t base = (uint32_t)slot * s->slot_bytes;
  for (uint32_t at = 0; at < s->slot_bytes; at += s->flash.page_bytes) {
    if (s->flash.erase_page(s->flash.context, base + at) != TT_OK)
      return tt_error_set(&s->error, TT_ERR_BAD_STATE,
                          "flash: erasing the page at offset %u of the state "
                          "region failed",
                          base + at);
    stats->pages_erased++;
  }
  /* A worn page may claim success; an erased page reads 0xFF. */
  const uint8_t* bytes = slot_at(s, slot);
  for (uint32_t i = 0; i < s->slot_bytes; ++i)
    if (bytes[i] != 0xFF)
      return tt_error_set(
          &s->error, TT_ERR_BAD_STATE,
          "flash: the page at offset %u did not erase (worn "
          "flash?); the saved state is unchanged",
          base + (i / s->flash.page_bytes) * s->flash.page_bytes);
  return TT_OK;
}

/* Programs words from a byte stream (the pieces), 4 bytes at a time. */
typedef struct {
  tt_state_store* store;
  uint32_t offset; /* next word's flash offset */
  uint8_t word[4];
  uint32_t filled;
  uint32_t crc;
  tt_save_stats* stats;
} word_writer;

static tt_status flush_word(word_writer* w) {
  uint32_t value = 0xFFFFFFFFu;
  memcpy(&value, w->word, w->filled); /* bytes past the end stay 0xFF */
  const tt_state_store* s = w->store;
  if (s->flash.write_word(s->flash.context, w->offset, value) != TT_OK)
    return tt_error_set(&w->store->error, TT_ERR_BAD_STATE,
                        "flash: writing the word at offset %u of the state "
                        "region failed",
                        w->offset);
  w->offset += 4;
  w->filled = 0;
  w->stats->bytes_written += 4;
  return TT_OK;
}

static tt_status write_bytes(word_writer* w, const uint8_t* data,
                             uint32_t size) {
  w->crc = tt_crc32_update(w->crc, data, size);
  for (uint32_t i = 0; i < size; ++i) {
    w->word[w->filled++] = data[i];
    if (w->filled == 4) TT_RETURN_IF_ERROR(flush_word(w));
  }
  return TT_OK;
}

tt_status tt_state_store_stage(tt_state_store* s, const tt_state_piece* pieces,
                               int32_t count, tt_save_stats* stats) {
  tt_save_stats ignored;
  if (stats == NULL) stats = &ignored;
  memset(stats, 0, sizeof *stats);
  if (s == NULL || (pieces == NULL && count > 0) || s->slot_bytes == 0)
    return TT_ERR_INVALID_ARGUMENT;
  s->staged = -1;
  uint64_t total = 0;
  for (int32_t i = 0; i < count; ++i) total += pieces[i].size;
  if (total != s->payload_bytes)
    return tt_error_set(&s->error, TT_ERR_INVALID_ARGUMENT,
                        "a learned state of %u bytes, the store expects %u",
                        (uint32_t)total, s->payload_bytes);
  const int32_t slot = s->newest == 0 ? 1 : 0;
  const uint32_t base = (uint32_t)slot * s->slot_bytes;
  TT_RETURN_IF_ERROR(erase_slot(s, slot, stats));
  word_writer w = {s, base + TT_STATE_HEADER_BYTES, {0}, 0, 0, stats};
  for (int32_t i = 0; i < count; ++i)
    TT_RETURN_IF_ERROR(write_bytes(&w, pieces[i].data, pieces[i].size));
  if (w.filled > 0) TT_RETURN_IF_ERROR(flush_word(&w));
  if (tt_crc32(slot_at(s, slot) + TT_STATE_HEADER_BYTES, s->payload_bytes) !=
      w.crc)
    return tt_error_set(&s->error, TT_ERR_BAD_STATE,
                        "flash: the state read back differs from what was "
                        "written (worn flash?); the saved state is unchanged");
  s->staged = slot;
  s->staged_crc32 = w.crc;
  return TT_OK;
}

const uint8_t* tt_state_store_staged(const tt_state_store* s) {
  if (s == NULL || s->staged < 0) return NULL;
  return slot_at(s, s->staged) + TT_STATE_HEADER_BYTES;
}

tt_status tt_state_store_commit(tt_state_store* s, tt_save_stats* stats) {
  tt_save_stats ignored;
  if (stats == NULL) stats = &ignored;
  memset(stats, 0, sizeof *stats);
  if (s == NULL) return TT_ERR_INVALID_ARGUMENT;
  if (s->staged < 0)
    return tt_error_set(&s->error, TT_ERR_BAD_STATE,
                        "no staged state to commit");
  const int32_t slot = s->staged;
  s->staged = -1;
  uint8_t header[TT_STATE_HEADER_BYTES];
  put_u32(header, MAGIC);
  put_u32(header + 4, TT_STATE_FORMAT_VERSION | TT_STATE_HEADER_BYTES << 16);
  put_u32(header + 8, s->model_crc32);
  put_u32(header + 12, s->plan_crc32);
  put_u32(header + 16, next_sequence(s->sequence));
  put_u32(header + 20, s->payload_bytes);
  put_u32(header + 24, s->staged_crc32);
  put_u32(header + 28, tt_crc32(header, 28));
  word_writer h = {s, (uint32_t)slot * s->slot_bytes, {0}, 0, 0, stats};
  TT_RETURN_IF_ERROR(write_bytes(&h, header, TT_STATE_HEADER_BYTES));
  uint32_t sequence = 0;
  if (check_slot(s, slot, &sequence) != TT_SLOT_VALID)
    return tt_error_set(&s->error, TT_ERR_BAD_STATE,
                        "flash: the saved header does not read back (worn "
                        "flash?); the saved state is unchanged");
  scan(s);
  return TT_OK;
}

tt_status tt_state_store_save(tt_state_store* s, const tt_state_piece* pieces,
                              int32_t count, tt_save_stats* stats) {
  tt_save_stats staged, committed;
  TT_RETURN_IF_ERROR(tt_state_store_stage(s, pieces, count, &staged));
  const tt_status status = tt_state_store_commit(s, &committed);
  if (stats != NULL) {
    stats->pages_erased = staged.pages_erased;
    stats->bytes_written = staged.bytes_written + committed.bytes_written;
  }
  return status;
}

tt_status tt_state_store_erase(tt_state_store* s, tt_save_stats* stats) {
  tt_save_stats ignored;
  if (stats == NULL) stats = &ignored;
  memset(stats, 0, sizeof *stats);
  if (s == NULL || s->slot_bytes == 0) return TT_ERR_INVALID_ARGUMENT;
  const int32_t newest = s->newest < 0 ? 0 : s->newest;
  const int32_t older = newest == 0 ? 1 : 0;
  s->staged = -1;
  tt_status status = erase_slot(s, older, stats);
  if (status == TT_OK) status = erase_slot(s, newest, stats);
  scan(s);
  return status;
}
