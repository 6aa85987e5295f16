#include "stack.h"

#include <stdint.h>

#include "board.h"

#define PAINT 0x5AC3A55Cu
/* Words just below the painter's own frame are left alone. */
#define PAINT_MARGIN_WORDS 16

extern uint32_t __stack_start[], __stack_end[];

void board_stack_paint(void) {
  uint32_t sp;
  __asm volatile("mov %0, sp" : "=r"(sp));
  volatile uint32_t* word = __stack_start;
  volatile uint32_t* end = (volatile uint32_t*)sp - PAINT_MARGIN_WORDS;
  while (word < end) *word++ = PAINT;
}

uint32_t board_stack_size(void) {
  return (uint32_t)((uintptr_t)__stack_end - (uintptr_t)__stack_start);
}

uint32_t board_stack_high_water(void) {
  const volatile uint32_t* word = __stack_start;
  while (word < __stack_end && *word == PAINT) word++;
  return (uint32_t)((uintptr_t)__stack_end - (uintptr_t)word);
}
