/* The parts of tt_conv_params.h that run for every inference: window
 * taps, the multiply-accumulate loop of the portable path, and the eval
 * view. (tt_conv_params.c, which prepare uses, is built for size.) */
#include "kernels/common/tt_conv_params.h"
#include "kernels/common/tt_dsp.h"

/* The taps of one window axis that land inside the input: of `taps` taps,
 * `dilation` apart, the first at input coordinate `origin`, those in
 * [0, size) are taps *first .. *first + count - 1. Returns count. */
static int32_t valid_axis_taps(int32_t origin, int32_t dilation, int32_t size,
                               int32_t taps, int32_t* first) {
  /* Divisions rounded up, written so that no sum can overflow. */
  *first = origin < 0 ? (-origin - 1) / dilation + 1 : 0;
  const int32_t end = origin < size ? (size - origin - 1) / dilation + 1 : 0;
  const int32_t count = (end < taps ? end : taps) - *first;
  return count > 0 ? count : 0;
}

tt_conv_taps tt_conv_pixel_taps(const tt_conv_geometry* g, int32_t out_y,
                                int32_t out_x) {
  const tt_conv_window* w = &g->window;
  const int32_t origin_y = out_y * w->stride_h - w->pad_h;
  const int32_t origin_x = out_x * w->stride_w - w->pad_w;
  int32_t first_y, first_x;
  const int32_t rows =
      valid_axis_taps(origin_y, w->dilation_h, g->in_h, g->filter_h, &first_y);
  const int32_t cols =
      valid_axis_taps(origin_x, w->dilation_w, g->in_w, g->filter_w, &first_x);
  if (rows == 0 || cols == 0) {
    const tt_conv_taps none = {0};
    return none;
  }
  return tt_conv_taps_of_grid(g, rows, cols, first_y, first_x,
                              origin_y + first_y * w->dilation_h,
                              origin_x + first_x * w->dilation_w);
}

#if TT_HAVE_DSP
/* The first span - span % 4 taps of four filters, four at a time. */
static int32_t accumulate_quad_dsp(const int8_t* in, int32_t span,
                                   int32_t input_offset, const int8_t* f0,
                                   const int8_t* f1, const int8_t* f2,
                                   const int8_t* f3, int32_t a[4]) {
  const tt_i16x2 offsets = tt_dsp_pair(input_offset);
  int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
  int32_t i = 0;
  for (; i + 4 <= span; i += 4) {
    tt_i16x2 even, odd;
    tt_dsp_widen(tt_dsp_load4(in + i), offsets, &even, &odd);
    a0 = tt_dsp_mac4(a0, even, odd, tt_dsp_load4(f0 + i));
    a1 = tt_dsp_mac4(a1, even, odd, tt_dsp_load4(f1 + i));
    a2 = tt_dsp_mac4(a2, even, odd, tt_dsp_load4(f2 + i));
    a3 = tt_dsp_mac4(a3, even, odd, tt_dsp_load4(f3 + i));
  }
  a[0] = a0;
  a[1] = a1;
  a[2] = a2;
  a[3] = a3;
  return i;
}
#endif

void tt_conv_accumulate_quad(const tt_conv_taps* taps, int32_t span,
                             int32_t input_offset, const int8_t* input,
                             const int8_t* const filters[4], int32_t acc[4]) {
  /* Copied once: read through the array, they were reloaded every row. */
  const int8_t* const filter0 = filters[0];
  const int8_t* const filter1 = filters[1];
  const int8_t* const filter2 = filters[2];
  const int8_t* const filter3 = filters[3];
  int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  for (int32_t row = 0; row < taps->rows; ++row) {
    for (int32_t col = 0; col < taps->cols; ++col) {
      const int8_t* in =
          input + row * taps->input_row_step + col * taps->input_col_step;
      const int32_t tap =
          row * taps->filter_row_step + col * taps->filter_col_step;
      const int8_t* f0 = filter0 + tap;
      const int8_t* f1 = filter1 + tap;
      const int8_t* f2 = filter2 + tap;
      const int8_t* f3 = filter3 + tap;
      int32_t i = 0;
#if TT_HAVE_DSP
      int32_t sums[4] = {a0, a1, a2, a3};
      i = accumulate_quad_dsp(in, span, input_offset, f0, f1, f2, f3, sums);
      a0 = sums[0];
      a1 = sums[1];
      a2 = sums[2];
      a3 = sums[3];
#endif
      for (; i < span; ++i) {
        const int32_t value = (int32_t)in[i] + input_offset;
        a0 = tt_conv_wrapping_add(a0, (int32_t)f0[i] * value);
        a1 = tt_conv_wrapping_add(a1, (int32_t)f1[i] * value);
        a2 = tt_conv_wrapping_add(a2, (int32_t)f2[i] * value);
        a3 = tt_conv_wrapping_add(a3, (int32_t)f3[i] * value);
      }
    }
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
}

tt_status tt_conv_eval_view_init(tt_interpreter* interpreter,
                                 const tt_node* node, uint32_t header_size,
                                 int32_t multiplier_count,
                                 const tt_conv_quant* quant,
                                 tt_conv_eval_view* view) {
  const uint8_t* op_data = tt_node_op_data(interpreter, node);
  const tt_tensor* bias = tt_node_input(interpreter, node, 2);
  const tt_tensor* input = tt_node_input(interpreter, node, 0);
  const tt_tensor* filter = tt_node_input(interpreter, node, 1);
  const tt_tensor* output = tt_node_output(interpreter, node, 0);
  view->input = input ? tt_tensor_data(interpreter, input) : NULL;
  view->filter = filter ? tt_tensor_data(interpreter, filter) : NULL;
  view->bias = bias ? tt_tensor_data(interpreter, bias) : NULL;
  view->output = output ? tt_tensor_data(interpreter, output) : NULL;
  if (op_data == NULL || view->input == NULL || view->filter == NULL ||
      view->output == NULL || (bias != NULL && view->bias == NULL)) {
    return tt_node_fail(interpreter, node, TT_ERR_BAD_STATE,
                        "a tensor or the op data has no memory");
  }
  view->multipliers = (const int32_t*)(op_data + header_size);
  view->shifts = (const int8_t*)(view->multipliers + multiplier_count);
  view->channel_step = multiplier_count > 1 ? 1 : 0;
  view->quant = quant;
  return TT_OK;
}
