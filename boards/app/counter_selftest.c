/* Checks the board's counter against functions of known length: each
 * nops_<k> executes k NOPs and returns, so board_counter_measure() must
 * report exactly k instructions under QEMU -icount (tests/
 * test_firmware_emulation.py). On hardware it shows cycle overheads. */
#include <stdint.h>

#include "board.h"
#include "counter_selftest_nops.h"
#include "report.h"

int main(void) {
  board_console_init();
  board_counter_init();
  for (uint32_t i = 0; i < NUM_NOP_FUNCTIONS; ++i) {
    const int64_t count = board_counter_measure(nop_functions[i].fn, 0);
    report_begin("counter_check");
    report_u32("nops", nop_functions[i].nops);
    report_string("counter", board_counter_unit());
    report_i64("count", count);
    report_end();
  }
  return 0;
}
