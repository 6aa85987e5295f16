/* Shared handler for NMI and the fault exceptions: reports the fault as an
 * event line and exits with EXIT_STATUS_CPU_FAULT. */
#ifndef BOARDS_COMMON_FAULT_H_
#define BOARDS_COMMON_FAULT_H_

void board_fault_handler(void);

#endif /* BOARDS_COMMON_FAULT_H_ */
