/* SUB, int8: ADD's arithmetic with the second input subtracted, as TFLM's
 * reference kernel does (shared with ADD in tt_elementwise.c). Shapes
 * broadcast numpy-style. */
#include "kernels/common/tt_elementwise.h"
#include "kernels/common/tt_kernel.h"

static tt_status prepare(tt_interpreter* it, tt_node* node) {
  return tt_add_sub_prepare(it, node, /*subtract=*/true);
}

const tt_kernel tt_kernel_sub = {
    TT_OP_SUB, "SUB", TT_OPTIONS_SUB, prepare, tt_add_sub_eval,
};
