/* The learner's link on QEMU's mps2 machines: CMSDK APB UART, wired by
 * QEMU to a -serial chardev (a socket or a pty the host opens). The UART
 * holds one received byte at a time, so its RX interrupt moves each byte
 * into a ring (BOARD_LINK_RX_RING bytes) at once: the host's next frame
 * arrives while the device trains on this one. Waiting forever sleeps in
 * WFI, so an idle emulated device costs the host no CPU. BOARD_LINK_*
 * values come from the "link" object in board.json. */
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

static uint8_t ring[BOARD_LINK_RX_RING];
static volatile uint32_t head; /* written by the interrupt */
static volatile uint32_t tail; /* written by the reader */

void board_link_irq_handler(void) {
  /* Clear first: a byte arriving while the ring fills raises it again. */
  INTCLEAR = INT_RX;
  while (STATE & STATE_RX_FULL) {
    const uint8_t byte = (uint8_t)DATA;
    const uint32_t next = (head + 1) % BOARD_LINK_RX_RING;
    if (next != tail) { /* a full ring drops the byte: the frame's CRC fails */
      ring[head] = byte;
      head = next;
    }
  }
}

void board_link_init(void) {
  BAUDDIV = 16;
  CTRL = CTRL_TX_EN | CTRL_RX_EN | CTRL_RX_IRQ_EN;
  NVIC_ISER = 1u << BOARD_LINK_RX_IRQ;
}

static bool take(uint8_t* byte) {
  if (head == tail) return false;
  *byte = ring[tail];
  tail = (tail + 1) % BOARD_LINK_RX_RING;
  return true;
}

bool board_link_read_byte(uint8_t* byte, uint32_t timeout_ms) {
  if (timeout_ms == BOARD_LINK_FOREVER) {
    for (;;) {
      /* Interrupts masked between the check and WFI, so a byte arriving
       * in between still wakes it. */
      __asm volatile("cpsid i" ::: "memory");
      if (take(byte)) break;
      __asm volatile("wfi\n\tcpsie i" ::: "memory");
    }
    __asm volatile("cpsie i" ::: "memory");
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

uint32_t board_link_rx_buffer_bytes(void) { return BOARD_LINK_RX_RING - 1; }
