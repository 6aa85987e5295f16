/* Status codes and the error record every failing call fills in. */
#ifndef TFLM_TRAINING_TT_STATUS_H_
#define TFLM_TRAINING_TT_STATUS_H_

#include <stdarg.h>
#include <stdint.h>

typedef enum {
  TT_OK = 0,
  TT_ERR_INVALID_ARGUMENT = 1, /* a caller passed something unusable */
  TT_ERR_CORRUPT_MODEL = 2,    /* the .tflite bytes are malformed */
  TT_ERR_UNSUPPORTED = 3,      /* valid model, but an op/type we do not run */
  TT_ERR_ARENA_TOO_SMALL = 4,  /* the caller's arena cannot hold the plan */
  TT_ERR_INPUT_MISMATCH = 5,   /* input data of the wrong size or type */
  TT_ERR_BAD_STATE = 6,        /* call order violated (e.g. invoke before init) */
  TT_ERR_BAD_PLAN = 7,         /* training plan malformed or not for this model */
  TT_ERR_DIVERGED = 8,         /* training produced NaN / infinity */
} tt_status;

#define TT_ERROR_MESSAGE_SIZE 200

typedef struct {
  tt_status code;
  char message[TT_ERROR_MESSAGE_SIZE];
} tt_error;

/* Records code and a message, returns code. The format understands
 * %s, %d (int32_t), %u (uint32_t) and %% only: no libc printf on the MCU. */
tt_status tt_error_set(tt_error* error, tt_status code, const char* format, ...);
tt_status tt_error_vset(tt_error* error, tt_status code, const char* format,
                        va_list args);
void tt_error_clear(tt_error* error);
const char* tt_status_name(tt_status code);

#define TT_RETURN_IF_ERROR(expr)       \
  do {                                 \
    const tt_status tt_status_ = (expr); \
    if (tt_status_ != TT_OK) return tt_status_; \
  } while (0)

#endif /* TFLM_TRAINING_TT_STATUS_H_ */
