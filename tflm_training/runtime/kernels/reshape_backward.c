/* RESHAPE, SQUEEZE and EXPAND_DIMS backward: the bytes are unchanged, so
 * the gradient is copied, scaled by output scale / input scale (1 when they
 * agree, as converters write them). Nothing is saved; no clamp (the values
 * are not touched); the gradient can be written in place. */
#include "kernels/common/tt_backward_helpers.h"
#include "kernels/common/tt_backward_math.h"

void tt_grad_scaled_add(int32_t count, float gain, const tt_grad* dy,
                        tt_grad* dx) {
  for (int32_t i = 0; i < count; ++i) {
    tt_grad_add(&dx[i], gain * tt_grad_value(dy[i]));
  }
}

void tt_grad_scaled_write(int32_t count, float gain, const tt_grad* dy,
                          tt_grad* dx) {
  for (int32_t i = 0; i < count; ++i) {
    dx[i] = tt_grad_from_float(0.0f + gain * tt_grad_value(dy[i]));
  }
}

static tt_status copy_backward_prepare(tt_interpreter* it, const tt_node* node,
                                       const tt_layer_update* update,
                                       tt_backward_needs* needs) {
  (void)update;
  tt_backward_needs_clear(needs);
  const tt_tensor* input;
  const tt_tensor* output;
  TT_RETURN_IF_ERROR(tt_backward_unary_tensors(it, node, &input, &output));
  if (input->type != TT_TYPE_INT8 && input->type != TT_TYPE_FLOAT32) {
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "gradients pass only through INT8 or FLOAT32 "
                        "tensors, not %s",
                        tt_type_name(input->type));
  }
  needs->in_place = true;
  return TT_OK;
}

const tt_backward_kernel tt_backward_reshape = {
    TT_OP_RESHAPE,
    false,
    copy_backward_prepare,
    tt_backward_copy_grad,
};

const tt_backward_kernel tt_backward_squeeze = {
    TT_OP_SQUEEZE,
    false,
    copy_backward_prepare,
    tt_backward_copy_grad,
};

const tt_backward_kernel tt_backward_expand_dims = {
    TT_OP_EXPAND_DIMS,
    false,
    copy_backward_prepare,
    tt_backward_copy_grad,
};
