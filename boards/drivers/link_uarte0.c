/* The learner's link on the nRF52840: UARTE0 with EasyDMA, both ways
 * (uarte0.h). Reception runs one byte at a time into RAM: the host sends
 * a request and waits for the answer (INFO reports no receive buffer), so
 * nothing arrives while the device computes. BOARD_LINK_* values come from
 * the "link" object in board.json (pins, the BAUDRATE register value,
 * polls per millisecond at 64 MHz). Compiled and size-checked here; not
 * yet run on a board (README, "What was verified where"). */
#include <stdint.h>

#include "board.h"
#include "uarte0.h"

static volatile uint8_t rx_byte;

static void start_rx(void) {
  UARTE0_EVENTS_ENDRX = 0;
  UARTE0_RXD_PTR = (uint32_t)(uintptr_t)&rx_byte;
  UARTE0_RXD_MAXCNT = 1;
  UARTE0_TASKS_STARTRX = 1;
}

void board_link_init(void) {
  uarte0_start(BOARD_LINK_TX_PIN, BOARD_LINK_RX_PIN,
               BOARD_LINK_BAUDRATE_REGISTER);
  start_rx();
}

bool board_link_read_byte(uint8_t* byte, uint32_t timeout_ms) {
  uint32_t ms = 0, poll = 0;
  while (UARTE0_EVENTS_ENDRX == 0) {
    if (timeout_ms == BOARD_LINK_FOREVER) continue;
    if (++poll == BOARD_LINK_POLLS_PER_MS) {
      poll = 0;
      if (++ms >= timeout_ms) return false;
    }
  }
  *byte = rx_byte;
  start_rx();
  return true;
}

void board_link_write(const uint8_t* data, uint32_t length) {
  uarte0_send(data, length);
}

uint32_t board_link_rx_buffer_bytes(void) { return 0; }
