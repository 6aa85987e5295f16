#include "fault.h"

#include <stdint.h>

#include "board.h"
#include "exit_status.h"
#include "report.h"

#define CFSR (*(volatile uint32_t*)0xE000ED28u)
#define HFSR (*(volatile uint32_t*)0xE000ED2Cu)
#define BFAR (*(volatile uint32_t*)0xE000ED38u)

extern uint32_t __stack_start[], __stack_end[];

void board_fault_report(const uint32_t* frame, uint32_t exception);

/* Moves to a fresh stack first: the fault may be a stack overflow. The
 * exception frame address (MSP) and number (IPSR) go to the reporter. */
__attribute__((naked)) void board_fault_handler(void) {
  __asm volatile(
      "mrs r0, msp\n\t"
      "mrs r1, ipsr\n\t"
      "ldr r2, =__stack_end\n\t"
      "mov sp, r2\n\t"
      "b board_fault_report\n\t"
      ".ltorg");
}

void board_fault_report(const uint32_t* frame, uint32_t exception) {
  report_begin("fault");
  report_u32("exception", exception);
  report_u32("cfsr", CFSR);
  report_u32("hfsr", HFSR);
  report_u32("bfar", BFAR);
  /* The frame holds r0-r3, r12, lr, pc, xpsr when it lies in the stack. */
  if (frame >= __stack_start && frame + 8 <= __stack_end) {
    report_u32("pc", frame[6]);
    report_u32("lr", frame[5]);
  }
  report_end();
  report_exit(EXIT_STATUS_CPU_FAULT);
}
