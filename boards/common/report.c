#include "report.h"

#include <stdbool.h>

#include "board.h"

#define LINE_PREFIX "TT "

static char line[256];
static uint32_t used;
static bool first_item; /* no comma before the next member or element */

static void flush(void) {
  if (used > 0) board_console_write(line, used);
  used = 0;
}

static void put_char(char c) {
  if (used == sizeof(line)) flush();
  line[used++] = c;
}

static void put_text(const char* text) {
  while (*text) put_char(*text++);
}

/* *value / 10, returning the remainder: long division on 16-bit digits
 * with 32-bit divisions (no 64-bit division routine in the image). */
static uint32_t divide_by_ten(uint64_t* value) {
  uint64_t quotient = 0;
  uint32_t remainder = 0;
  for (int shift = 48; shift >= 0; shift -= 16) {
    const uint32_t part =
        (remainder << 16) | (uint32_t)((*value >> shift) & 0xFFFFu);
    quotient |= (uint64_t)(part / 10u) << shift;
    remainder = part % 10u;
  }
  *value = quotient;
  return remainder;
}

static void put_u64(uint64_t value) {
  char digits[20];
  int n = 0;
  do {
    digits[n++] = (char)('0' + (int)divide_by_ten(&value));
  } while (value != 0);
  while (n > 0) put_char(digits[--n]);
}

static void put_i64(int64_t value) {
  if (value < 0) {
    put_char('-');
    put_u64((uint64_t)0 - (uint64_t)value);
  } else {
    put_u64((uint64_t)value);
  }
}

static const char hex_digits[] = "0123456789abcdef";

static void put_quoted(const char* text, uint32_t length) {
  put_char('"');
  for (uint32_t i = 0; i < length; ++i) {
    const unsigned char c = (unsigned char)text[i];
    if (c == '"' || c == '\\') {
      put_char('\\');
      put_char((char)c);
    } else if (c < 0x20 || c >= 0x7F) {
      /* Non-ASCII bytes are escaped one by one, keeping lines pure ASCII. */
      put_text("\\u00");
      put_char(hex_digits[c >> 4]);
      put_char(hex_digits[c & 0xF]);
    } else {
      put_char((char)c);
    }
  }
  put_char('"');
}

static void put_separator(void) {
  if (!first_item) put_char(',');
  first_item = false;
}

static void put_key(const char* key) {
  put_separator();
  put_char('"');
  put_text(key);
  put_text("\":");
}

void report_begin(const char* event) {
  used = 0;
  put_text(LINE_PREFIX "{\"event\":\"");
  put_text(event);
  put_char('"');
  first_item = false;
}

void report_u32(const char* key, uint32_t value) {
  put_key(key);
  put_u64(value);
}

void report_i32(const char* key, int32_t value) {
  put_key(key);
  put_i64(value);
}

void report_i64(const char* key, int64_t value) {
  put_key(key);
  put_i64(value);
}

void report_null(const char* key) {
  put_key(key);
  put_text("null");
}

void report_string(const char* key, const char* value) {
  uint32_t length = 0;
  while (value[length]) length++;
  report_string_n(key, value, length);
}

void report_string_n(const char* key, const char* value, uint32_t length) {
  put_key(key);
  put_quoted(value, length);
}

void report_hex(const char* key, const uint8_t* data, uint32_t size) {
  put_key(key);
  put_char('"');
  for (uint32_t i = 0; i < size; ++i) {
    put_char(hex_digits[data[i] >> 4]);
    put_char(hex_digits[data[i] & 0xF]);
  }
  put_char('"');
}

void report_array_begin(const char* key) {
  put_key(key);
  put_char('[');
  first_item = true;
}

void report_array_i32(int32_t value) {
  put_separator();
  put_i64(value);
}

void report_array_u32(uint32_t value) {
  put_separator();
  put_u64(value);
}

void report_array_end(void) {
  put_char(']');
  first_item = false;
}

void report_end(void) {
  put_text("}\n");
  flush();
}

void report_exit(int status) {
  report_begin("exit");
  report_i32("status", status);
  report_end();
  board_exit(status);
}
