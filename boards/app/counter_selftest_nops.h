/* Functions of known length for counter_selftest.c. */
#ifndef BOARDS_APP_COUNTER_SELFTEST_NOPS_H_
#define BOARDS_APP_COUNTER_SELFTEST_NOPS_H_

#include <stdint.h>

#include "board.h"

typedef struct {
  uint32_t nops;
  board_measured_fn fn;
} nop_function;

extern const nop_function nop_functions[];
extern const uint32_t NUM_NOP_FUNCTIONS;

#endif /* BOARDS_APP_COUNTER_SELFTEST_NOPS_H_ */
