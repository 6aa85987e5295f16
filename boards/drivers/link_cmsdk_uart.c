/* The learner's link on QEMU's mps2 machines: CMSDK APB UART, wired by
 * QEMU to a -serial chardev (a socket or a pty the host opens). The UART
 * holds one received byte at a time. Waiting forever sleeps in WFI, woken
 * by the RX interrupt (taken never: PRIMASK stays set; the pending bit is
 * cleared by hand), so an idle emulated device costs the host no CPU.
 * BOARD_LINK_* values come from the "link" object in board.json. */
#include <stdint.h>

#include "board.h"

#define UART(offset) (*(volatile uint32_t*)(BOARD_LINK_BASE + (offset)))
#define DATA UART(0x00)
#define STATE UART(0x04)
#define CTRL UART(0x08)
#define INTCLEAR UART(0x0C)
#define BAUDDIV UART(0x10)
#define STATE_TX_FULL 1u
#define STATE_RX_FULL 2u
#define CTRL_TX_EN 1u
#define CTRL_RX_EN 2u
#define CTRL_RX_IRQ_EN 8u
#define INT_RX 2u

#define NVIC_ISER (*(volatile uint32_t*)0xE000E100u)
#define NVIC_ICPR (*(volatile uint32_t*)0xE000E280u)
#define RX_IRQ_BIT (1u << BOARD_LINK_RX_IRQ)

void board_link_init(void) {
  BAUDDIV = 16;
  CTRL = CTRL_TX_EN | CTRL_RX_EN | CTRL_RX_IRQ_EN;
  __asm volatile("cpsid i" ::: "memory");
  NVIC_ISER = RX_IRQ_BIT;
}

static bool take(uint8_t* byte) {
  if (!(STATE & STATE_RX_FULL)) return false;
  *byte = (uint8_t)DATA;
  return true;
}

bool board_link_read_byte(uint8_t* byte, uint32_t timeout_ms) {
  if (timeout_ms == BOARD_LINK_FOREVER) {
    while (!take(byte)) {
      __asm volatile("wfi" ::: "memory");
      INTCLEAR = INT_RX;
      NVIC_ICPR = RX_IRQ_BIT;
    }
    return true;
  }
  for (uint32_t ms = 0; ms < timeout_ms; ++ms)
    for (uint32_t poll = 0; poll < BOARD_LINK_POLLS_PER_MS; ++poll)
      if (take(byte)) return true;
  return false;
}

void board_link_write(const uint8_t* data, uint32_t length) {
  for (uint32_t i = 0; i < length; ++i) {
    while (STATE & STATE_TX_FULL) {
    }
    DATA = data[i];
  }
}
