/* ADD, int8: both inputs are rescaled to a shared intermediate scale (twice
 * the larger input scale, with 20 bits of headroom), summed, then rescaled
 * to the output and clamped by the fused activation, as TFLM's reference
 * kernel does. Shapes broadcast numpy-style. The kernel is shared with SUB
 * (tt_elementwise.c). */
#include "kernels/common/tt_elementwise.h"
#include "kernels/common/tt_kernel.h"

static tt_status prepare(tt_interpreter* it, tt_node* node) {
  return tt_add_sub_prepare(it, node, /*subtract=*/false);
}

const tt_kernel tt_kernel_add = {
    TT_OP_ADD, "ADD", TT_OPTIONS_ADD, prepare, tt_add_sub_eval,
};
