/* nRF52840 UARTE console, transmit only. EasyDMA reads only from RAM, so
 * text (which may be in flash) is copied into a RAM buffer first.
 * BOARD_CONSOLE_* values come from the "console" object in board.json. */
#include <stdint.h>

#include "board.h"

#define UARTE(offset) (*(volatile uint32_t*)(BOARD_CONSOLE_BASE + (offset)))
#define TASKS_STARTTX UARTE(0x008)
#define EVENTS_ENDTX UARTE(0x120)
#define ENABLE UARTE(0x500)
#define PSEL_RTS UARTE(0x508)
#define PSEL_TXD UARTE(0x50C)
#define PSEL_CTS UARTE(0x510)
#define PSEL_RXD UARTE(0x514)
#define BAUDRATE UARTE(0x524)
#define TXD_PTR UARTE(0x544)
#define TXD_MAXCNT UARTE(0x548)
#define CONFIG UARTE(0x56C)
#define ENABLE_UARTE 8u
#define PSEL_DISCONNECTED 0xFFFFFFFFu

#define CLOCK(offset) (*(volatile uint32_t*)(0x40000000u + (offset)))
#define TASKS_HFCLKSTART CLOCK(0x000)
#define EVENTS_HFCLKSTARTED CLOCK(0x100)

/* GPIO port 0 at 0x50000000, port 1 at 0x50000300; pin n >= 32 is P1. */
#define GPIO_BASE(pin) ((pin) < 32 ? 0x50000000u : 0x50000300u)
#define GPIO_OUTSET(pin) (*(volatile uint32_t*)(GPIO_BASE(pin) + 0x508u))
#define GPIO_DIRSET(pin) (*(volatile uint32_t*)(GPIO_BASE(pin) + 0x518u))

static uint8_t tx_buffer[64];

void board_console_init(void) {
  /* The crystal oscillator keeps the baud rate within the receiver's
   * tolerance; the internal RC oscillator may drift outside it. */
  EVENTS_HFCLKSTARTED = 0;
  TASKS_HFCLKSTART = 1;
  while (EVENTS_HFCLKSTARTED == 0) {
  }
  /* TX idles high, also while the UARTE is not driving the pin. */
  GPIO_OUTSET(BOARD_CONSOLE_TX_PIN) = 1u << (BOARD_CONSOLE_TX_PIN & 31);
  GPIO_DIRSET(BOARD_CONSOLE_TX_PIN) = 1u << (BOARD_CONSOLE_TX_PIN & 31);
  PSEL_TXD = BOARD_CONSOLE_TX_PIN;
  PSEL_RXD = BOARD_CONSOLE_RX_PIN;
  PSEL_RTS = PSEL_DISCONNECTED;
  PSEL_CTS = PSEL_DISCONNECTED;
  BAUDRATE = BOARD_CONSOLE_BAUDRATE_REGISTER;
  CONFIG = 0; /* 8N1, no flow control */
  ENABLE = ENABLE_UARTE;
}

void board_console_write(const char* text, uint32_t length) {
  while (length > 0) {
    uint32_t n = length < sizeof(tx_buffer) ? length : sizeof(tx_buffer);
    for (uint32_t i = 0; i < n; ++i) tx_buffer[i] = (uint8_t)text[i];
    EVENTS_ENDTX = 0;
    TXD_PTR = (uint32_t)(uintptr_t)tx_buffer;
    TXD_MAXCNT = n;
    TASKS_STARTTX = 1;
    while (EVENTS_ENDTX == 0) {
    }
    text += n;
    length -= n;
  }
}
