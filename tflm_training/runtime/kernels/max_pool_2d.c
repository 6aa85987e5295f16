/* MAX_POOL_2D, int8: the largest value of the part of each window that lies
 * inside the input, then the fused activation's clamp. */
#include "kernels/common/tt_kernel.h"
#include "kernels/common/tt_pool_params.h"
#include "math/tt_quant.h"

static tt_status prepare(tt_interpreter* it, tt_node* node) {
  tt_pool_params* p;
  TT_RETURN_IF_ERROR(tt_node_alloc_op_data(it, node, sizeof *p, (void**)&p));
  return tt_pool_prepare(it, node, p);
}

static tt_status eval(tt_interpreter* it, const tt_node* node) {
  const tt_pool_params* p = (const tt_pool_params*)tt_node_op_data(it, node);
  const int8_t* input =
      (const int8_t*)tt_tensor_data(it, tt_node_input(it, node, 0));
  int8_t* output = (int8_t*)tt_tensor_data(it, tt_node_output(it, node, 0));
  const int32_t depth = p->depth;
  const int32_t row_stride = p->input_width * depth;
  for (int32_t b = 0; b < p->batches; ++b) {
    const int8_t* batch_in = input + (int64_t)b * p->input_height * row_stride;
    for (int32_t out_y = 0; out_y < p->output_height; ++out_y) {
      for (int32_t out_x = 0; out_x < p->output_width; ++out_x) {
        int32_t oy, ox, y0, y1, x0, x1;
        tt_pool_window(p, out_y, out_x, &oy, &ox, &y0, &y1, &x0, &x1);
        for (int32_t c = 0; c < depth; ++c) {
          int32_t max = -128;
          for (int32_t fy = y0; fy < y1; ++fy) {
            const int8_t* row = batch_in + (oy + fy) * row_stride + c;
            for (int32_t fx = x0; fx < x1; ++fx) {
              const int32_t v = row[(ox + fx) * depth];
              if (v > max) max = v;
            }
          }
          *output++ =
              (int8_t)tt_clamp_i32(max, p->activation_min, p->activation_max);
        }
      }
    }
  }
  return TT_OK;
}

const tt_kernel tt_kernel_max_pool_2d = {
    TT_OP_MAX_POOL_2D, "MAX_POOL_2D", TT_OPTIONS_POOL_2D, prepare, eval,
};
