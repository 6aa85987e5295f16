/* The learned state's flash on the nRF52840: the NVMC. CONFIG selects
 * write or erase; each operation is started by a register or a word
 * store and is done when READY reads 1 (the CPU also stalls on flash
 * while it runs). Compiled and size-checked here; not yet run on a board
 * (README, "What was verified where"). */
#include <stdint.h>

#include "board.h"

#define NVMC(offset) (*(volatile uint32_t*)(0x4001E000u + (offset)))
#define READY NVMC(0x400)
#define CONFIG NVMC(0x504)
#define ERASEPAGE NVMC(0x508)
#define CONFIG_READ_ONLY 0u
#define CONFIG_WRITE 1u
#define CONFIG_ERASE 2u

extern uint8_t __state_start[], __state_end[];

static void wait_ready(void) {
  while (READY == 0) {
  }
}

static tt_status erase_page(void* context, uint32_t offset) {
  (void)context;
  wait_ready();
  CONFIG = CONFIG_ERASE;
  ERASEPAGE = (uint32_t)(uintptr_t)(__state_start + offset);
  wait_ready();
  CONFIG = CONFIG_READ_ONLY;
  return TT_OK;
}

static tt_status write_word(void* context, uint32_t offset, uint32_t word) {
  (void)context;
  wait_ready();
  CONFIG = CONFIG_WRITE;
  *(volatile uint32_t*)(__state_start + offset) = word;
  wait_ready();
  CONFIG = CONFIG_READ_ONLY;
  /* A worn cell does not program: the store reads every word back. */
  return TT_OK;
}

void board_flash_open(tt_flash* flash) {
  flash->base = __state_start;
  flash->size = (uint32_t)(__state_end - __state_start);
  flash->page_bytes = BOARD_FLASH_STORE_PAGE_BYTES;
  flash->erase_page = erase_page;
  flash->write_word = write_word;
  flash->context = 0;
}
