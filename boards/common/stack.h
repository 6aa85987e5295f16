/* Stack painting for the high-water mark (board_stack_high_water()). */
#ifndef BOARDS_COMMON_STACK_H_
#define BOARDS_COMMON_STACK_H_

/* Fills the unused part of the stack with a pattern; call first at reset. */
void board_stack_paint(void);

#endif /* BOARDS_COMMON_STACK_H_ */
