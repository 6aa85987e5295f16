/* Writes the console's event lines: `TT {"event":"<name>",...}\n`, the
 * contract described in boards/README.md. One line is built at a time;
 * a long line is flushed to the console in pieces. */
#ifndef BOARDS_COMMON_REPORT_H_
#define BOARDS_COMMON_REPORT_H_

#include <stdint.h>

void report_begin(const char* event);
void report_u32(const char* key, uint32_t value);
void report_i32(const char* key, int32_t value);
void report_i64(const char* key, int64_t value);
void report_null(const char* key);
void report_string(const char* key, const char* value);
/* A string of known length, which need not be NUL-terminated. */
void report_string_n(const char* key, const char* value, uint32_t length);
/* Bytes as one string of lowercase hex digits, two per byte. */
void report_hex(const char* key, const uint8_t* data, uint32_t size);
void report_array_begin(const char* key);
void report_array_i32(int32_t value);
void report_array_u32(uint32_t value);
void report_array_end(void);
void report_end(void);

/* Reports {"event":"exit","status":N} and ends via board_exit(). */
__attribute__((noreturn)) void report_exit(int status);

#endif /* BOARDS_COMMON_REPORT_H_ */
