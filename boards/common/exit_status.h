/* Firmware exit statuses (documented in boards/README.md). A failing
 * runtime call exits with its tt_status code, 1 to 63. */
#ifndef BOARDS_COMMON_EXIT_STATUS_H_
#define BOARDS_COMMON_EXIT_STATUS_H_

#define EXIT_STATUS_OK 0
#define EXIT_STATUS_BAD_EMBEDDED_DATA 64
#define EXIT_STATUS_CPU_FAULT 70
/* An emulated flash cut the power (boards/drivers/flash_emulated.c). */
#define EXIT_STATUS_POWER_CUT 71

#endif /* BOARDS_COMMON_EXIT_STATUS_H_ */
