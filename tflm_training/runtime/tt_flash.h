/* The flash a learned state lives in, as the state store sees it: a
 * memory-mapped region of whole pages that reads like memory and changes
 * only through two operations with the nRF52840 NVMC's rules:
 *
 *   erase_page   sets a page (page_bytes, 4096 on the nRF52840) to 0xFF;
 *   write_word   programs one aligned 32-bit word; programming only clears
 *                bits, so a word is written once after its page's erase.
 *
 * Each returns TT_OK once the operation is complete (the NVMC's READY) or
 * an error when the flash did not do it. A board supplies one for its
 * flash (boards/drivers/flash_*.c); tt_flash_ram.h is one in RAM, for
 * hosts and tests. */
#ifndef TFLM_TRAINING_TT_FLASH_H_
#define TFLM_TRAINING_TT_FLASH_H_

#include <stdint.h>

#include "tt_status.h"

typedef struct {
  const uint8_t* base; /* the region's contents, memory-mapped */
  uint32_t size;       /* bytes, a whole number of pages */
  uint32_t page_bytes;
  tt_status (*erase_page)(void* context, uint32_t offset);
  tt_status (*write_word)(void* context, uint32_t offset, uint32_t word);
  void* context;
} tt_flash;

#endif /* TFLM_TRAINING_TT_FLASH_H_ */
