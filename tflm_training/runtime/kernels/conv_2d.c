/* CONV_2D, int8 with per-channel (or per-tensor) int8 weights, bit-exact
 * with TFLite Micro's reference kernel.
 *
 * Tensors: input [N, H, W, C_in], filter [C_out, KH, KW, C_in / groups],
 * optional int32 bias [C_out], output [N, OH, OW, C_out]. A filter depth
 * smaller than the input depth is a grouped convolution: output channel oc
 * reads the input channels of group oc / (C_out / groups). The filter zero
 * point is not applied (weights are symmetric), as in TFLM. */
#include "../tt_conv_op_data.h"

/* Sum over the receptive field of filter * (input - input zero point) for
 * one output element; padding contributes nothing. No bias. */
static int32_t conv_accumulate(const tt_conv_shape* s, const tt_conv_window* w,
                               int32_t input_offset, const int8_t* input,
                               const int8_t* filter, int32_t batch,
                               int32_t out_y, int32_t out_x,
                               int32_t out_channel) {
  const int32_t group = out_channel / s->filters_per_group;
  const int32_t in_y0 = out_y * w->stride_h - w->pad_h;
  const int32_t in_x0 = out_x * w->stride_w - w->pad_w;
  const int8_t* filter_oc =
      filter + out_channel * s->filter_h * s->filter_w * s->filter_depth;
  int32_t acc = 0;
  for (int32_t fy = 0; fy < s->filter_h; ++fy) {
    const int32_t in_y = in_y0 + fy * w->dilation_h;
    if (in_y < 0 || in_y >= s->in_h) continue;
    for (int32_t fx = 0; fx < s->filter_w; ++fx) {
      const int32_t in_x = in_x0 + fx * w->dilation_w;
      if (in_x < 0 || in_x >= s->in_w) continue;
      const int8_t* in_px =
          input + ((batch * s->in_h + in_y) * s->in_w + in_x) * s->in_c +
          group * s->filter_depth;
      const int8_t* f_px =
          filter_oc + (fy * s->filter_w + fx) * s->filter_depth;
      for (int32_t c = 0; c < s->filter_depth; ++c) {
        acc = tt_conv_wrapping_add(
            acc, (int32_t)f_px[c] * ((int32_t)in_px[c] + input_offset));
      }
    }
  }
  return acc;
}

static tt_status conv_prepare(tt_interpreter* interpreter, tt_node* node) {
  TT_RETURN_IF_ERROR(tt_expect_io_counts(interpreter, node, 2, 3, 1));
  const tt_tensor* input = tt_node_input(interpreter, node, 0);
  const tt_tensor* filter = tt_node_input(interpreter, node, 1);
  const tt_tensor* bias = tt_node_input(interpreter, node, 2);
  const tt_tensor* output = tt_node_output(interpreter, node, 0);
  if (input == NULL || filter == NULL || output == NULL) {
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "input, filter and output are required");
  }

  int32_t padding, activation;
  tt_conv_window window = {0, 0, 1, 1, 0, 0};
  TT_RETURN_IF_ERROR(tt_option_i8(interpreter, node, TT_CONV_PADDING,
                                  TT_PADDING_SAME, &padding));
  TT_RETURN_IF_ERROR(tt_option_i8(interpreter, node, TT_CONV_ACTIVATION,
                                  TT_ACTIVATION_NONE, &activation));
  TT_RETURN_IF_ERROR(tt_option_i32(interpreter, node, TT_CONV_STRIDE_W, 0,
                                   &window.stride_w));
  TT_RETURN_IF_ERROR(tt_option_i32(interpreter, node, TT_CONV_STRIDE_H, 0,
                                   &window.stride_h));
  TT_RETURN_IF_ERROR(tt_option_i32(interpreter, node, TT_CONV_DILATION_W, 1,
                                   &window.dilation_w));
  TT_RETURN_IF_ERROR(tt_option_i32(interpreter, node, TT_CONV_DILATION_H, 1,
                                   &window.dilation_h));

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
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "input depth %d is not a multiple of filter depth %d",
                        s.in_c, s.filter_depth);
  }
  const int32_t groups = s.in_c / s.filter_depth;
  if (s.out_c % groups != 0) {
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "%d output channels do not split into %d groups",
                        s.out_c, groups);
  }
  s.filters_per_group = s.out_c / groups;
  TT_RETURN_IF_ERROR(tt_conv_prepare_window(interpreter, node, padding,
                                            s.in_h, s.in_w, s.filter_h,
                                            s.filter_w, s.out_h, s.out_w,
                                            &window));
  TT_RETURN_IF_ERROR(tt_conv_expect_bias(interpreter, node, bias, s.out_c));

  int32_t count;
  TT_RETURN_IF_ERROR(
      tt_conv_multiplier_count(interpreter, node, filter, 0, s.out_c, &count));
  void* raw;
  TT_RETURN_IF_ERROR(tt_conv_alloc_op_data(
      interpreter, node, sizeof(tt_conv_op_data), count, &raw));
  tt_conv_op_data* data = (tt_conv_op_data*)raw;
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

static tt_status conv_eval(tt_interpreter* interpreter, const tt_node* node) {
  const tt_conv_op_data* data =
      (const tt_conv_op_data*)tt_node_op_data(interpreter, node);
  tt_conv_eval_view view;
  TT_RETURN_IF_ERROR(tt_conv_eval_view_init(
      interpreter, node, sizeof(*data), data ? data->num_multipliers : 0,
      data ? &data->quant : NULL, &view));
  const tt_conv_shape* s = &data->shape;
  for (int32_t b = 0; b < s->batches; ++b) {
    for (int32_t y = 0; y < s->out_h; ++y) {
      for (int32_t x = 0; x < s->out_w; ++x) {
        int8_t* out_px =
            view.output + ((b * s->out_h + y) * s->out_w + x) * s->out_c;
        for (int32_t oc = 0; oc < s->out_c; ++oc) {
          const int32_t acc =
              conv_accumulate(s, &data->window, data->quant.input_offset,
                              view.input, view.filter, b, y, x, oc);
          out_px[oc] = tt_conv_output_value(&view, oc, acc);
        }
      }
    }
  }
  return TT_OK;
}

const tt_kernel tt_kernel_conv_2d = {
    TT_OP_CONV_2D, "CONV_2D", TT_OPTIONS_CONV_2D, conv_prepare, conv_eval,
};
