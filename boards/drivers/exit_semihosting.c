/* SYS_EXIT_EXTENDED: QEMU exits with `status` (0-255) as its exit code;
 * plain SYS_EXIT could only say success or failure. */
#include "board.h"
#include "semihosting.h"

void board_exit(int status) {
  const uint32_t block[2] = {SEMIHOSTING_ADP_STOPPED_APPLICATION_EXIT,
                             (uint32_t)status};
  semihosting_call(SEMIHOSTING_SYS_EXIT_EXTENDED, block);
  for (;;) {
  }
}
