/* Reset and exception entry for every Cortex-M4F board: vector table,
 * memory initialisation, FPU enable, stack painting, then main(). */
#include <stdint.h>
#include <string.h>

#include "board.h"
#include "fault.h"
#include "report.h"
#include "stack.h"

extern uint32_t __stack_end[];
extern uint32_t __data_start[], __data_end[], __data_load[];
extern uint32_t __bss_start[], __bss_end[];

int main(void);
void board_reset_handler(void);
void board_systick_handler(void)
    __attribute__((weak, alias("board_default_handler")));
/* The link's receive interrupt (board.json "link": "rx_irq"), when it has one.
 */
void board_link_irq_handler(void)
    __attribute__((weak, alias("board_default_handler")));
void board_default_handler(void);

#define CPACR (*(volatile uint32_t*)0xE000ED88u)
#define VTOR (*(volatile uint32_t*)0xE000ED08u)

typedef void (*vector)(void);

/* The 16 system exceptions, then the external interrupts (48 cover the
 * nRF52840 and the mps2); unused ones fault. */
#define EXTERNAL_INTERRUPTS 48

/* Every external interrupt defaults to a fault; the link's entry then
 * overrides its range default on purpose. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Woverride-init"
__attribute__((section(".vectors"),
               used)) static const vector vectors[16 + EXTERNAL_INTERRUPTS] = {
    (vector)(uintptr_t)__stack_end, /* initial main stack pointer */
    board_reset_handler,
    board_fault_handler, /* NMI */
    board_fault_handler, /* HardFault */
    board_fault_handler, /* MemManage */
    board_fault_handler, /* BusFault */
    board_fault_handler, /* UsageFault */
    0,
    0,
    0,
    0,
    board_default_handler, /* SVCall */
    board_default_handler, /* DebugMonitor */
    0,
    board_default_handler, /* PendSV */
    board_systick_handler,
    [16 ... 16 + EXTERNAL_INTERRUPTS - 1] = board_default_handler,
#ifdef BOARD_LINK_RX_IRQ
    [16 + BOARD_LINK_RX_IRQ] = board_link_irq_handler,
#endif
};
#pragma GCC diagnostic pop

void board_default_handler(void) { board_fault_handler(); }

/* Kept free of floating point: the FPU is off until CPACR is written.
 * Behind a bootloader (board.json "app_offset") exceptions and interrupts
 * must reach this image's table, not the bootloader's: VTOR points at it
 * (the table starts the image, so it is aligned as VTOR needs). */
void board_reset_handler(void) {
  VTOR = (uint32_t)(uintptr_t)vectors;
  CPACR |= 0xFu << 20; /* CP10 and CP11: full access */
  __asm volatile("dsb\n\tisb" ::: "memory");
  board_stack_paint();
  memcpy(__data_start, __data_load,
         (uintptr_t)__data_end - (uintptr_t)__data_start);
  memset(__bss_start, 0, (uintptr_t)__bss_end - (uintptr_t)__bss_start);
  report_exit(main());
}
