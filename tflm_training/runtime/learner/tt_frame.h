/* The learner's wire format: one request frame from the host, one
 * response frame back (tt_learner.h lists the commands). Little-endian:
 *
 *   offset  field
 *        0  magic           'T' 'L'
 *        2  version         TT_FRAME_VERSION
 *        3  command         request code; a response carries the code | 0x80,
 *                           or TT_FRAME_ERROR
 *        4  sequence        uint16, chosen by the host, echoed back
 *        6  reserved        uint16 0
 *        8  payload_bytes   uint32
 *       12  payload
 *  12 + n  crc32           CRC-32 (as zlib.crc32) of bytes [0, 12 + n)
 *
 * tt_frame_reader takes the bytes one at a time: bytes before a magic are
 * skipped (line noise); a frame whose CRC does not match, whose version
 * is unknown or whose payload would not fit the reader's buffer is BAD as
 * soon as that is known; tt_frame_reader_idle() says the line went quiet,
 * which makes a half-received frame (or noise alone) BAD. */
#ifndef TFLM_TRAINING_TT_FRAME_H_
#define TFLM_TRAINING_TT_FRAME_H_

#include <stdint.h>

#define TT_FRAME_VERSION 1u
#define TT_FRAME_HEADER_BYTES 12u
#define TT_FRAME_OVERHEAD 16u /* header and CRC */
#define TT_FRAME_ERROR 0xFFu

typedef enum {
  TT_FRAME_MORE = 0, /* nothing to act on yet */
  TT_FRAME_READY,    /* a whole, intact frame: tt_frame_reader_frame() */
  TT_FRAME_BAD,      /* a broken frame: reader->problem says how */
} tt_frame_event;

typedef enum {
  TT_FRAME_FINE = 0,
  TT_FRAME_BAD_CRC,
  TT_FRAME_TRUNCATED,
  TT_FRAME_OVERSIZED,
  TT_FRAME_BAD_VERSION,
  TT_FRAME_NOISE,
} tt_frame_problem;

typedef struct {
  uint8_t command;
  uint16_t sequence;
  uint32_t payload_bytes;
  uint8_t* payload; /* inside the reader's buffer */
} tt_frame;

typedef struct {
  uint8_t* buffer;
  uint32_t capacity; /* bytes of the largest whole frame */
  uint32_t have;     /* bytes of the current frame so far */
  uint32_t skipped;  /* noise bytes since the last frame */
  uint32_t declared; /* payload_bytes of a frame too big for the buffer */
  tt_frame_problem problem;
} tt_frame_reader;

void tt_frame_reader_init(tt_frame_reader* reader, uint8_t* buffer,
                          uint32_t capacity);
/* Forgets the frame so far and any problem. */
void tt_frame_reader_reset(tt_frame_reader* reader);
tt_frame_event tt_frame_reader_push(tt_frame_reader* reader, uint8_t byte);
tt_frame_event tt_frame_reader_idle(tt_frame_reader* reader);
/* The frame after TT_FRAME_READY. */
void tt_frame_reader_frame(const tt_frame_reader* reader, tt_frame* frame);
/* The sequence of the frame so far (0 before its header arrived). */
uint16_t tt_frame_reader_sequence(const tt_frame_reader* reader);

/* Completes the frame in buffer[0, TT_FRAME_OVERHEAD + payload_bytes):
 * the payload is already at buffer + TT_FRAME_HEADER_BYTES; writes the
 * header and the CRC. Returns the frame's length. */
uint32_t tt_frame_finish(uint8_t* buffer, uint8_t command, uint16_t sequence,
                         uint32_t payload_bytes);

const char* tt_frame_problem_text(tt_frame_problem problem);

#endif /* TFLM_TRAINING_TT_FRAME_H_ */
