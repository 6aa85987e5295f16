/* The learner's link on the nRF52840: UARTE0 with EasyDMA, both ways.
 * EasyDMA moves bytes only to and from RAM, so a byte is received into,
 * and text is sent from, RAM buffers. Reception runs one byte at a time:
 * the host sends a request and waits for the answer, so nothing arrives
 * while the device computes. BOARD_LINK_* values come from the "link"
 * object in board.json (the pins, the BAUDRATE register value, polls per
 * millisecond at 64 MHz). Compiled and size-checked here; not yet run on
 * a board (README, "What was verified where"). */
#include <stdint.h>

#include "board.h"

#define UARTE(offset) (*(volatile uint32_t*)(BOARD_LINK_BASE + (offset)))
#define TASKS_STARTRX UARTE(0x000)
#define TASKS_STARTTX UARTE(0x008)
#define EVENTS_ENDRX UARTE(0x110)
#define EVENTS_ENDTX UARTE(0x120)
#define ENABLE UARTE(0x500)
#define PSEL_RTS UARTE(0x508)
#define PSEL_TXD UARTE(0x50C)
#define PSEL_CTS UARTE(0x510)
#define PSEL_RXD UARTE(0x514)
#define BAUDRATE UARTE(0x524)
#define RXD_PTR UARTE(0x534)
#define RXD_MAXCNT UARTE(0x538)
#define TXD_PTR UARTE(0x544)
#define TXD_MAXCNT UARTE(0x548)
#define CONFIG UARTE(0x56C)
#define ENABLE_UARTE 8u
#define PSEL_DISCONNECTED 0xFFFFFFFFu

#define CLOCK(offset) (*(volatile uint32_t*)(0x40000000u + (offset)))
#define TASKS_HFCLKSTART CLOCK(0x000)
#define EVENTS_HFCLKSTARTED CLOCK(0x100)

#define GPIO_BASE(pin) ((pin) < 32 ? 0x50000000u : 0x50000300u)
#define GPIO_OUTSET(pin) (*(volatile uint32_t*)(GPIO_BASE(pin) + 0x508u))
#define GPIO_DIRSET(pin) (*(volatile uint32_t*)(GPIO_BASE(pin) + 0x518u))

static volatile uint8_t rx_byte;
static uint8_t tx_buffer[64];

static void start_rx(void) {
  EVENTS_ENDRX = 0;
  RXD_PTR = (uint32_t)(uintptr_t)&rx_byte;
  RXD_MAXCNT = 1;
  TASKS_STARTRX = 1;
}

void board_link_init(void) {
  EVENTS_HFCLKSTARTED = 0;
  TASKS_HFCLKSTART = 1;
  while (EVENTS_HFCLKSTARTED == 0) {
  }
  GPIO_OUTSET(BOARD_LINK_TX_PIN) = 1u << (BOARD_LINK_TX_PIN & 31);
  GPIO_DIRSET(BOARD_LINK_TX_PIN) = 1u << (BOARD_LINK_TX_PIN & 31);
  PSEL_TXD = BOARD_LINK_TX_PIN;
  PSEL_RXD = BOARD_LINK_RX_PIN;
  PSEL_RTS = PSEL_DISCONNECTED;
  PSEL_CTS = PSEL_DISCONNECTED;
  BAUDRATE = BOARD_LINK_BAUDRATE_REGISTER;
  CONFIG = 0; /* 8N1, no flow control */
  ENABLE = ENABLE_UARTE;
  start_rx();
}

bool board_link_read_byte(uint8_t* byte, uint32_t timeout_ms) {
  uint32_t ms = 0, poll = 0;
  while (EVENTS_ENDRX == 0) {
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

uint32_t board_link_rx_buffer_bytes(void) { return 0; }

void board_link_write(const uint8_t* data, uint32_t length) {
  while (length > 0) {
    const uint32_t n = length < sizeof(tx_buffer) ? length : sizeof(tx_buffer);
    for (uint32_t i = 0; i < n; ++i) tx_buffer[i] = data[i];
    EVENTS_ENDTX = 0;
    TXD_PTR = (uint32_t)(uintptr_t)tx_buffer;
    TXD_MAXCNT = n;
    TASKS_STARTTX = 1;
    while (EVENTS_ENDTX == 0) {
    }
    data += n;
    length -= n;
  }
}
