/* Setting the error record every failing call fills in, and naming status
 * codes (both defined in tt_records.h). */
#ifndef TFLM_TRAINING_TT_STATUS_H_
#define TFLM_TRAINING_TT_STATUS_H_

#include <stdarg.h>
#include <stdint.h>

#include "tt_records.h"

/* Records code and a message, returns code. The format understands
 * %s, %d (int32_t), %u (uint32_t) and %% only: no libc printf on the MCU. */
tt_status tt_error_set(tt_error* error, tt_status code, const char* format,
                       ...);
tt_status tt_error_vset(tt_error* error, tt_status code, const char* format,
                        va_list args);
const char* tt_status_name(tt_status code);

#define TT_RETURN_IF_ERROR(expr)                \
  do {                                          \
    const tt_status tt_status_ = (expr);        \
    if (tt_status_ != TT_OK) return tt_status_; \
  } while (0)

#endif /* TFLM_TRAINING_TT_STATUS_H_ */
