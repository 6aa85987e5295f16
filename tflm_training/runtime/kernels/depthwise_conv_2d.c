/* DEPTHWISE_CONV_2D, int8 with per-channel (or per-tensor) int8 weights,
 * bit-exact with TFLite Micro's reference kernel.
 *
 * Tensors: input [N, H, W, C], filter [1, KH, KW, C * M], optional int32
 * bias [C * M], output [N, OH, OW, C * M], where M is the depth
 * multiplier: output channel c * M + m filters input channel c. As in
 * TFLM, the filter zero point is not applied and the depth multiplier is
 * taken from the options (it must agree with the shapes). */
#include "../tt_conv_op_data.h"

/* Sum over the window of filter * (input - input zero point) for one output
 * element, reading only the input channel that output channel belongs to;
 * padding contributes nothing. No bias. */
static int32_t depthwise_accumulate(const tt_depthwise_shape* s,
                                    const tt_conv_window* w,
                                    int32_t input_offset, const int8_t* input,
                                    const int8_t* filter, int32_t batch,
                                    int32_t out_y, int32_t out_x,
                                    int32_t out_channel) {
  const int32_t in_channel = out_channel / s->depth_multiplier;
  const int32_t in_y0 = out_y * w->stride_h - w->pad_h;
  const int32_t in_x0 = out_x * w->stride_w - w->pad_w;
  int32_t acc = 0;
  for (int32_t fy = 0; fy < s->filter_h; ++fy) {
    const int32_t in_y = in_y0 + fy * w->dilation_h;
    if (in_y < 0 || in_y >= s->in_h) continue;
    for (int32_t fx = 0; fx < s->filter_w; ++fx) {
      const int32_t in_x = in_x0 + fx * w->dilation_w;
      if (in_x < 0 || in_x >= s->in_w) continue;
      const int32_t in_val =
          input[((batch * s->in_h + in_y) * s->in_w + in_x) *
                    s->in_c + in_channel];
      const int32_t f_val =
          filter[(fy * s->filter_w + fx) * s->out_c + out_channel];
      acc = tt_conv_wrapping_add(acc, f_val * (in_val + input_offset));
    }
  }
  return acc;
}

static tt_status depthwise_prepare(tt_interpreter* interpreter,
                                   tt_node* node) {
  TT_RETURN_IF_ERROR(tt_expect_io_counts(interpreter, node, 2, 3, 1));
  const tt_tensor* input = tt_node_input(interpreter, node, 0);
  const tt_tensor* filter = tt_node_input(interpreter, node, 1);
  const tt_tensor* bias = tt_node_input(interpreter, node, 2);
  const tt_tensor* output = tt_node_output(interpreter, node, 0);
  if (input == NULL || filter == NULL || output == NULL) {
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "input, filter and output are required");
  }

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
  TT_RETURN_IF_ERROR(tt_option_i32(interpreter, node,
                                   TT_DWCONV_DEPTH_MULTIPLIER, 0,
                                   &depth_multiplier));

  tt_conv_quant quant;
  TT_RETURN_IF_ERROR(
      tt_conv_prepare_io(interpreter, node, input, output, activation, &quant));
  TT_RETURN_IF_ERROR(tt_conv_expect_filter(interpreter, node, filter));
  TT_RETURN_IF_ERROR(tt_expect_rank(interpreter, node, input, "input", 4));
  TT_RETURN_IF_ERROR(tt_expect_rank(interpreter, node, filter, "filter", 4));
  TT_RETURN_IF_ERROR(tt_expect_rank(interpreter, node, output, "output", 4));
  TT_RETURN_IF_ERROR(
      tt_conv_expect_nonempty(interpreter, node, input, "input"));
  TT_RETURN_IF_ERROR(
      tt_conv_expect_nonempty(interpreter, node, filter, "filter"));
  TT_RETURN_IF_ERROR(
      tt_conv_expect_nonempty(interpreter, node, output, "output"));

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
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "filter dimension 0 is %d; it must be 1",
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
  TT_RETURN_IF_ERROR(tt_conv_prepare_window(interpreter, node, padding,
                                            s.in_h, s.in_w, s.filter_h,
                                            s.filter_w, s.out_h, s.out_w,
                                            &window));
  TT_RETURN_IF_ERROR(tt_conv_expect_bias(interpreter, node, bias, s.out_c));

  if (filter->num_zero_points != filter->num_scales) {
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "filter has %d scales but %d zero points",
                        filter->num_scales, filter->num_zero_points);
  }
  int32_t count;
  TT_RETURN_IF_ERROR(
      tt_conv_multiplier_count(interpreter, node, filter, 3, s.out_c, &count));
  void* raw;
  TT_RETURN_IF_ERROR(tt_conv_alloc_op_data(
      interpreter, node, sizeof(tt_depthwise_op_data), count, &raw));
  tt_depthwise_op_data* data = (tt_depthwise_op_data*)raw;
  int32_t* multipliers = (int32_t*)(data + 1);
  TT_RETURN_IF_ERROR(tt_conv_channel_multipliers(interpreter, node, input,
                                                 filter, output, count,
                                                 multipliers,
                                                 multipliers + count));
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
  TT_RETURN_IF_ERROR(tt_conv_eval_view_init(
      interpreter, node, sizeof(*data), data ? data->num_multipliers : 0,
      data ? &data->quant : NULL, &view));
  const tt_depthwise_shape* s = &data->shape;
  for (int32_t b = 0; b < s->batches; ++b) {
    for (int32_t y = 0; y < s->out_h; ++y) {
      for (int32_t x = 0; x < s->out_w; ++x) {
        int8_t* out_px =
            view.output + ((b * s->out_h + y) * s->out_w + x) * s->out_c;
        for (int32_t oc = 0; oc < s->out_c; ++oc) {
          const int32_t acc =
              depthwise_accumulate(s, &data->window,
                                   data->quant.input_offset, view.input,
                                   view.filter, b, y, x, oc);
          out_px[oc] = tt_conv_output_value(&view, oc, acc);
        }
      }
    }
  }
  return TT_OK;
}

const tt_kernel tt_kernel_depthwise_conv_2d = {
    TT_OP_DEPTHWISE_CONV_2D, "DEPTHWISE_CONV_2D",
    TT_OPTIONS_DEPTHWISE_CONV_2D, depthwise_prepare, depthwise_eval,
};
