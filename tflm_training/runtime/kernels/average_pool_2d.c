/* AVERAGE_POOL_2D, int8: the rounded mean of the part of each window that
 * lies inside the input (padding is not counted). */
#include "kernels/common/tt_kernel.h"
#include "kernels/common/tt_pool_params.h"
#include "math/tt_quant.h"

static tt_status prepare(tt_interpreter* it, tt_node* node) {
  tt_pool_params* p;
  TT_RETURN_IF_ERROR(tt_node_alloc_op_data(it, node, sizeof *p, (void**)&p));
  TT_RETURN_IF_ERROR(tt_pool_prepare(it, node, p));
  /* The window sum, and the sum +- count / 2 that rounds it, must not
   * overflow int32: allow at most 2^23 values. */
  const int64_t rows =
      p->filter_height < p->input_height ? p->filter_height : p->input_height;
  const int64_t cols =
      p->filter_width < p->input_width ? p->filter_width : p->input_width;
  if (rows * cols > ((int64_t)1 << 23))
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "a %d x %d window over a %d x %d input is too large "
                        "to average in 32 bits",
                        p->filter_height, p->filter_width, p->input_height,
                        p->input_width);
  return TT_OK;
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
        const int32_t count = (y1 - y0) * (x1 - x0);
        for (int32_t c = 0; c < depth; ++c) {
          int32_t sum = 0;
          for (int32_t fy = y0; fy < y1; ++fy) {
            const int8_t* row = batch_in + (oy + fy) * row_stride + c;
            for (int32_t fx = x0; fx < x1; ++fx) sum += row[(ox + fx) * depth];
          }
          /* Round half away from zero, as TFLM does. count >= 1 whenever
           * the output is non-empty; the guard only keeps eval total. */
          int32_t value = 0;
          if (count > 0)
            value =
                sum > 0 ? (sum + count / 2) / count : (sum - count / 2) / count;
          *output++ =
              (int8_t)tt_clamp_i32(value, p->activation_min, p->activation_max);
        }
      }
    }
  }
  return TT_OK;
}

const tt_kernel tt_kernel_average_pool_2d = {
    TT_OP_AVERAGE_POOL_2D, "AVERAGE_POOL_2D", TT_OPTIONS_POOL_2D, prepare, eval,
};
