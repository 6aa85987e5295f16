/* nops_<k>: k NOPs, then return; and the table nop_functions[] of
 * {k, nops_<k>} that counter_selftest.c walks. Lengths cover every phase
 * of a 40-instruction SysTick tick and some longer spans. */
  .syntax unified
  .thumb

  .macro nop_function k
  .text
  .type nops_\k, %function
  .thumb_func
nops_\k:
  .rept \k
  nop
  .endr
  bx lr
  .size nops_\k, . - nops_\k
  .section .rodata.nop_functions, "a"
  .word \k, nops_\k
  .endm

  .section .rodata.nop_functions, "a"
  .balign 4
  .global nop_functions
nop_functions:
  .irp k, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,79,80,81,1000,12345
  nop_function \k
  .endr
nop_functions_end:

  .global NUM_NOP_FUNCTIONS
  .balign 4
NUM_NOP_FUNCTIONS:
  .word (nop_functions_end - nop_functions) / 8
