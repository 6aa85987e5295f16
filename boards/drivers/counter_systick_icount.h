/* Instructions per SysTick tick under QEMU -icount, from board.json's
 * counter.clock_hz and qemu.icount_shift (BOARD_* defines from the build
 * tool). Shared by the C and the assembly half of the driver. */
#ifndef BOARDS_DRIVERS_COUNTER_SYSTICK_ICOUNT_H_
#define BOARDS_DRIVERS_COUNTER_SYSTICK_ICOUNT_H_

#define TICK_NANOSECONDS (1000000000 / BOARD_COUNTER_CLOCK_HZ)
#define TICK_INSTRUCTIONS (TICK_NANOSECONDS >> BOARD_QEMU_ICOUNT_SHIFT)

#if TICK_NANOSECONDS * BOARD_COUNTER_CLOCK_HZ != 1000000000 || \
    (TICK_INSTRUCTIONS << BOARD_QEMU_ICOUNT_SHIFT) != TICK_NANOSECONDS
#error "a SysTick tick must last a whole number of instructions"
#endif
#if TICK_INSTRUCTIONS < 7
#error "SysTick ticks too fast for the edge finder (needs >= 7 instructions)"
#endif

#endif /* BOARDS_DRIVERS_COUNTER_SYSTICK_ICOUNT_H_ */
