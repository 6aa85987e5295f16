/* RELU and RELU6 backward. The gradient passes where the output is strictly
 * inside the clamp (the trainer masks the rest):
 *   RELU requantizes to the output scale (real derivative 1) and clamps at
 *   the output zero point, and at 127 when requantizing can saturate;
 *   RELU6 clamps the input's int8 values between its zero point and the
 *   quantized 6.0, unchanged, as TFLM does (derivative output scale /
 *   input scale, 1 when they agree).
 * Nothing is saved; the gradient can be written in place. */
#include "kernels/common/tt_backward_helpers.h"
#include "kernels/common/tt_backward_math.h"
#include "math/tt_quant.h"

static tt_status relu_backward_prepare(tt_interpreter* it, const tt_node* node,
                                       const tt_layer_update* update,
                                       tt_backward_needs* needs) {
  (void)update;
  tt_backward_needs_clear(needs);
  const tt_tensor* input;
  const tt_tensor* output;
  TT_RETURN_IF_ERROR(tt_backward_unary_tensors(it, node, &input, &output));
  const bool same =
      input->scale == output->scale && input->zero_point == output->zero_point;
  tt_backward_clamp(needs, output->zero_point, same ? 128 : 127);
  needs->in_place = true;
  return TT_OK;
}

/* The forward kernel's bounds: the input zero point and round(6 / scale) +
 * zero point clamped to int8 (-128 when 6 / scale overflows int32). */
static tt_status relu6_backward_prepare(tt_interpreter* it, const tt_node* node,
                                        const tt_layer_update* update,
                                        tt_backward_needs* needs) {
  (void)update;
  tt_backward_needs_clear(needs);
  const tt_tensor* input;
  const tt_tensor* output;
  TT_RETURN_IF_ERROR(tt_backward_unary_tensors(it, node, &input, &output));
  const float six = tt_round_float(6.0f / input->scale);
  int32_t upper = -128;
  if (six < 2147483648.0f) {
    const int64_t q = (int64_t)six + input->zero_point;
    upper = (int32_t)(q > 127 ? 127 : (q < -128 ? -128 : q));
  }
  tt_backward_clamp(needs, input->zero_point, upper);
  needs->in_place = true;
  return TT_OK;
}

const tt_backward_kernel tt_backward_relu = {
    TT_OP_RELU,
    false,
    relu_backward_prepare,
    tt_backward_identity_grad,
};

const tt_backward_kernel tt_backward_relu6 = {
    TT_OP_RELU6,
    false,
    relu6_backward_prepare,
    tt_backward_copy_grad,
};
