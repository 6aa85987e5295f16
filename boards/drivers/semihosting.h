/* Arm semihosting calls (QEMU: -semihosting-config enable=on). Without a
 * debugger or emulator listening, the BKPT instruction faults. */
#ifndef BOARDS_DRIVERS_SEMIHOSTING_H_
#define BOARDS_DRIVERS_SEMIHOSTING_H_

#include <stdint.h>

#define SEMIHOSTING_SYS_OPEN 0x01u
#define SEMIHOSTING_SYS_CLOSE 0x02u
#define SEMIHOSTING_SYS_WRITE0 0x04u
#define SEMIHOSTING_SYS_WRITE 0x05u
#define SEMIHOSTING_SYS_READ 0x06u
#define SEMIHOSTING_SYS_SEEK 0x0Au
#define SEMIHOSTING_SYS_FLEN 0x0Cu
#define SEMIHOSTING_SYS_GET_CMDLINE 0x15u
#define SEMIHOSTING_OPEN_READ_WRITE 3u /* "r+b" */
#define SEMIHOSTING_OPEN_CREATE 7u     /* "w+b" */
#define SEMIHOSTING_SYS_EXIT_EXTENDED 0x20u
#define SEMIHOSTING_ADP_STOPPED_APPLICATION_EXIT 0x20026u

static inline uint32_t semihosting_call(uint32_t operation,
                                        const void* argument) {
  register uint32_t r0 __asm("r0") = operation;
  register const void* r1 __asm("r1") = argument;
  __asm volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

#endif /* BOARDS_DRIVERS_SEMIHOSTING_H_ */
