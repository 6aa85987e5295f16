#include "tt_status.h"

#include <string.h>

typedef struct {
  char* out;
  uint32_t used;
  uint32_t capacity;
} text_sink;

static void sink_char(text_sink* sink, char c) {
  if (sink->used + 1 < sink->capacity) sink->out[sink->used++] = c;
}

static void sink_text(text_sink* sink, const char* text) {
  if (text == NULL) text = "(null)";
  while (*text) sink_char(sink, *text++);
}

static void sink_unsigned(text_sink* sink, uint32_t value) {
  char digits[10];
  int n = 0;
  do {
    digits[n++] = (char)('0' + value % 10u);
    value /= 10u;
  } while (value != 0);
  while (n > 0) sink_char(sink, digits[--n]);
}

static void sink_signed(text_sink* sink, int32_t value) {
  if (value < 0) {
    sink_char(sink, '-');
    sink_unsigned(sink, 0u - (uint32_t)value);
  } else {
    sink_unsigned(sink, (uint32_t)value);
  }
}

tt_status tt_error_vset(tt_error* error, tt_status code, const char* format,
                        va_list args) {
  if (error == NULL) return code;
  text_sink sink = {error->message, 0, TT_ERROR_MESSAGE_SIZE};
  for (const char* p = format; *p; ++p) {
    if (*p != '%' || p[1] == '\0') {
      sink_char(&sink, *p);
      continue;
    }
    ++p;
    switch (*p) {
      case 's':
        sink_text(&sink, va_arg(args, const char*));
        break;
      case 'd':
        sink_signed(&sink, va_arg(args, int32_t));
        break;
      case 'u':
        sink_unsigned(&sink, va_arg(args, uint32_t));
        break;
      default:
        sink_char(&sink, *p);
        break;
    }
  }
  error->message[sink.used] = '\0';
  error->code = code;
  return code;
}

tt_status tt_error_set(tt_error* error, tt_status code, const char* format,
                       ...) {
  va_list args;
  va_start(args, format);
  tt_error_vset(error, code, format, args);
  va_end(args);
  return code;
}

const char* tt_status_name(tt_status code) {
  switch (code) {
    case TT_OK:
      return "ok";
    case TT_ERR_INVALID_ARGUMENT:
      return "invalid argument";
    case TT_ERR_CORRUPT_MODEL:
      return "corrupt model";
    case TT_ERR_UNSUPPORTED:
      return "unsupported";
    case TT_ERR_ARENA_TOO_SMALL:
      return "arena too small";
    case TT_ERR_INPUT_MISMATCH:
      return "input mismatch";
    case TT_ERR_BAD_STATE:
      return "bad state";
    case TT_ERR_BAD_PLAN:
      return "bad plan";
    case TT_ERR_DIVERGED:
      return "diverged";
  }
  return "unknown status";
}
