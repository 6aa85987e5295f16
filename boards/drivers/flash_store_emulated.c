/* The learned state's flash on an emulated board: the NVMC's rules
 * (tt_flash_ram.h) over the reserved region, which QEMU's machine can
 * write like RAM, with every change written through to a host file so
 * the state survives the emulator's exit, and power cuts for tests.
 *
 * The host names the file and the cut on QEMU's semihosting command line
 * (-semihosting-config arg=...): "flash=PATH" (without it nothing
 * persists), "cut=N" (the N-th flash event cuts the power: the firmware
 * exits with EXIT_STATUS_POWER_CUT, the file holding what the flash held
 * at that instant; tt_flash_ram.h says what an event is) and
 * "worn_page=P" (page P of the region no longer programs or erases). */
#include <stdint.h>
#include <string.h>

#include "board.h"
#include "exit_status.h"
#include "learner/tt_flash_ram.h"
#include "semihosting.h"

extern uint8_t __state_start[], __state_end[];

static tt_flash_ram ram;
static int32_t file = -1;
static char command_line[256];

static void write_through(void* context, uint32_t offset, uint32_t length) {
  (void)context;
  if (length > 0 && file >= 0) {
    const uint32_t seek[2] = {(uint32_t)file, offset};
    const uint32_t write[3] = {
        (uint32_t)file, (uint32_t)(uintptr_t)(ram.memory + offset), length};
    semihosting_call(SEMIHOSTING_SYS_SEEK, seek);
    semihosting_call(SEMIHOSTING_SYS_WRITE, write);
  }
  if (length == 0) board_exit(EXIT_STATUS_POWER_CUT);
}

/* The value of "key=" on the command line, or NULL. */
static const char* argument(const char* key) {
  const uint32_t key_length = (uint32_t)strlen(key);
  for (const char* at = command_line; *at != '\0'; ++at) {
    const bool starts = at == command_line || at[-1] == ' ';
    if (starts && strncmp(at, key, key_length) == 0 && at[key_length] == '=')
      return at + key_length + 1;
  }
  return NULL;
}

static int64_t number(const char* text) {
  int64_t value = 0;
  for (; text != NULL && *text >= '0' && *text <= '9'; ++text)
    value = value * 10 + (*text - '0');
  return value;
}

static void open_file(const char* path) {
  static char name[200];
  uint32_t length = 0;
  while (path[length] != '\0' && path[length] != ' ' &&
         length + 1 < sizeof name) {
    name[length] = path[length];
    length++;
  }
  name[length] = '\0';
  uint32_t open[3] = {(uint32_t)(uintptr_t)name, SEMIHOSTING_OPEN_READ_WRITE,
                      length};
  file = (int32_t)semihosting_call(SEMIHOSTING_SYS_OPEN, open);
  if (file >= 0) {
    const uint32_t handle[1] = {(uint32_t)file};
    const int32_t size =
        (int32_t)semihosting_call(SEMIHOSTING_SYS_FLEN, handle);
    const uint32_t take = size < 0                    ? 0
                          : (uint32_t)size < ram.size ? (uint32_t)size
                                                      : ram.size;
    const uint32_t read[3] = {(uint32_t)file, (uint32_t)(uintptr_t)ram.memory,
                              take};
    semihosting_call(SEMIHOSTING_SYS_READ, read);
  } else {
    open[1] = SEMIHOSTING_OPEN_CREATE;
    file = (int32_t)semihosting_call(SEMIHOSTING_SYS_OPEN, open);
  }
  write_through(0, 0, ram.size); /* the file is the region's size */
}

void board_flash_open(tt_flash* flash) {
  const uint32_t size = (uint32_t)(__state_end - __state_start);
  /* Unwritten flash reads erased; a file overwrites what it holds. */
  memset(__state_start, 0xFF, size);
  tt_flash_ram_init(&ram, __state_start, size, BOARD_FLASH_STORE_PAGE_BYTES,
                    flash);
  uint32_t get[2] = {(uint32_t)(uintptr_t)command_line,
                     sizeof command_line - 1};
  if (semihosting_call(SEMIHOSTING_SYS_GET_CMDLINE, get) != 0)
    command_line[0] = '\0';
  ram.changed = write_through;
  const char* path = argument("flash");
  if (path != NULL) open_file(path);
  if (argument("cut") != NULL) ram.cut_at = number(argument("cut"));
  if (argument("worn_page") != NULL)
    ram.worn_page = (int32_t)number(argument("worn_page"));
}
