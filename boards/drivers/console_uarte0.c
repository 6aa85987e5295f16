/* nRF52840 UARTE0 console, transmit only (uarte0.h). BOARD_CONSOLE_*
 * values come from the "console" object in board.json. */
#include <stdint.h>

#include "board.h"
#include "uarte0.h"

void board_console_init(void) {
  uarte0_start(BOARD_CONSOLE_TX_PIN, BOARD_CONSOLE_RX_PIN,
               BOARD_CONSOLE_BAUDRATE_REGISTER);
}

void board_console_write(const char* text, uint32_t length) {
  uarte0_send((const uint8_t*)text, length);
}
