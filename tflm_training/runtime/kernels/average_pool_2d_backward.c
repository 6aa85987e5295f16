/* AVERAGE_POOL_2D backward: each output's gradient, divided by the number
 * of inputs its window covers inside the image, goes to each of them.
 * Nothing is saved. Clamp: only where the fused activation narrows int8
 * (the rounded mean of int8 values cannot saturate). */
#include "kernels/common/tt_backward_helpers.h"
#include "kernels/common/tt_backward_math.h"
#include "kernels/common/tt_pool_params.h"

void tt_average_pool_grad(const tt_pool_params* p, float gain,
                          const tt_grad* dy, tt_grad* dx) {
  const int32_t depth = p->depth;
  const int32_t row_stride = p->input_width * depth;
  for (int32_t b = 0; b < p->batches; ++b) {
    tt_grad* batch_dx = dx + b * p->input_height * row_stride;
    for (int32_t out_y = 0; out_y < p->output_height; ++out_y) {
      for (int32_t out_x = 0; out_x < p->output_width; ++out_x) {
        int32_t oy, ox, y0, y1, x0, x1;
        tt_pool_window(p, out_y, out_x, &oy, &ox, &y0, &y1, &x0, &x1);
        const int32_t count = (y1 - y0) * (x1 - x0);
        for (int32_t c = 0; c < depth; ++c) {
          const float g = tt_grad_value(*dy++);
          if (count <= 0 || g == 0.0f) continue;
          const float share = gain * g / (float)count;
          for (int32_t fy = y0; fy < y1; ++fy) {
            tt_grad* row = batch_dx + (oy + fy) * row_stride + c;
            for (int32_t fx = x0; fx < x1; ++fx) {
              tt_grad_add(&row[(ox + fx) * depth], share);
            }
          }
        }
      }
    }
  }
}

static tt_status pool_params(tt_interpreter* it, const tt_node* node,
                             const tt_pool_params** params) {
  *params = (const tt_pool_params*)tt_node_op_data(it, node);
  if (*params == NULL) {
    return tt_node_fail(it, node, TT_ERR_BAD_STATE,
                        "forward kernel is not prepared");
  }
  return TT_OK;
}

static tt_status average_pool_backward_prepare(tt_interpreter* it,
                                               const tt_node* node,
                                               const tt_layer_update* update,
                                               tt_backward_needs* needs) {
  (void)update;
  tt_backward_needs_clear(needs);
  const tt_pool_params* p;
  TT_RETURN_IF_ERROR(pool_params(it, node, &p));
  tt_backward_clamp_activation(needs, p->activation_min, p->activation_max);
  return TT_OK;
}

static tt_status average_pool_backward(tt_interpreter* it, const tt_node* node,
                                       const tt_backward_io* io) {
  if (io->input_grads[0] == NULL) return TT_OK;
  const tt_pool_params* p;
  TT_RETURN_IF_ERROR(pool_params(it, node, &p));
  tt_average_pool_grad(p,
                       tt_backward_copy_gain(tt_node_input(it, node, 0),
                                             tt_node_output(it, node, 0)),
                       io->output_grad, io->input_grads[0]);
  return TT_OK;
}

const tt_backward_kernel tt_backward_average_pool_2d = {
    TT_OP_AVERAGE_POOL_2D,
    false,
    average_pool_backward_prepare,
    average_pool_backward,
};
