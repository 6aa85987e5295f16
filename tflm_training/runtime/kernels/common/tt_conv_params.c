#include "kernels/common/tt_conv_params.h"

/* TensorType INT4: two weights packed per byte, not in tt_tensor_type. */
#define TT_CONV_TYPE_INT4 17

/* Bound on image sizes, window extents and strides: with each below 2^29,
 * every coordinate eval computes, out_y * stride - pad + filter_y *
 * dilation, stays well inside int32. */
#define TT_CONV_MAX_EXTENT ((int64_t)1 << 29)

tt_status tt_conv_node_tensors(tt_interpreter* interpreter, const tt_node* node,
                               const tt_tensor** input,
                               const tt_tensor** filter, const tt_tensor** bias,
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
                                  const tt_node* node, const tt_tensor* tensor,
                                  const char* role) {
  for (int32_t i = 0; i < tensor->rank; ++i) {
    if (tensor->dims[i] < 1) {
      return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                          "%s dimension %d is %d; it must be at least 1", role,
                          i, tensor->dims[i]);
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
                        "only int8",
                        role);
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
                        "RELU, RELU_N1_TO_1, RELU6)",
                        activation);
  }
  int32_t act_min, act_max;
  if (!tt_activation_range_quantized(activation, output->scale,
                                     output->zero_point, -128, 127, &act_min,
                                     &act_max) ||
      act_min > act_max) {
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "fused activation %d has no int8 range at the output "
                        "scale",
                        activation);
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
                                   const tt_node* node, const tt_tensor* input,
                                   const tt_tensor* filter,
                                   const tt_tensor* output, int32_t activation,
                                   tt_conv_quant* quant) {
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
  /* Fewer values: TFLM would read past the bias. More: TFLM runs and
   * ignores the rest, but trained biases here are one per channel. */
  if (bias->num_elements < num_channels) {
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "bias has %d values but %d output channels",
                        bias->num_elements, num_channels);
  }
  if (bias->num_elements > num_channels) {
    return tt_node_fail(interpreter, node, TT_ERR_UNSUPPORTED,
                        "bias has %d values for %d output channels; values "
                        "past the channels are not supported",
                        bias->num_elements, num_channels);
  }
  return TT_OK;
}

tt_status tt_conv_multiplier_count(tt_interpreter* interpreter,
                                   const tt_node* node, const tt_tensor* filter,
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
  /* TFLM (kernel_util.cc PopulateConvolutionQuantizationParams) only needs
   * the quantized dimension to hold as many values as there are channels;
   * scale i then goes to output channel i whatever that dimension is. */
  if (filter->quantized_dimension != quantized_dimension &&
      (filter->quantized_dimension < 0 ||
       filter->quantized_dimension >= filter->rank ||
       filter->dims[filter->quantized_dimension] != num_channels)) {
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
                                      int8_t* shift) {
  int32_t exponent;
  if (!tt_quantize_multiplier(real, multiplier, &exponent)) {
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "requantization scale of channel %d is not a finite "
                        "non-negative number",
                        channel);
  }
  /* The fixed-point multiply shifts left by up to `shift` bits first. */
  if (exponent > 30) {
    return tt_node_fail(interpreter, node, TT_ERR_UNSUPPORTED,
                        "requantization scale of channel %d (input scale * "
                        "filter scale / output scale) is 2^%d or more; it "
                        "must be below 2^30",
                        channel, exponent - 1);
  }
  *shift = (int8_t)exponent; /* at least -31 */
  return TT_OK;
}

tt_status tt_conv_filter_scale(tt_interpreter* interpreter, const tt_node* node,
                               const tt_tensor* filter, int32_t channel,
                               float* scale) {
  *scale = tt_tensor_channel_scale(interpreter, filter, channel);
  if (!(*scale >= 0.0f && *scale <= 3.40282347e38f)) {
    /* TFLM's QuantizeMultiplier takes a negative scale and runs. */
    return tt_node_fail(interpreter, node, TT_ERR_UNSUPPORTED,
                        "filter scale of channel %d is not a finite "
                        "non-negative number; such scales are not supported",
                        channel);
  }
  return TT_OK;
}

tt_status tt_conv_channel_multipliers(tt_interpreter* interpreter,
                                      const tt_node* node,
                                      const tt_tensor* input,
                                      const tt_tensor* filter,
                                      const tt_tensor* output, int32_t count,
                                      int32_t* multipliers, int8_t* shifts) {
  for (int32_t i = 0; i < count; ++i) {
    float filter_scale;
    TT_RETURN_IF_ERROR(
        tt_conv_filter_scale(interpreter, node, filter, i, &filter_scale));
    const double real =
        (double)input->scale * (double)filter_scale / (double)output->scale;
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
    return tt_node_fail(interpreter, node, TT_ERR_UNSUPPORTED,
                        "%s stride %d and dilation %d below 1 are not "
                        "supported",
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
  const int32_t expected =
      tt_window_output_size(padding, in_size, filter_size, stride, dilation);
  if (expected < 1) {
    return tt_node_fail(interpreter, node, TT_ERR_UNSUPPORTED,
                        "%s: a filter spanning %d exceeds the input size %d "
                        "with VALID padding; such windows are not supported",
                        axis, (int32_t)effective, in_size);
  }
  if (out_size != expected) {
    return tt_node_fail(interpreter, node, TT_ERR_UNSUPPORTED,
                        "output %s is %d but the window gives %d; outputs "
                        "whose size differs from the window's are not "
                        "supported",
                        axis, out_size, expected);
  }
  *pad = tt_window_padding(in_size, filter_size, stride, dilation, out_size);
  return TT_OK;
}

tt_status tt_conv_prepare_window(tt_interpreter* interpreter,
                                 const tt_node* node, int32_t padding,
                                 int32_t in_h, int32_t in_w, int32_t filter_h,
                                 int32_t filter_w, int32_t out_h, int32_t out_w,
                                 tt_conv_window* window) {
  if (padding != TT_PADDING_SAME && padding != TT_PADDING_VALID) {
    return tt_node_fail(interpreter, node, TT_ERR_UNSUPPORTED,
                        "padding %d is neither SAME nor VALID; TFLM's "
                        "unknown padding is not supported",
                        padding);
  }
  TT_RETURN_IF_ERROR(prepare_axis(interpreter, node, "height", padding, in_h,
                                  filter_h, window->stride_h,
                                  window->dilation_h, out_h, &window->pad_h));
  return prepare_axis(interpreter, node, "width", padding, in_w, filter_w,
                      window->stride_w, window->dilation_w, out_w,
                      &window->pad_w);
}

tt_status tt_conv_alloc_op_data(tt_interpreter* interpreter, tt_node* node,
                                uint32_t header_size, int32_t count,
                                void** data) {
  const uint64_t bytes = (uint64_t)header_size +
                         (uint64_t)count * (sizeof(int32_t) + sizeof(int8_t));
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
  TT_RETURN_IF_ERROR(tt_conv_multiplier_count(
      interpreter, node, filter, quantized_dimension, num_channels, count));
  TT_RETURN_IF_ERROR(
      tt_conv_alloc_op_data(interpreter, node, header_size, *count, data));
  int32_t* multipliers = (int32_t*)((uint8_t*)*data + header_size);
  return tt_conv_channel_multipliers(interpreter, node, input, filter, output,
                                     *count, multipliers,
                                     tt_conv_shifts(multipliers, *count));
}
