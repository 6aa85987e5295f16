/* QUANTIZE backward (float32 or int8 input to int8): the identity in real
 * values (straight-through rounding); the gradient stops where the output
 * saturates at -128 / 127, which an int8 input can only reach when the
 * output's scale or zero point differs from its own. Nothing is saved;
 * the gradient can be written in place. */
#include "kernels/common/tt_backward_helpers.h"
#include "kernels/common/tt_backward_math.h"

static tt_status quantize_backward_prepare(tt_interpreter* it,
                                           const tt_node* node,
                                           const tt_layer_update* update,
                                           tt_backward_needs* needs) {
  (void)update;
  tt_backward_needs_clear(needs);
  const tt_tensor* input;
  const tt_tensor* output;
  TT_RETURN_IF_ERROR(tt_backward_unary_tensors(it, node, &input, &output));
  if (input->type == TT_TYPE_INT8) {
    tt_backward_clamp_requantize(needs, input, output);
  } else {
    tt_backward_clamp(needs, -128, 127);
  }
  needs->in_place = true;
  return TT_OK;
}

const tt_backward_kernel tt_backward_quantize = {
    TT_OP_QUANTIZE,
    false,
    quantize_backward_prepare,
    tt_backward_identity_grad,
};
