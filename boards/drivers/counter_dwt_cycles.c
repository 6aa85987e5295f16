/* Core clock cycles from the DWT cycle counter (real Cortex-M4 hardware;
 * QEMU does not model it). The 32-bit counter wraps after 2^32 cycles
 * (67 s at 64 MHz), which a single measurement is assumed not to reach. */
#include <stdint.h>

#include "board.h"

#define DEMCR (*(volatile uint32_t*)0xE000EDFCu)
#define DWT_CTRL (*(volatile uint32_t*)0xE0001000u)
#define DWT_CYCCNT (*(volatile uint32_t*)0xE0001004u)
#define DEMCR_TRCENA (1u << 24)
#define DWT_CTRL_CYCCNTENA 1u

static uint32_t empty_cost;

__attribute__((noipa)) static void empty(void* context) { (void)context; }

__attribute__((noipa)) static uint32_t span(board_measured_fn fn,
                                            void* context) {
  const uint32_t start = DWT_CYCCNT;
  fn(context);
  return DWT_CYCCNT - start;
}

void board_counter_init(void) {
  DEMCR |= DEMCR_TRCENA;
  DWT_CYCCNT = 0;
  DWT_CTRL |= DWT_CTRL_CYCCNTENA;
  empty_cost = span(empty, 0);
}

int64_t board_counter_measure(board_measured_fn fn, void* context) {
  return (int64_t)span(fn, context) - (int64_t)empty_cost;
}

const char* board_counter_unit(void) { return BOARD_COUNTER_UNIT; }
