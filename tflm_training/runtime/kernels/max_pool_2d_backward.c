/* MAX_POOL_2D backward: each output's gradient goes to the input its
 * maximum came from, found again in the saved int8 input (the first
 * largest value of the window in row-major order, as TensorFlow routes
 * ties). Saved: input 0, always. Clamp: only where the fused activation
 * narrows int8. */
#include "kernels/common/tt_backward_helpers.h"
#include "kernels/common/tt_backward_math.h"
#include "kernels/common/tt_pool_params.h"

void tt_max_pool_grad(const tt_pool_params* p, const int8_t* input, float gain,
                      const tt_grad* dy, tt_grad* dx) {
  const int32_t depth = p->depth;
  const int32_t row_stride = p->input_width * depth;
  for (int32_t b = 0; b < p->batches; ++b) {
    const int32_t batch_offset = b * p->input_height * row_stride;
    for (int32_t out_y = 0; out_y < p->output_height; ++out_y) {
      for (int32_t out_x = 0; out_x < p->output_width; ++out_x) {
        int32_t oy, ox, y0, y1, x0, x1;
        tt_pool_window(p, out_y, out_x, &oy, &ox, &y0, &y1, &x0, &x1);
        for (int32_t c = 0; c < depth; ++c) {
          const float g = tt_grad_value(*dy++);
          if (y0 >= y1 || x0 >= x1 || g == 0.0f) continue;
          int32_t best = -1;
          int32_t best_value = -129;
          for (int32_t fy = y0; fy < y1; ++fy) {
            const int32_t row = batch_offset + (oy + fy) * row_stride + c;
            for (int32_t fx = x0; fx < x1; ++fx) {
              const int32_t at = row + (ox + fx) * depth;
              if (input[at] > best_value) {
                best_value = input[at];
                best = at;
              }
            }
          }
          tt_grad_add(&dx[best], gain * g);
        }
      }
    }
  }
}

static tt_status max_pool_backward_prepare(tt_interpreter* it,
                                           const tt_node* node,
                                           const tt_layer_update* update,
                                           tt_backward_needs* needs) {
  (void)update;
  tt_backward_needs_clear(needs);
  const tt_pool_params* p = (const tt_pool_params*)tt_node_op_data(it, node);
  if (p == NULL) {
    return tt_node_fail(it, node, TT_ERR_BAD_STATE,
                        "forward kernel is not prepared");
  }
  needs->saved_inputs = 1u;
  tt_backward_clamp_activation(needs, p->activation_min, p->activation_max);
  return TT_OK;
}

static tt_status max_pool_backward(tt_interpreter* it, const tt_node* node,
                                   const tt_backward_io* io) {
  if (io->input_grads[0] == NULL) return TT_OK;
  const tt_pool_params* p = (const tt_pool_params*)tt_node_op_data(it, node);
  const tt_tensor* input = tt_node_input(it, node, 0);
  const int8_t* input_data = (const int8_t*)tt_tensor_data(it, input);
  if (p == NULL || input_data == NULL) {
    return tt_node_fail(it, node, TT_ERR_BAD_STATE,
                        "the saved input has no memory");
  }
  tt_max_pool_grad(p, input_data,
                   tt_backward_copy_gain(input, tt_node_output(it, node, 0)),
                   io->output_grad, io->input_grads[0]);
  return TT_OK;
}

const tt_backward_kernel tt_backward_max_pool_2d = {
    TT_OP_MAX_POOL_2D,
    false,
    max_pool_backward_prepare,
    max_pool_backward,
};
