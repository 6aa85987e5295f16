#include "tt_conv_params.h"

#include "tt_dsp.h"

/* TensorType INT4: two weights packed per byte, not in tt_tensor_type. */
#define TT_CONV_TYPE_INT4 17

/* Bound on image sizes, window extents and strides: with each below 2^29,
 * every coordinate eval computes, out_y * stride - pad + filter_y *
 * dilation, stays well inside int32. */
#define TT_CONV_MAX_EXTENT ((int64_t)1 << 29)

tt_status tt_conv_node_tensors(tt_interpreter* interpreter,
                               const tt_node* node, const tt_tensor** input,
                               const tt_tensor** filter,
                               const tt_tensor** bias,
                               const tt_tensor** output) {
  TT_RETURN_IF_ERROR(tt_expect_io_counts(interpreter, node, 2, 3, 1));
  *input = tt_node_input(interpreter, node, 0);
  *filter = tt_node_input(interpreter, node, 1);
  *bias = tt_node_input(interpreter, node, 2);
  *output = tt_node_output(interpreter, node, 0);
  if (*input == NULL || *filter == NULL || *output == NULL) {
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "input, filter and output are required");
  }
  return TT_OK;
}

tt_status tt_conv_expect_nonempty(tt_interpreter* interpreter,
                                  const tt_node* node,
                                  const tt_tensor* tensor, const char* role) {
  for (int32_t i = 0; i < tensor->rank; ++i) {
    if (tensor->dims[i] < 1) {
      return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                          "%s dimension %d is %d; it must be at least 1",
                          role, i, tensor->dims[i]);
    }
  }
  return TT_OK;
}

tt_status tt_conv_expect_nonempty_io(tt_interpreter* interpreter,
                                     const tt_node* node,
                                     const tt_tensor* input,
                                     const tt_tensor* filter,
                                     const tt_tensor* output) {
  TT_RETURN_IF_ERROR(
      tt_conv_expect_nonempty(interpreter, node, input, "input"));
  TT_RETURN_IF_ERROR(
      tt_conv_expect_nonempty(interpreter, node, filter, "filter"));
  return tt_conv_expect_nonempty(interpreter, node, output, "output");
}

/* tt_expect_int8_per_tensor, with a clearer word for 16-bit activations. */
static tt_status expect_int8_activation(tt_interpreter* interpreter,
                                        const tt_node* node,
                                        const tt_tensor* tensor,
                                        const char* role) {
  if (tensor->type == TT_TYPE_INT16) {
    return tt_node_fail(interpreter, node, TT_ERR_UNSUPPORTED,
                        "%s is INT16: 16-bit activations are not supported, "
                        "only int8", role);
  }
  return tt_expect_int8_per_tensor(interpreter, node, tensor, role);
}

tt_status tt_conv_prepare_io(tt_interpreter* interpreter, const tt_node* node,
                             const tt_tensor* input, const tt_tensor* output,
                             int32_t activation, tt_conv_quant* quant) {
  TT_RETURN_IF_ERROR(expect_int8_activation(interpreter, node, input, "input"));
  TT_RETURN_IF_ERROR(
      expect_int8_activation(interpreter, node, output, "output"));

  if (activation != TT_ACTIVATION_NONE && activation != TT_ACTIVATION_RELU &&
      activation != TT_ACTIVATION_RELU_N1_TO_1 &&
      activation != TT_ACTIVATION_RELU6) {
    return tt_node_fail(interpreter, node, TT_ERR_UNSUPPORTED,
                        "fused activation %d is not supported (only NONE, "
                        "RELU, RELU_N1_TO_1, RELU6)", activation);
  }
  int32_t act_min, act_max;
  if (!tt_activation_range_quantized(activation, output->scale,
                                     output->zero_point, -128, 127, &act_min,
                                     &act_max) ||
      act_min > act_max) {
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "fused activation %d has no int8 range at the output "
                        "scale", activation);
  }
  quant->input_offset = -input->zero_point;
  quant->output_offset = output->zero_point;
  quant->act_min = act_min;
  quant->act_max = act_max;
  return TT_OK;
}

tt_status tt_conv_expect_filter(tt_interpreter* interpreter,
                                const tt_node* node, const tt_tensor* filter) {
  if (filter->type == TT_CONV_TYPE_INT4) {
    return tt_node_fail(interpreter, node, TT_ERR_UNSUPPORTED,
                        "filter is packed INT4; 4-bit weights are not "
                        "supported, only int8");
  }
  if (filter->type != TT_TYPE_INT8) {
    return tt_node_fail(interpreter, node, TT_ERR_UNSUPPORTED,
                        "filter has type %s; only int8 weights are supported",
                        tt_type_name(filter->type));
  }
  if (filter->num_scales < 1) {
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "filter has no quantization parameters");
  }
  return TT_OK;
}

tt_status tt_conv_prepare_image_io(tt_interpreter* interpreter,
                                   const tt_node* node,
                                   const tt_tensor* input,
                                   const tt_tensor* filter,
                                   const tt_tensor* output,
                                   int32_t activation, tt_conv_quant* quant) {
  TT_RETURN_IF_ERROR(
      tt_conv_prepare_io(interpreter, node, input, output, activation, quant));
  TT_RETURN_IF_ERROR(tt_conv_expect_filter(interpreter, node, filter));
  TT_RETURN_IF_ERROR(tt_expect_rank(interpreter, node, input, "input", 4));
  TT_RETURN_IF_ERROR(tt_expect_rank(interpreter, node, filter, "filter", 4));
  TT_RETURN_IF_ERROR(tt_expect_rank(interpreter, node, output, "output", 4));
  return tt_conv_expect_nonempty_io(interpreter, node, input, filter, output);
}

tt_status tt_conv_expect_bias(tt_interpreter* interpreter, const tt_node* node,
                              const tt_tensor* bias, int32_t num_channels) {
  if (bias == NULL) return TT_OK;
  if (bias->type == TT_TYPE_INT64) {
    return tt_node_fail(interpreter, node, TT_ERR_UNSUPPORTED,
                        "bias is INT64, which only 16-bit activations use; "
                        "int8 ops need INT32");
  }
  if (bias->type != TT_TYPE_INT32) {
    return tt_node_fail(interpreter, node, TT_ERR_UNSUPPORTED,
                        "bias has type %s; int8 ops need INT32",
                        tt_type_name(bias->type));
  }
  TT_RETURN_IF_ERROR(tt_conv_expect_nonempty(interpreter, node, bias, "bias"));
  if (bias->num_elements != num_channels) {
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "bias has %d values but %d output channels",
                        bias->num_elements, num_channels);
  }
  return TT_OK;
}

tt_status tt_conv_multiplier_count(tt_interpreter* interpreter,
                                   const tt_node* node,
                                   const tt_tensor* filter,
                                   int32_t quantized_dimension,
                                   int32_t num_channels, int32_t* count) {
  *count = 0;
  if (filter->num_scales == 1) {
    *count = 1;
    return TT_OK;
  }
  if (filter->num_scales != num_channels) {
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "filter has %d scales but %d output channels",
                        filter->num_scales, num_channels);
  }
  if (filter->quantized_dimension != quantized_dimension) {
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "filter is quantized along dimension %d; output "
                        "channels are dimension %d",
                        filter->quantized_dimension, quantized_dimension);
  }
  *count = num_channels;
  return TT_OK;
}

tt_status tt_conv_quantize_multiplier(tt_interpreter* interpreter,
                                      const tt_node* node, double real,
                                      int32_t channel, int32_t* multiplier,
                                      int32_t* shift) {
  if (!tt_quantize_multiplier(real, multiplier, shift)) {
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "requantization scale of channel %d is not a finite "
                        "non-negative number", channel);
  }
  /* The fixed-point multiply shifts left by up to `shift` bits first. */
  if (*shift > 30) {
    return tt_node_fail(interpreter, node, TT_ERR_UNSUPPORTED,
                        "requantization scale of channel %d (input scale * "
                        "filter scale / output scale) is 2^%d or more; it "
                        "must be below 2^30", channel, *shift - 1);
  }
  return TT_OK;
}

tt_status tt_conv_filter_scale(tt_interpreter* interpreter,
                               const tt_node* node, const tt_tensor* filter,
                               int32_t channel, float* scale) {
  *scale = tt_tensor_channel_scale(interpreter, filter, channel);
  if (!(*scale >= 0.0f && *scale <= 3.40282347e38f)) {
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "filter scale of channel %d is not a finite "
                        "non-negative number", channel);
  }
  return TT_OK;
}

tt_status tt_conv_channel_multipliers(tt_interpreter* interpreter,
                                      const tt_node* node,
                                      const tt_tensor* input,
                                      const tt_tensor* filter,
                                      const tt_tensor* output, int32_t count,
                                      int32_t* multipliers, int32_t* shifts) {
  for (int32_t i = 0; i < count; ++i) {
    float filter_scale;
    TT_RETURN_IF_ERROR(
        tt_conv_filter_scale(interpreter, node, filter, i, &filter_scale));
    const double real = (double)input->scale * (double)filter_scale /
                        (double)output->scale;
    TT_RETURN_IF_ERROR(tt_conv_quantize_multiplier(
        interpreter, node, real, i, &multipliers[i], &shifts[i]));
  }
  return TT_OK;
}

/* Output size and leading padding of one axis, TFLite's rules. */
static tt_status prepare_axis(tt_interpreter* interpreter, const tt_node* node,
                              const char* axis, int32_t padding,
                              int32_t in_size, int32_t filter_size,
                              int32_t stride, int32_t dilation,
                              int32_t out_size, int32_t* pad) {
  if (stride < 1 || dilation < 1) {
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "%s stride %d and dilation %d must be at least 1",
                        axis, stride, dilation);
  }
  const int64_t effective = ((int64_t)filter_size - 1) * dilation + 1;
  if (in_size > TT_CONV_MAX_EXTENT || effective > TT_CONV_MAX_EXTENT ||
      stride > TT_CONV_MAX_EXTENT) {
    return tt_node_fail(interpreter, node, TT_ERR_UNSUPPORTED,
                        "%s window is too large (input %d, filter %d, "
                        "dilation %d, stride %d)",
                        axis, in_size, filter_size, dilation, stride);
  }
  const int32_t expected = tt_window_output_size(padding, in_size, filter_size,
                                                 stride, dilation);
  if (expected < 1) {
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "%s: a filter spanning %d exceeds the input size %d "
                        "with VALID padding",
                        axis, (int32_t)effective, in_size);
  }
  if (out_size != expected) {
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "output %s is %d but the window gives %d", axis,
                        out_size, expected);
  }
  *pad = tt_window_padding(in_size, filter_size, stride, dilation, out_size);
  return TT_OK;
}

tt_status tt_conv_prepare_window(tt_interpreter* interpreter,
                                 const tt_node* node, int32_t padding,
                                 int32_t in_h, int32_t in_w, int32_t filter_h,
                                 int32_t filter_w, int32_t out_h,
                                 int32_t out_w, tt_conv_window* window) {
  if (padding != TT_PADDING_SAME && padding != TT_PADDING_VALID) {
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "padding %d is neither SAME nor VALID", padding);
  }
  TT_RETURN_IF_ERROR(prepare_axis(interpreter, node, "height", padding, in_h,
                                  filter_h, window->stride_h,
                                  window->dilation_h, out_h, &window->pad_h));
  return prepare_axis(interpreter, node, "width", padding, in_w, filter_w,
                      window->stride_w, window->dilation_w, out_w,
                      &window->pad_w);
}

/* The taps of one window axis that land inside the input: of `taps` taps,
 * `dilation` apart, the first at input coordinate `origin`, those in
 * [0, size) are taps *first .. *first + count - 1. Returns count. */
static int32_t valid_axis_taps(int32_t origin, int32_t dilation,
                               int32_t size, int32_t taps, int32_t* first) {
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
  tt_conv_taps t;
  t.rows = valid_axis_taps(origin_y, w->dilation_h, g->in_h, g->filter_h,
                           &first_y);
  t.cols = valid_axis_taps(origin_x, w->dilation_w, g->in_w, g->filter_w,
                           &first_x);
  if (t.rows == 0 || t.cols == 0) {
    const tt_conv_taps none = {0};
    return none;
  }
  /* A step is only set when it joins two taps inside the input: then it is
   * less than the image size, while a huge dilation could overflow. */
  t.input_row_step = t.rows > 1 ? w->dilation_h * g->in_w * g->in_c : 0;
  t.input_col_step = t.cols > 1 ? w->dilation_w * g->in_c : 0;
  t.filter_row_step = g->filter_w * g->tap_size;
  t.filter_col_step = g->tap_size;
  const int32_t in_y = origin_y + first_y * w->dilation_h;
  const int32_t in_x = origin_x + first_x * w->dilation_w;
  t.input_start = (in_y * g->in_w + in_x) * g->in_c;
  t.filter_start = (first_y * g->filter_w + first_x) * g->tap_size;
  return t;
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

tt_status tt_conv_alloc_op_data(tt_interpreter* interpreter, tt_node* node,
                                uint32_t header_size, int32_t count,
                                void** data) {
  const uint64_t bytes =
      (uint64_t)header_size + (uint64_t)count * 2u * sizeof(int32_t);
  if (count < 1 || bytes > UINT32_MAX) {
    return tt_node_fail(interpreter, node, TT_ERR_UNSUPPORTED,
                        "%d output channels is too many", count);
  }
  return tt_node_alloc_op_data(interpreter, node, (uint32_t)bytes, data);
}

tt_status tt_conv_alloc_channel_op_data(
    tt_interpreter* interpreter, tt_node* node, const tt_tensor* input,
    const tt_tensor* filter, const tt_tensor* output, uint32_t header_size,
    int32_t quantized_dimension, int32_t num_channels, int32_t* count,
    void** data) {
  TT_RETURN_IF_ERROR(tt_conv_multiplier_count(interpreter, node, filter,
                                              quantized_dimension,
                                              num_channels, count));
  TT_RETURN_IF_ERROR(
      tt_conv_alloc_op_data(interpreter, node, header_size, *count, data));
  int32_t* multipliers = (int32_t*)((uint8_t*)*data + header_size);
  return tt_conv_channel_multipliers(interpreter, node, input, filter, output,
                                     *count, multipliers,
                                     multipliers + *count);
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
  view->shifts = view->multipliers + multiplier_count;
  view->channel_step = multiplier_count > 1 ? 1 : 0;
  view->quant = quant;
  return TT_OK;
}
