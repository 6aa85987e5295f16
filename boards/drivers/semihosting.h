/* Arm semihosting calls (QEMU: -semihosting-config enable=on). Without a
 * debugger or emulator listening, the BKPT instruction faults. */
#ifndef BOARDS_DRIVERS_SEMIHOSTING_H_
#define BOARDS_DRIVERS_SEMIHOSTING_H_

#include <stdint.h>

#define SEMIHOSTING_SYS_WRITE0 0x04u
#define SEMIHOSTING_SYS_EXIT_EXTENDED 0x20u
#define SEMIHOSTING_ADP_STOPPED_APPLICATION_EXIT 0x20026u

static inline uint32_t semihosting_call(uint32_t operation, const void* argument) {
  register uint32_t r0 __asm("r0") = operation;
  register const void* r1 __asm("r1") = argument;
  __asm volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

#endif /* BOARDS_DRIVERS_SEMIHOSTING_H_ */
