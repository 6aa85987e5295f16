/* DEPTHWISE_CONV_2D, int8 with per-channel (or per-tensor) int8 weights,
 * bit-exact with TFLite Micro's reference kernel.
 *
 * Tensors: input [N, H, W, C], filter [1, KH, KW, C * M], optional int32
 * bias [C * M], output [N, OH, OW, C * M], where M is the depth
 * multiplier: output channel c * M + m filters input channel c. As in
 * TFLM, the filter zero point is not applied and the depth multiplier is
 * taken from the options (it must agree with the shapes). */
#include "kernels/common/tt_conv_op_data.h"
#include "kernels/common/tt_depthwise_dsp.h"

/* acc + filter * (input - input zero point), wrapping. */
static inline int32_t depthwise_mac(int32_t acc, int8_t filter, int8_t input,
                                    int32_t input_offset) {
  return tt_conv_wrapping_add(
      acc, (int32_t)filter * ((int32_t)input + input_offset));
}

/* Sum over the taps of filter * (input - input zero point) for one output
 * channel: input points at its input channel in the first tap's pixel,
 * filter at its value in the first tap. No bias. A row's walk stops on its
 * last tap instead of stepping past it, so no pointer leaves its tensor
 * (a row of taps is never empty). */
static int32_t depthwise_accumulate(const tt_conv_taps* taps,
                                    int32_t input_offset, const int8_t* input,
                                    const int8_t* filter) {
  int32_t acc = 0;
  for (int32_t row = 0; row < taps->rows; ++row) {
    const int8_t* in = input + row * taps->input_row_step;
    const int8_t* f = filter + row * taps->filter_row_step;
    const int8_t* f_last = f + (taps->cols - 1) * taps->filter_col_step;
    for (;;) {
      acc = depthwise_mac(acc, *f, *in, input_offset);
      if (f == f_last) break;
      in += taps->input_col_step;
      f += taps->filter_col_step;
    }
  }
  return acc;
}

/* depthwise_accumulate of four adjacent output channels that read four
 * adjacent input channels (depth multiplier 1), into acc[0 .. 3]: four
 * accumulators in registers share the walk over the taps. */
static void depthwise_accumulate_quad(const tt_conv_taps* taps,
                                      int32_t input_offset, const int8_t* input,
                                      const int8_t* filter, int32_t acc[4]) {
  int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  for (int32_t row = 0; row < taps->rows; ++row) {
    const int8_t* in = input + row * taps->input_row_step;
    const int8_t* f = filter + row * taps->filter_row_step;
    const int8_t* f_last = f + (taps->cols - 1) * taps->filter_col_step;
    for (;;) {
      a0 = depthwise_mac(a0, f[0], in[0], input_offset);
      a1 = depthwise_mac(a1, f[1], in[1], input_offset);
      a2 = depthwise_mac(a2, f[2], in[2], input_offset);
      a3 = depthwise_mac(a3, f[3], in[3], input_offset);
      if (f == f_last) break;
      in += taps->input_col_step;
      f += taps->filter_col_step;
    }
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
}

/* Output channels first .. out_c - 1 of one output pixel: four at a time
 * with depth multiplier 1, the rest one by one. */
static void depthwise_pixel(const tt_depthwise_shape* s,
                            const tt_conv_geometry* g,
                            const tt_conv_eval_view* view, const int8_t* image,
                            int32_t out_y, int32_t out_x, int32_t first,
                            int8_t* out_px) {
  const tt_conv_taps taps = tt_conv_pixel_taps(g, out_y, out_x);
  const int32_t input_offset = view->quant->input_offset;
  const int8_t* input = image + taps.input_start;
  const int8_t* filter = view->filter + taps.filter_start;
  int32_t oc = first;
  if (s->depth_multiplier == 1) {
    for (; oc + 4 <= s->out_c; oc += 4) {
      int32_t acc[4];
      depthwise_accumulate_quad(&taps, input_offset, input + oc, filter + oc,
                                acc);
      tt_conv_output_values(view, oc, 4, acc, out_px + oc);
    }
  }
  int32_t in_channel = oc / s->depth_multiplier;
  int32_t m = oc % s->depth_multiplier;
  for (; oc < s->out_c; ++oc) {
    const int32_t acc = depthwise_accumulate(&taps, input_offset,
                                             input + in_channel, filter + oc);
    tt_conv_output_values(view, oc, 1, &acc, out_px + oc);
    if (++m == s->depth_multiplier) {
      m = 0;
      ++in_channel;
    }
  }
}

static tt_status depthwise_prepare(tt_interpreter* interpreter, tt_node* node) {
  const tt_tensor *input, *filter, *bias, *output;
  TT_RETURN_IF_ERROR(
      tt_conv_node_tensors(interpreter, node, &input, &filter, &bias, &output));

  int32_t padding, activation, depth_multiplier;
  tt_conv_window window = {0, 0, 1, 1, 0, 0};
  TT_RETURN_IF_ERROR(tt_option_i8(interpreter, node, TT_DWCONV_PADDING,
                                  TT_PADDING_SAME, &padding));
  TT_RETURN_IF_ERROR(tt_option_i8(interpreter, node, TT_DWCONV_ACTIVATION,
                                  TT_ACTIVATION_NONE, &activation));
  TT_RETURN_IF_ERROR(tt_option_i32(interpreter, node, TT_DWCONV_STRIDE_W, 0,
                                   &window.stride_w));
  TT_RETURN_IF_ERROR(tt_option_i32(interpreter, node, TT_DWCONV_STRIDE_H, 0,
                                   &window.stride_h));
  TT_RETURN_IF_ERROR(tt_option_i32(interpreter, node, TT_DWCONV_DILATION_W, 1,
                                   &window.dilation_w));
  TT_RETURN_IF_ERROR(tt_option_i32(interpreter, node, TT_DWCONV_DILATION_H, 1,
                                   &window.dilation_h));
  TT_RETURN_IF_ERROR(tt_option_i32(
      interpreter, node, TT_DWCONV_DEPTH_MULTIPLIER, 0, &depth_multiplier));

  tt_conv_quant quant;
  TT_RETURN_IF_ERROR(tt_conv_prepare_image_io(interpreter, node, input, filter,
                                              output, activation, &quant));

  tt_depthwise_shape s;
  s.batches = input->dims[0];
  s.in_h = input->dims[1];
  s.in_w = input->dims[2];
  s.in_c = input->dims[3];
  s.filter_h = filter->dims[1];
  s.filter_w = filter->dims[2];
  s.out_c = filter->dims[3];
  s.out_h = output->dims[1];
  s.out_w = output->dims[2];
  s.depth_multiplier = depth_multiplier;
  if (filter->dims[0] != 1) {
    /* TFLM reads only the filter's first slice and runs. */
    return tt_node_fail(interpreter, node, TT_ERR_UNSUPPORTED,
                        "filter dimension 0 is %d; filters whose dimension 0 "
                        "is not 1 are not supported",
                        filter->dims[0]);
  }
  if (output->dims[0] != s.batches) {
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "output batch is %d but input batch is %d",
                        output->dims[0], s.batches);
  }
  if (output->dims[3] != s.out_c) {
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "output has %d channels but the filter has %d",
                        output->dims[3], s.out_c);
  }
  /* TFLM keeps the multiplier in an int16. */
  if (depth_multiplier < 1 || depth_multiplier > 32767 ||
      (int64_t)s.in_c * depth_multiplier != s.out_c) {
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "depth multiplier %d does not turn %d input channels "
                        "into %d output channels",
                        depth_multiplier, s.in_c, s.out_c);
  }
  TT_RETURN_IF_ERROR(tt_conv_prepare_window(interpreter, node, padding, s.in_h,
                                            s.in_w, s.filter_h, s.filter_w,
                                            s.out_h, s.out_w, &window));
  TT_RETURN_IF_ERROR(tt_conv_expect_bias(interpreter, node, bias, s.out_c));

  /* TFLM requires the filter's zero points to exist; one stands for every
   * channel (micro_allocator.cc broadcasts it to the scales' count, so
   * depthwise_conv_common.cc's equal-sizes check holds). */
  if (filter->num_zero_points != filter->num_scales &&
      filter->num_zero_points != 1) {
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "filter has %d scales but %d zero points",
                        filter->num_scales, filter->num_zero_points);
  }
  int32_t count;
  void* raw;
  TT_RETURN_IF_ERROR(tt_conv_alloc_channel_op_data(
      interpreter, node, input, filter, output, sizeof(tt_depthwise_op_data), 3,
      s.out_c, &count, &raw));
  tt_depthwise_op_data* data = (tt_depthwise_op_data*)raw;
  data->shape = s;
  data->window = window;
  data->quant = quant;
  data->num_multipliers = count;
  return TT_OK;
}

static tt_status depthwise_eval(tt_interpreter* interpreter,
                                const tt_node* node) {
  const tt_depthwise_op_data* data =
      (const tt_depthwise_op_data*)tt_node_op_data(interpreter, node);
  tt_conv_eval_view view;
  TT_RETURN_IF_ERROR(tt_conv_eval_view_init(interpreter, node, sizeof(*data),
                                            data ? data->num_multipliers : 0,
                                            data ? &data->quant : NULL, &view));
  const tt_depthwise_shape* s = &data->shape;
  const tt_conv_geometry geometry = {data->window, s->in_h,     s->in_w,
                                     s->in_c,      s->filter_h, s->filter_w,
                                     s->out_c};
  int32_t first = 0; /* channels before it are done */
#if TT_HAVE_DSP
  first = tt_depthwise_dsp_channels(s);
  if (first > 0) tt_depthwise_dsp_eval(s, &data->window, &view);
  if (first == s->out_c) return TT_OK;
#endif
  const int8_t* image = view.input;
  int8_t* out_px = view.output;
  for (int32_t b = 0; b < s->batches; ++b) {
    for (int32_t y = 0; y < s->out_h; ++y) {
      for (int32_t x = 0; x < s->out_w; ++x) {
        depthwise_pixel(s, &geometry, &view, image, y, x, first, out_px);
        out_px += s->out_c;
      }
    }
    image += s->in_h * s->in_w * s->in_c;
  }
  return TT_OK;
}

const tt_kernel tt_kernel_depthwise_conv_2d = {
    TT_OP_DEPTHWISE_CONV_2D, "DEPTHWISE_CONV_2D", TT_OPTIONS_DEPTHWISE_CONV_2D,
    depthwise_prepare,       depthwise_eval,
};
