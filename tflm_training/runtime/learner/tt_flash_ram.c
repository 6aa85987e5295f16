#include "learner/tt_flash_ram.h"

#include <stddef.h>
#include <string.h>

static void notify(tt_flash_ram* ram, uint32_t offset, uint32_t length) {
  if (ram->changed != NULL) ram->changed(ram->changed_context, offset, length);
}

/* Counts the operation's "start" event; *torn when the "half done" event
 * is the one that cuts. Returns false when the power is (now) off. */
static bool power_holds(tt_flash_ram* ram, bool* torn) {
  *torn = false;
  if (ram->powered_off) return false;
  const int64_t start = ram->events;
  ram->events += 2;
  if (ram->cut_at < 0 || ram->cut_at >= ram->events) return true;
  ram->powered_off = true;
  *torn = ram->cut_at == start + 1;
  return false;
}

static tt_status erase_page(void* context, uint32_t offset) {
  tt_flash_ram* ram = context;
  if (offset % ram->page_bytes != 0 || offset >= ram->size)
    return TT_ERR_INVALID_ARGUMENT;
  bool torn;
  const bool holds = power_holds(ram, &torn);
  const bool worn = ram->worn_page >= 0 &&
                    offset / ram->page_bytes == (uint32_t)ram->worn_page;
  if (!worn && (holds || torn)) {
    const uint32_t length = holds ? ram->page_bytes : ram->page_bytes / 2;
    memset(ram->memory + offset, 0xFF, length);
    notify(ram, offset, length);
  }
  if (!holds) {
    notify(ram, 0, 0);
    return TT_ERR_BAD_STATE;
  }
  ram->erases++;
  return TT_OK;
}

static tt_status write_word(void* context, uint32_t offset, uint32_t word) {
  tt_flash_ram* ram = context;
  if (offset % 4 != 0 || offset > ram->size - 4) return TT_ERR_INVALID_ARGUMENT;
  uint32_t old;
  memcpy(&old, ram->memory + offset, 4);
  if ((word & ~old) != 0) return TT_ERR_INVALID_ARGUMENT; /* needs an erase */
  bool torn;
  const bool holds = power_holds(ram, &torn);
  const bool worn = ram->worn_page >= 0 &&
                    offset / ram->page_bytes == (uint32_t)ram->worn_page;
  if (!worn && (holds || torn)) {
    const uint32_t value = holds ? word : old & (word | 0xFFFF0000u);
    memcpy(ram->memory + offset, &value, 4);
    notify(ram, offset, 4);
  }
  if (!holds) {
    notify(ram, 0, 0);
    return TT_ERR_BAD_STATE;
  }
  ram->writes++;
  return TT_OK;
}

void tt_flash_ram_init(tt_flash_ram* ram, uint8_t* memory, uint32_t size,
                       uint32_t page_bytes, tt_flash* flash) {
  memset(ram, 0, sizeof *ram);
  ram->memory = memory;
  ram->size = size;
  ram->page_bytes = page_bytes;
  ram->cut_at = -1;
  ram->worn_page = -1;
  flash->base = memory;
  flash->size = size;
  flash->page_bytes = page_bytes;
  flash->erase_page = erase_page;
  flash->write_word = write_word;
  flash->context = ram;
}

void tt_flash_ram_power_on(tt_flash_ram* ram) {
  ram->powered_off = false;
  ram->events = 0;
  ram->cut_at = -1;
  ram->erases = 0;
  ram->writes = 0;
}
