#include "learner/tt_frame.h"

#include <stddef.h>

#include "math/tt_crc.h"
#include "training/tt_training_plan.h"

#define MAGIC0 0x54u /* 'T' */
#define MAGIC1 0x4Cu /* 'L' */

static uint32_t get_u32(const uint8_t* in) {
  return (uint32_t)in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16 |
         (uint32_t)in[3] << 24;
}

static void put_u32(uint8_t* out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out[i] = (uint8_t)(value >> (8 * i));
}

void tt_frame_reader_init(tt_frame_reader* r, uint8_t* buffer,
                          uint32_t capacity) {
  r->buffer = buffer;
  r->capacity = capacity;
  tt_frame_reader_reset(r);
}

void tt_frame_reader_reset(tt_frame_reader* r) {
  r->have = 0;
  r->skipped = 0;
  r->declared = 0;
  r->problem = TT_FRAME_FINE;
}

static tt_frame_event bad(tt_frame_reader* r, tt_frame_problem problem) {
  r->problem = problem;
  return TT_FRAME_BAD;
}

tt_frame_event tt_frame_reader_push(tt_frame_reader* r, uint8_t byte) {
  if (r->problem != TT_FRAME_FINE) return TT_FRAME_BAD;
  if (r->have == 0) {
    if (byte == MAGIC0 && r->capacity > 0) {
      r->buffer[r->have++] = byte;
    } else {
      r->skipped++;
    }
    return TT_FRAME_MORE;
  }
  if (r->have == 1 && byte != MAGIC1) {
    r->skipped++; /* the 'T' was noise; this byte may start a frame */
    if (byte != MAGIC0) {
      r->skipped++;
      r->have = 0;
    }
    return TT_FRAME_MORE;
  }
  if (r->have >= r->capacity) return bad(r, TT_FRAME_OVERSIZED);
  r->buffer[r->have++] = byte;
  if (r->have == 3 && byte != TT_FRAME_VERSION)
    return bad(r, TT_FRAME_BAD_VERSION);
  if (r->have < TT_FRAME_HEADER_BYTES) return TT_FRAME_MORE;
  const uint32_t payload = get_u32(r->buffer + 8);
  if (r->have == TT_FRAME_HEADER_BYTES &&
      (r->capacity < TT_FRAME_OVERHEAD ||
       payload > r->capacity - TT_FRAME_OVERHEAD)) {
    r->declared = payload;
    return bad(r, TT_FRAME_OVERSIZED);
  }
  const uint32_t total = TT_FRAME_OVERHEAD + payload;
  if (r->have < total) return TT_FRAME_MORE;
  if (tt_crc32(r->buffer, total - 4) != get_u32(r->buffer + total - 4))
    return bad(r, TT_FRAME_BAD_CRC);
  r->skipped = 0;
  return TT_FRAME_READY;
}

tt_frame_event tt_frame_reader_idle(tt_frame_reader* r) {
  if (r->problem != TT_FRAME_FINE) return TT_FRAME_BAD;
  if (r->have > 0) return bad(r, TT_FRAME_TRUNCATED);
  if (r->skipped > 0) return bad(r, TT_FRAME_NOISE);
  return TT_FRAME_MORE;
}

void tt_frame_reader_frame(const tt_frame_reader* r, tt_frame* frame) {
  frame->command = r->buffer[3];
  frame->sequence = (uint16_t)(r->buffer[4] | r->buffer[5] << 8);
  frame->payload_bytes = get_u32(r->buffer + 8);
  frame->payload = r->buffer + TT_FRAME_HEADER_BYTES;
}

uint16_t tt_frame_reader_sequence(const tt_frame_reader* r) {
  if (r->have < 6) return 0;
  return (uint16_t)(r->buffer[4] | r->buffer[5] << 8);
}

uint32_t tt_frame_finish(uint8_t* buffer, uint8_t command, uint16_t sequence,
                         uint32_t payload_bytes) {
  buffer[0] = MAGIC0;
  buffer[1] = MAGIC1;
  buffer[2] = TT_FRAME_VERSION;
  buffer[3] = command;
  buffer[4] = (uint8_t)sequence;
  buffer[5] = (uint8_t)(sequence >> 8);
  buffer[6] = 0;
  buffer[7] = 0;
  put_u32(buffer + 8, payload_bytes);
  const uint32_t end = TT_FRAME_HEADER_BYTES + payload_bytes;
  put_u32(buffer + end, tt_crc32(buffer, end));
  return end + 4;
}

const char* tt_frame_problem_text(tt_frame_problem problem) {
  switch (problem) {
    case TT_FRAME_FINE:
      return "no problem";
    case TT_FRAME_BAD_CRC:
      return "corrupt frame: its CRC-32 does not match its bytes";
    case TT_FRAME_TRUNCATED:
      return "truncated frame: the line went quiet before its last byte";
    case TT_FRAME_OVERSIZED:
      return "oversized frame: its payload does not fit the device's buffer";
    case TT_FRAME_BAD_VERSION:
      return "frame of an unknown protocol version";
    case TT_FRAME_NOISE:
      return "bytes that are not a frame (no 'TL' start) were ignored";
  }
  return "unknown problem";
}
