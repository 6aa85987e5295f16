/* A flash in RAM with the NVMC's rules (tt_flash.h), for host tests and
 * emulated boards, which can cut its power at any operation.
 *
 * It refuses what real flash would silently get wrong: a page offset not
 * on a page boundary, an unaligned or out-of-range word, and a word write
 * that would have to set a bit (only an erase sets bits).
 *
 * Power cuts: every operation is two events, "about to start" and "half
 * done". With cut_at = n >= 0, event n cuts the power: at an even n the
 * operation does not happen; at an odd n it happens halfway (an erase sets
 * only the first half of the page to 0xFF, a write programs only the low
 * 16 bits of the word), as an interrupted NVMC operation leaves flash in
 * between. From then on every operation fails with TT_ERR_BAD_STATE until
 * tt_flash_ram_power_on(). A worn page keeps its bits: writes to it leave
 * them unprogrammed and its erase leaves it as it was. */
#ifndef TFLM_TRAINING_TT_FLASH_RAM_H_
#define TFLM_TRAINING_TT_FLASH_RAM_H_

#include <stdbool.h>
#include <stdint.h>

#include "tt_flash.h"

typedef struct {
  uint8_t* memory;
  uint32_t size;
  uint32_t page_bytes;
  int64_t events; /* counted since power on */
  int64_t cut_at; /* -1: never */
  bool powered_off;
  int32_t worn_page; /* -1: none */
  uint32_t erases;   /* completed operations since power on */
  uint32_t writes;
  /* Called after memory[offset, offset + length) changed (e.g. to persist
   * it), and when the power is cut (length 0); may be NULL. */
  void (*changed)(void* context, uint32_t offset, uint32_t length);
  void* changed_context;
} tt_flash_ram;

/* memory holds `size` bytes (a multiple of page_bytes, itself a multiple
 * of 4); its contents are kept. Fills *flash to use it. */
void tt_flash_ram_init(tt_flash_ram* ram, uint8_t* memory, uint32_t size,
                       uint32_t page_bytes, tt_flash* flash);

/* Powers up again after a cut: events restart from 0, no cut is set. */
void tt_flash_ram_power_on(tt_flash_ram* ram);

#endif /* TFLM_TRAINING_TT_FLASH_RAM_H_ */
