/* FULLY_CONNECTED, int8 with int8 weights quantized per tensor or per
 * output channel, bit-exact with TFLite Micro's reference kernels.
 *
 * Tensors: input of any shape whose elements form rows of D values,
 * filter [U, D], optional int32 bias [U], output with U values per row.
 * With keep_num_dims the output is the input shape with its last dimension
 * (which must be D) replaced by U; otherwise the rows are flattened.
 *
 * TFLM's two paths differ beyond the number of multipliers: the per-tensor
 * one subtracts the filter zero point and forms its scale from a float
 * product, the per-channel one ignores the zero point and multiplies in
 * double. Both are reproduced. */
#include "../tt_conv_op_data.h"

/* Dot product of one input row with one filter row, zero points removed. */
static int32_t fc_accumulate(int32_t depth, const int8_t* input_row,
                             const int8_t* filter_row, int32_t input_offset,
                             int32_t filter_offset) {
  int32_t acc = 0;
  for (int32_t d = 0; d < depth; ++d) {
    acc = tt_conv_wrapping_add(acc, ((int32_t)filter_row[d] + filter_offset) *
                                        ((int32_t)input_row[d] + input_offset));
  }
  return acc;
}

static tt_status fc_check_shapes(tt_interpreter* interpreter,
                                 const tt_node* node, const tt_tensor* input,
                                 const tt_tensor* output, bool keep_num_dims,
                                 int32_t accum_depth, int32_t units,
                                 int32_t* batches) {
  if (input->rank < 1) {
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "input is a scalar; it needs at least one dimension");
  }
  if (input->num_elements % accum_depth != 0) {
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "input has %d elements, not a multiple of the filter "
                        "depth %d", input->num_elements, accum_depth);
  }
  *batches = input->num_elements / accum_depth;
  if (output->rank < 1 || output->dims[output->rank - 1] != units) {
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "output must end in the filter's %d units", units);
  }
  if (keep_num_dims) {
    if (input->dims[input->rank - 1] != accum_depth) {
      return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                          "with keep_num_dims the input must end in the "
                          "filter depth %d, not %d", accum_depth,
                          input->dims[input->rank - 1]);
    }
    if (output->rank != input->rank) {
      return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                          "with keep_num_dims the output rank %d must equal "
                          "the input rank %d", output->rank, input->rank);
    }
    for (int32_t i = 0; i + 1 < input->rank; ++i) {
      if (output->dims[i] != input->dims[i]) {
        return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                            "with keep_num_dims output dimension %d is %d "
                            "but the input's is %d", i, output->dims[i],
                            input->dims[i]);
      }
    }
  }
  /* Without keep_num_dims TFLite writes [rows, units]; any shape holding
   * exactly that many values is accepted, as TFLM does. */
  if ((int64_t)*batches * units != output->num_elements) {
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "output has %d elements but %d rows of %d units need "
                        "%d", output->num_elements, *batches, units,
                        (int32_t)((int64_t)*batches * units));
  }
  return TT_OK;
}

/* TFLM's per-tensor scale: the input*filter product rounded to float, and
 * the bias scale required to be close to it. */
static tt_status fc_per_tensor_multiplier(tt_interpreter* interpreter,
                                          const tt_node* node,
                                          const tt_tensor* input,
                                          const tt_tensor* filter,
                                          const tt_tensor* bias,
                                          const tt_tensor* output,
                                          int32_t* multiplier,
                                          int32_t* shift) {
  float filter_scale;
  TT_RETURN_IF_ERROR(
      tt_conv_filter_scale(interpreter, node, filter, 0, &filter_scale));
  if (bias != NULL) {
    const double expected = (double)input->scale * (double)filter_scale;
    const double bias_scale =
        bias->num_scales > 0 ? (double)bias->scale : 0.0;
    const double diff =
        expected > bias_scale ? expected - bias_scale : bias_scale - expected;
    if (!(diff / (double)output->scale <= 0.02)) {
      return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                          "bias scale differs from input scale * filter "
                          "scale by more than 2%% of the output scale");
    }
  }
  const float product = input->scale * filter_scale;
  const double real = (double)product / (double)output->scale;
  return tt_conv_quantize_multiplier(interpreter, node, real, 0, multiplier,
                                     shift);
}

static tt_status fc_prepare(tt_interpreter* interpreter, tt_node* node) {
  TT_RETURN_IF_ERROR(tt_expect_io_counts(interpreter, node, 2, 3, 1));
  const tt_tensor* input = tt_node_input(interpreter, node, 0);
  const tt_tensor* filter = tt_node_input(interpreter, node, 1);
  const tt_tensor* bias = tt_node_input(interpreter, node, 2);
  const tt_tensor* output = tt_node_output(interpreter, node, 0);
  if (input == NULL || filter == NULL || output == NULL) {
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "input, filter and output are required");
  }

  int32_t activation, weights_format;
  bool keep_num_dims;
  TT_RETURN_IF_ERROR(tt_option_i8(interpreter, node, TT_FC_ACTIVATION,
                                  TT_ACTIVATION_NONE, &activation));
  TT_RETURN_IF_ERROR(tt_option_i8(interpreter, node, TT_FC_WEIGHTS_FORMAT, 0,
                                  &weights_format));
  TT_RETURN_IF_ERROR(tt_option_bool(interpreter, node, TT_FC_KEEP_NUM_DIMS,
                                    false, &keep_num_dims));
  if (weights_format != 0) {
    return tt_node_fail(interpreter, node, TT_ERR_UNSUPPORTED,
                        "weights format %d (shuffled) is not supported, only "
                        "DEFAULT", weights_format);
  }

  tt_conv_quant quant;
  TT_RETURN_IF_ERROR(
      tt_conv_prepare_io(interpreter, node, input, output, activation, &quant));
  TT_RETURN_IF_ERROR(tt_conv_expect_filter(interpreter, node, filter));
  TT_RETURN_IF_ERROR(tt_expect_rank(interpreter, node, filter, "filter", 2));
  TT_RETURN_IF_ERROR(
      tt_conv_expect_nonempty(interpreter, node, input, "input"));
  TT_RETURN_IF_ERROR(
      tt_conv_expect_nonempty(interpreter, node, filter, "filter"));
  TT_RETURN_IF_ERROR(
      tt_conv_expect_nonempty(interpreter, node, output, "output"));

  const int32_t units = filter->dims[0];
  const int32_t accum_depth = filter->dims[1];
  int32_t batches = 0;
  TT_RETURN_IF_ERROR(fc_check_shapes(interpreter, node, input, output,
                                     keep_num_dims, accum_depth, units,
                                     &batches));
  TT_RETURN_IF_ERROR(tt_conv_expect_bias(interpreter, node, bias, units));

  int32_t count;
  TT_RETURN_IF_ERROR(
      tt_conv_multiplier_count(interpreter, node, filter, 0, units, &count));
  int32_t filter_offset = 0;
  if (count == 1) {
    if (filter->zero_point < -128 || filter->zero_point > 127) {
      return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                          "filter zero point %d is outside int8",
                          filter->zero_point);
    }
    filter_offset = -filter->zero_point;
  }
  void* raw;
  TT_RETURN_IF_ERROR(tt_conv_alloc_op_data(interpreter, node,
                                           sizeof(tt_fc_op_data), count, &raw));
  tt_fc_op_data* data = (tt_fc_op_data*)raw;
  int32_t* multipliers = (int32_t*)(data + 1);
  if (count == 1) {
    TT_RETURN_IF_ERROR(fc_per_tensor_multiplier(interpreter, node, input,
                                                filter, bias, output,
                                                &multipliers[0],
                                                &multipliers[1]));
  } else {
    TT_RETURN_IF_ERROR(tt_conv_channel_multipliers(interpreter, node, input,
                                                   filter, output, count,
                                                   multipliers,
                                                   multipliers + count));
  }
  data->batches = batches;
  data->accum_depth = accum_depth;
  data->units = units;
  data->filter_offset = filter_offset;
  data->quant = quant;
  data->num_multipliers = count;
  return TT_OK;
}

static tt_status fc_eval(tt_interpreter* interpreter, const tt_node* node) {
  const tt_fc_op_data* data =
      (const tt_fc_op_data*)tt_node_op_data(interpreter, node);
  tt_conv_eval_view view;
  TT_RETURN_IF_ERROR(tt_conv_eval_view_init(
      interpreter, node, sizeof(*data), data ? data->num_multipliers : 0,
      data ? &data->quant : NULL, &view));
  const int32_t depth = data->accum_depth;
  for (int32_t b = 0; b < data->batches; ++b) {
    const int8_t* input_row = view.input + b * depth;
    int8_t* output_row = view.output + b * data->units;
    for (int32_t u = 0; u < data->units; ++u) {
      const int32_t acc =
          fc_accumulate(depth, input_row, view.filter + u * depth,
                        data->quant.input_offset, data->filter_offset);
      output_row[u] = tt_conv_output_value(&view, u, acc);
    }
  }
  return TT_OK;
}

const tt_kernel tt_kernel_fully_connected = {
    TT_OP_FULLY_CONNECTED, "FULLY_CONNECTED", TT_OPTIONS_FULLY_CONNECTED,
    fc_prepare, fc_eval,
};
