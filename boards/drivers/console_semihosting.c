/* Console over semihosting SYS_WRITE0 (QEMU routes it to its chardev). */
#include "board.h"
#include "semihosting.h"

void board_console_init(void) {}

void board_console_write(const char* text, uint32_t length) {
  char chunk[128]; /* SYS_WRITE0 takes a NUL-terminated string */
  while (length > 0) {
    uint32_t n = length < sizeof(chunk) - 1 ? length : sizeof(chunk) - 1;
    for (uint32_t i = 0; i < n; ++i) chunk[i] = text[i];
    chunk[n] = '\0';
    semihosting_call(SEMIHOSTING_SYS_WRITE0, chunk);
    text += n;
    length -= n;
  }
}
