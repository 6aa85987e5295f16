/* What every runtime app reports the same way (boards/README.md, "The
 * console contract"): runtime errors, bad embedded data, measured counts,
 * the stack and the RAM peak. tools/firmware_build.py links app_common.c
 * into every app; the linker drops what an app does not call. */
#ifndef BOARDS_APP_APP_COMMON_H_
#define BOARDS_APP_APP_COMMON_H_

#include <stdint.h>

#include "tt_interpreter.h"

/* Reports an "error" event for a failed runtime call; returns the status,
 * which becomes the exit status. */
int app_report_failure(const char* stage, tt_status status,
                       const tt_error* error);

/* Reports an "error" event with stage "embedded_data"; returns
 * EXIT_STATUS_BAD_EMBEDDED_DATA. */
int app_report_bad_data(const char* message);

/* Checks that the model has exactly one input and that `size` embedded
 * bytes are a whole number of samples of it; sets *input_bytes and
 * *count. Returns EXIT_STATUS_OK, or app_report_bad_data()'s status. */
int app_embedded_samples(const tt_interpreter* interpreter, uint32_t size,
                         uint32_t* input_bytes, uint32_t* count);

/* Adds "counter" (the unit) and "count" (null when the counter overflowed)
 * to the event being written. */
void app_report_count(int64_t count);

/* Adds count to *total; a total stays -1 (overflowed) once a part is. */
void app_add_count(int64_t* total, int64_t count);

/* The "stack" event: high-water mark and size. */
void app_report_stack(void);

/* The "ram" event: static RAM (.data + .bss, which hold the arena), the
 * arena's size and use, the stack high-water mark, and their peak sum. */
void app_report_ram(uint32_t arena_size, uint32_t arena_used);

#endif /* BOARDS_APP_APP_COMMON_H_ */
