/* Exact guest instruction counts under QEMU -icount, from SysTick.
 *
 * With -icount shift=S each instruction advances virtual time by 2^S ns, so
 * SysTick changes value every T = TICK_INSTRUCTIONS instructions (40 for
 * the mps2's 25 MHz and S=0).
 * Plain tick counting is only good to +-T instructions. Here both ends of
 * a measurement are placed on a tick edge to the instruction:
 * systick_edge_find() polls until the counter changes (4 instructions per
 * poll), then reads the counter T-3, T-2 and T-1 instructions later; how
 * many of those reads already show the next change says how many
 * instructions (0-3) the first change came before the read that saw it.
 *
 *   start edge   = fixed point after the first call - its phase
 *   end edge     = entry of the second call + 4*polls - its phase
 *   T * (ticks between the edges) = end edge - start edge
 *
 * which gives the instructions between the two calls up to a constant.
 * The constant is removed by measuring an empty function the same way. */
#include "counter_systick_icount.h"

#include <stdbool.h>
#include <stdint.h>

#include "board.h"

#define SYST_CSR (*(volatile uint32_t*)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t*)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t*)0xE000E018u)
#define CSR_ENABLE (1u << 0)
#define CSR_CLKSOURCE_CPU (1u << 2)
#define CSR_COUNTFLAG (1u << 16)
#define MAX_RELOAD 0x00FFFFFFu

typedef struct { /* the order systick_edge.S stores them in */
  uint32_t polls;
  uint32_t value; /* counter value just after the change */
  uint32_t later[3];
} systick_edge;

void systick_edge_find(systick_edge* out);

static int64_t empty_cost;

__attribute__((noipa)) static void empty(void* context) { (void)context; }

static int32_t phase(const systick_edge* edge) {
  int32_t n = 0;
  for (int i = 0; i < 3; ++i) n += edge->later[i] != edge->value;
  return n;
}

/* Instructions of fn plus a constant; -1 when the counter ran out. */
__attribute__((noipa)) static int64_t span(board_measured_fn fn,
                                           void* context) {
  systick_edge start, end;
  SYST_CVR = 0; /* restart from the reload value; clears COUNTFLAG */
  systick_edge_find(&start);
  fn(context);
  systick_edge_find(&end);
  if (SYST_CSR & CSR_COUNTFLAG) return -1;
  const int64_t ticks = (int64_t)start.value - (int64_t)end.value;
  return ticks * TICK_INSTRUCTIONS - 4 * (int64_t)end.polls + phase(&end) -
         phase(&start);
}

void board_counter_init(void) {
  SYST_RVR = MAX_RELOAD;
  SYST_CVR = 0;
  SYST_CSR = CSR_ENABLE | CSR_CLKSOURCE_CPU; /* no interrupt */
  empty_cost = span(empty, 0);
}

int64_t board_counter_measure(board_measured_fn fn, void* context) {
  const int64_t raw = span(fn, context);
  return raw < 0 ? -1 : raw - empty_cost;
}

const char* board_counter_unit(void) { return BOARD_COUNTER_UNIT; }
