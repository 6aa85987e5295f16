/* nRF52840 UARTE0 (EasyDMA), shared by the console and the learner's
 * link: start it, and send bytes from RAM. */
#ifndef BOARDS_DRIVERS_UARTE0_H_
#define BOARDS_DRIVERS_UARTE0_H_

#include <stdint.h>

#define UARTE0(offset) (*(volatile uint32_t*)(0x40002000u + (offset)))
#define UARTE0_TASKS_STARTRX UARTE0(0x000)
#define UARTE0_TASKS_STARTTX UARTE0(0x008)
#define UARTE0_EVENTS_ENDRX UARTE0(0x110)
#define UARTE0_EVENTS_ENDTX UARTE0(0x120)
#define UARTE0_RXD_PTR UARTE0(0x534)
#define UARTE0_RXD_MAXCNT UARTE0(0x538)

/* The crystal oscillator keeps the baud rate within the receiver's
 * tolerance (the internal RC oscillator may drift outside it); TX idles
 * high, also while the UARTE does not drive the pin; 8N1, no flow control. */
static inline void uarte0_start(uint32_t tx_pin, uint32_t rx_pin,
                                uint32_t baudrate) {
  volatile uint32_t* const hfclkstart = (volatile uint32_t*)0x40000000u;
  volatile uint32_t* const hfclkstarted = (volatile uint32_t*)0x40000100u;
  *hfclkstarted = 0;
  *hfclkstart = 1;
  while (*hfclkstarted == 0) {
  }
  const uint32_t gpio = tx_pin < 32 ? 0x50000000u : 0x50000300u;
  *(volatile uint32_t*)(gpio + 0x508u) = 1u << (tx_pin & 31); /* OUTSET */
  *(volatile uint32_t*)(gpio + 0x518u) = 1u << (tx_pin & 31); /* DIRSET */
  UARTE0(0x50C) = tx_pin;                                     /* PSEL.TXD */
  UARTE0(0x514) = rx_pin;                                     /* PSEL.RXD */
  UARTE0(0x508) = 0xFFFFFFFFu; /* PSEL.RTS: disconnected */
  UARTE0(0x510) = 0xFFFFFFFFu; /* PSEL.CTS: disconnected */
  UARTE0(0x524) = baudrate;    /* BAUDRATE register value */
  UARTE0(0x56C) = 0;           /* CONFIG */
  UARTE0(0x500) = 8;           /* ENABLE: UARTE */
}

/* EasyDMA reads only RAM, so bytes (which may be in flash) go through a
 * RAM buffer. */
static inline void uarte0_send(const uint8_t* data, uint32_t length) {
  static uint8_t buffer[64];
  while (length > 0) {
    const uint32_t n = length < sizeof(buffer) ? length : sizeof(buffer);
    for (uint32_t i = 0; i < n; ++i) buffer[i] = data[i];
    UARTE0_EVENTS_ENDTX = 0;
    UARTE0(0x544) = (uint32_t)(uintptr_t)buffer; /* TXD.PTR */
    UARTE0(0x548) = n;                           /* TXD.MAXCNT */
    UARTE0_TASKS_STARTTX = 1;
    while (UARTE0_EVENTS_ENDTX == 0) {
    }
    data += n;
    length -= n;
  }
}

#endif /* BOARDS_DRIVERS_UARTE0_H_ */
