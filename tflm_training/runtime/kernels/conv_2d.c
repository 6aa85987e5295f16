/* CONV_2D, int8 with per-channel (or per-tensor) int8 weights, bit-exact
 * with TFLite Micro's reference kernel.
 *
 * Tensors: input [N, H, W, C_in], filter [C_out, KH, KW, C_in / groups],
 * optional int32 bias [C_out], output [N, OH, OW, C_out]. A filter depth
 * smaller than the input depth is a grouped convolution: output channel oc
 * reads the input channels of group oc / (C_out / groups). The filter zero
 * point is not applied (weights are symmetric), as in TFLM. */
#include "kernels/common/tt_conv_dsp.h"
#include "kernels/common/tt_conv_op_data.h"

/* All output channels of one output pixel, four at a time. */
static void conv_pixel(const tt_conv_shape* s, const tt_conv_geometry* g,
                       const tt_conv_eval_view* view, const int8_t* image,
                       int32_t out_y, int32_t out_x, int8_t* out_px) {
  tt_conv_taps taps = tt_conv_pixel_taps(g, out_y, out_x);
  const int32_t span = tt_conv_join_rows(&taps, g->tap_size);
  const int32_t filter_size = s->filter_h * s->filter_w * s->filter_depth;
  const int8_t* filters = view->filter + taps.filter_start;
  const int8_t* group_input = image + taps.input_start;
  for (int32_t group_end = s->filters_per_group; group_end <= s->out_c;
       group_end += s->filters_per_group) {
    for (int32_t oc = group_end - s->filters_per_group; oc < group_end;
         oc += 4) {
      const int8_t* quad[4];
      const int32_t n =
          tt_conv_quad_filters(filters, filter_size, oc, group_end, quad);
      int32_t acc[4];
      tt_conv_accumulate_quad(&taps, span, view->quant->input_offset,
                              group_input, quad, acc);
      tt_conv_output_values(view, oc, n, acc, out_px + oc);
    }
    group_input += s->filter_depth;
  }
}

static tt_status conv_prepare(tt_interpreter* interpreter, tt_node* node) {
  const tt_tensor *input, *filter, *bias, *output;
  TT_RETURN_IF_ERROR(
      tt_conv_node_tensors(interpreter, node, &input, &filter, &bias, &output));

  int32_t padding, activation;
  tt_conv_window window = {0, 0, 1, 1, 0, 0};
  TT_RETURN_IF_ERROR(tt_option_i8(interpreter, node, TT_CONV_PADDING,
                                  TT_PADDING_SAME, &padding));
  TT_RETURN_IF_ERROR(tt_option_i8(interpreter, node, TT_CONV_ACTIVATION,
                                  TT_ACTIVATION_NONE, &activation));
  TT_RETURN_IF_ERROR(
      tt_option_i32(interpreter, node, TT_CONV_STRIDE_W, 0, &window.stride_w));
  TT_RETURN_IF_ERROR(
      tt_option_i32(interpreter, node, TT_CONV_STRIDE_H, 0, &window.stride_h));
  TT_RETURN_IF_ERROR(tt_option_i32(interpreter, node, TT_CONV_DILATION_W, 1,
                                   &window.dilation_w));
  TT_RETURN_IF_ERROR(tt_option_i32(interpreter, node, TT_CONV_DILATION_H, 1,
                                   &window.dilation_h));

  tt_conv_quant quant;
  TT_RETURN_IF_ERROR(tt_conv_prepare_image_io(interpreter, node, input, filter,
                                              output, activation, &quant));

  tt_conv_shape s;
  s.batches = input->dims[0];
  s.in_h = input->dims[1];
  s.in_w = input->dims[2];
  s.in_c = input->dims[3];
  s.out_c = filter->dims[0];
  s.filter_h = filter->dims[1];
  s.filter_w = filter->dims[2];
  s.filter_depth = filter->dims[3];
  s.out_h = output->dims[1];
  s.out_w = output->dims[2];
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
  if (s.in_c % s.filter_depth != 0) {
    /* TFLM runs it, reading the first groups * filter depth channels. */
    return tt_node_fail(interpreter, node, TT_ERR_UNSUPPORTED,
                        "input depth %d is not a multiple of filter depth %d; "
                        "such grouped convolutions are not supported",
                        s.in_c, s.filter_depth);
  }
  const int32_t groups = s.in_c / s.filter_depth;
  if (s.out_c % groups != 0) {
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "%d output channels do not split into %d groups",
                        s.out_c, groups);
  }
  s.filters_per_group = s.out_c / groups;
  TT_RETURN_IF_ERROR(tt_conv_prepare_window(interpreter, node, padding, s.in_h,
                                            s.in_w, s.filter_h, s.filter_w,
                                            s.out_h, s.out_w, &window));
  TT_RETURN_IF_ERROR(tt_conv_expect_bias(interpreter, node, bias, s.out_c));

  int32_t count;
  void* raw;
  TT_RETURN_IF_ERROR(tt_conv_alloc_channel_op_data(
      interpreter, node, input, filter, output, sizeof(tt_conv_op_data), 0,
      s.out_c, &count, &raw));
  tt_conv_op_data* data = (tt_conv_op_data*)raw;
  data->shape = s;
  data->window = window;
  data->quant = quant;
  data->num_multipliers = count;
  return TT_OK;
}

static tt_status conv_eval(tt_interpreter* interpreter, const tt_node* node) {
  const tt_conv_op_data* data =
      (const tt_conv_op_data*)tt_node_op_data(interpreter, node);
  tt_conv_eval_view view;
  TT_RETURN_IF_ERROR(tt_conv_eval_view_init(interpreter, node, sizeof(*data),
                                            data ? data->num_multipliers : 0,
                                            data ? &data->quant : NULL, &view));
  const tt_conv_shape* s = &data->shape;
  const tt_conv_geometry geometry = {data->window,   s->in_h,     s->in_w,
                                     s->in_c,        s->filter_h, s->filter_w,
                                     s->filter_depth};
#if TT_HAVE_DSP
  if (tt_conv_dsp_supports(s)) {
    tt_conv_dsp_eval(s, &geometry, &view);
    return TT_OK;
  }
#endif
  const int8_t* image = view.input;
  int8_t* out_px = view.output;
  for (int32_t b = 0; b < s->batches; ++b) {
    for (int32_t y = 0; y < s->out_h; ++y) {
      for (int32_t x = 0; x < s->out_w; ++x) {
        conv_pixel(s, &geometry, &view, image, y, x, out_px);
        out_px += s->out_c;
      }
    }
    image += s->in_h * s->in_w * s->in_c;
  }
  return TT_OK;
}

const tt_kernel tt_kernel_conv_2d = {
    TT_OP_CONV_2D, "CONV_2D", TT_OPTIONS_CONV_2D, conv_prepare, conv_eval,
};
