/* What the firmware app needs from a board. board.json chooses which
 * driver in boards/drivers/ implements each part: console_<kind>.c,
 * exit_<kind>.c and counter_<kind>.c. */
#ifndef BOARDS_COMMON_BOARD_H_
#define BOARDS_COMMON_BOARD_H_

#include <stdbool.h>
#include <stdint.h>

#include "tt_flash.h"

void board_console_init(void);
void board_console_write(const char* text, uint32_t length);

/* Ends the program with `status` (0 = success). On an emulator this becomes
 * the emulator's exit code; on hardware the board halts. */
__attribute__((noreturn)) void board_exit(int status);

typedef void (*board_measured_fn)(void* context);

/* Runs fn(context) once and returns how long it took in the counter's unit
 * (board_counter_unit()), net of the cost of calling an empty function.
 * Returns -1 when the counter overflowed. */
void board_counter_init(void);
int64_t board_counter_measure(board_measured_fn fn, void* context);
const char* board_counter_unit(void);

/* The stack is painted at reset; this is the most of it ever used. */
uint32_t board_stack_size(void);
uint32_t board_stack_high_water(void);

/* The learner's byte link to the host (board.json "link": a UART).
 * read_byte waits at most timeout_ms for a byte (BOARD_LINK_FOREVER: as
 * long as it takes, asleep where the board can) and says whether one
 * came; write sends every byte before it returns. */
#define BOARD_LINK_FOREVER 0xFFFFFFFFu
void board_link_init(void);
bool board_link_read_byte(uint8_t* byte, uint32_t timeout_ms);
void board_link_write(const uint8_t* data, uint32_t length);
/* Bytes the link keeps receiving into while the device computes (an
 * interrupt-driven ring); 0 when it receives only while it waits. A host
 * may send the next frame early when it fits. */
uint32_t board_link_rx_buffer_bytes(void);

/* The flash that holds the learned state (board.json "flash_store"): the
 * linker reserves [__state_start, __state_end), whole pages at the end of
 * flash. board_flash_open fills a tt_flash.h interface for it; an
 * emulated board also loads what the region held when it last ran. */
void board_flash_open(tt_flash* flash);

#endif /* BOARDS_COMMON_BOARD_H_ */
