/* systick_edge_find(systick_edge* out): waits for the SysTick counter to
 * change and records enough to place that change to the exact instruction
 * (see counter_systick_icount.c). Under QEMU -icount every instruction
 * takes the same virtual time, so only instruction counts matter here,
 * and every path from the detecting read to the return has the same
 * length. */
#include "counter_systick_icount.h"

  .syntax unified
  .thumb
  .text
  .global systick_edge_find
  .type systick_edge_find, %function
  .thumb_func
systick_edge_find:
  push {r4, r5, r6, r7, lr}
  ldr r1, =0xE000E018         /* SYST_CVR */
  ldr r2, [r1]                /* the value before the change */
  movs r3, #0
1:
  ldr r4, [r1]                /* read R: the one that sees the change */
  adds r3, #1                 /* R+1 */
  cmp r4, r2                  /* R+2 */
  beq 1b                      /* R+3: four instructions per poll */
  /* The change came at R-phase, phase 0..3. The next change comes one tick
   * later; reading at R+T-3, R+T-2 and R+T-1 sees it in exactly `phase`
   * of the three reads. */
  .rept TICK_INSTRUCTIONS - 7
  nop
  .endr
  ldr r5, [r1]                /* R+T-3 */
  ldr r6, [r1]                /* R+T-2 */
  ldr r7, [r1]                /* R+T-1 */
  stmia r0!, {r3, r4, r5, r6, r7}
  pop {r4, r5, r6, r7, pc}
  .ltorg
  .size systick_edge_find, . - systick_edge_find
