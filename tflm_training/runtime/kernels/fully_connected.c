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
#include "kernels/common/tt_conv_dsp.h"
#include "kernels/common/tt_conv_op_data.h"

/* Signed 32-bit multiplication that wraps, like tt_conv_wrapping_add. */
static int32_t wrapping_mul(int32_t a, int32_t b) {
  return (int32_t)((uint32_t)a * (uint32_t)b);
}

/* The filter zero point's share of every unit's accumulator for one input
 * row, filter_offset * sum(input + input_offset): the accumulator
 * sum((filter + filter_offset) * (input + input_offset)) splits into
 * sum(filter * (input + input_offset)) plus that, and wrapping int32
 * arithmetic keeps the split exact. */
static int32_t fc_filter_offset_term(int32_t depth, const int8_t* input_row,
                                     int32_t input_offset,
                                     int32_t filter_offset) {
  if (filter_offset == 0) return 0;
  int32_t sum = 0;
  for (int32_t d = 0; d < depth; ++d) {
    sum = tt_conv_wrapping_add(sum, (int32_t)input_row[d] + input_offset);
  }
  return wrapping_mul(filter_offset, sum);
}

static tt_status fc_check_shapes(tt_interpreter* interpreter,
                                 const tt_node* node, const tt_tensor* input,
                                 const tt_tensor* output, bool keep_num_dims,
                                 int32_t accum_depth, int32_t units,
                                 int32_t* batches) {
  /* TFLM's kernel takes its rows from the output (reference
   * fully_connected.h: batches = output elements / output depth) and
   * Prepare checks no shapes. When those rows, times the filter depth, fit
   * in the input, TFLM runs the model: a shape rule below is then a
   * feature we lack. Otherwise TFLM reads past the input: corrupt. */
  const bool ends_in_units =
      output->rank >= 1 && output->dims[output->rank - 1] == units;
  const tt_status code =
      ends_in_units && (int64_t)(output->num_elements / units) * accum_depth <=
                           (int64_t)input->num_elements
          ? TT_ERR_UNSUPPORTED
          : TT_ERR_CORRUPT_MODEL;
  if (input->rank < 1) {
    return tt_node_fail(interpreter, node, code,
                        "input is a scalar; it needs at least one dimension");
  }
  if (input->num_elements % accum_depth != 0) {
    return tt_node_fail(interpreter, node, code,
                        "input has %d elements, not a multiple of the filter "
                        "depth %d",
                        input->num_elements, accum_depth);
  }
  *batches = input->num_elements / accum_depth;
  if (output->rank < 1 || output->dims[output->rank - 1] != units) {
    return tt_node_fail(interpreter, node, TT_ERR_CORRUPT_MODEL,
                        "output must end in the filter's %d units", units);
  }
  if (keep_num_dims) {
    if (input->dims[input->rank - 1] != accum_depth) {
      return tt_node_fail(interpreter, node, code,
                          "with keep_num_dims the input must end in the "
                          "filter depth %d, not %d",
                          accum_depth, input->dims[input->rank - 1]);
    }
    if (output->rank != input->rank) {
      return tt_node_fail(interpreter, node, code,
                          "with keep_num_dims the output rank %d must equal "
                          "the input rank %d",
                          output->rank, input->rank);
    }
    for (int32_t i = 0; i + 1 < input->rank; ++i) {
      if (output->dims[i] != input->dims[i]) {
        return tt_node_fail(interpreter, node, code,
                            "with keep_num_dims output dimension %d is %d "
                            "but the input's is %d",
                            i, output->dims[i], input->dims[i]);
      }
    }
  }
  /* Without keep_num_dims TFLite writes [rows, units]; any shape holding
   * exactly that many values is accepted, as TFLM does. */
  if ((int64_t)*batches * units != output->num_elements) {
    return tt_node_fail(interpreter, node, code,
                        "output has %d elements but %d rows of %d units need "
                        "%d",
                        output->num_elements, *batches, units,
                        (int32_t)((int64_t)*batches * units));
  }
  return TT_OK;
}

/* TFLM's per-tensor scale: the input*filter product rounded to float, and
 * the bias scale required to be close to it. */
static tt_status fc_per_tensor_multiplier(
    tt_interpreter* interpreter, const tt_node* node, const tt_tensor* input,
    const tt_tensor* filter, const tt_tensor* bias, const tt_tensor* output,
    int32_t* multiplier, int8_t* shift) {
  float filter_scale;
  TT_RETURN_IF_ERROR(
      tt_conv_filter_scale(interpreter, node, filter, 0, &filter_scale));
  if (bias != NULL) {
    const double expected = (double)input->scale * (double)filter_scale;
    const double bias_scale = bias->num_scales > 0 ? (double)bias->scale : 0.0;
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
  const tt_tensor *input, *filter, *bias, *output;
  TT_RETURN_IF_ERROR(
      tt_conv_node_tensors(interpreter, node, &input, &filter, &bias, &output));

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
                        "DEFAULT",
                        weights_format);
  }

  tt_conv_quant quant;
  TT_RETURN_IF_ERROR(
      tt_conv_prepare_io(interpreter, node, input, output, activation, &quant));
  TT_RETURN_IF_ERROR(tt_conv_expect_filter(interpreter, node, filter));
  TT_RETURN_IF_ERROR(tt_expect_rank(interpreter, node, filter, "filter", 2));
  TT_RETURN_IF_ERROR(
      tt_conv_expect_nonempty_io(interpreter, node, input, filter, output));

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
      /* TFLM runs it (fully_connected_common.cc takes it as int32). */
      return tt_node_fail(interpreter, node, TT_ERR_UNSUPPORTED,
                          "filter zero point %d is outside int8; such zero "
                          "points are not supported",
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
    TT_RETURN_IF_ERROR(fc_per_tensor_multiplier(
        interpreter, node, input, filter, bias, output, &multipliers[0],
        tt_conv_shifts(multipliers, 1)));
  } else {
    TT_RETURN_IF_ERROR(tt_conv_channel_multipliers(
        interpreter, node, input, filter, output, count, multipliers,
        tt_conv_shifts(multipliers, count)));
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
  TT_RETURN_IF_ERROR(tt_conv_eval_view_init(interpreter, node, sizeof(*data),
                                            data ? data->num_multipliers : 0,
                                            data ? &data->quant : NULL, &view));
  const int32_t depth = data->accum_depth;
  const int32_t input_offset = data->quant.input_offset;
  /* An input row is a single tap of `depth` values. */
  const tt_conv_taps row = {.rows = 1, .cols = 1};
#if TT_HAVE_DSP
  const int32_t rows_at_once = tt_fc_dsp_rows(depth);
  if (rows_at_once > 0) {
    for (int32_t b = 0; b < data->batches; b += rows_at_once) {
      const int32_t count = b + 1 < data->batches ? rows_at_once : 1;
      int32_t terms[2] = {0, 0};
      for (int32_t i = 0; i < count; ++i) {
        terms[i] = fc_filter_offset_term(depth, view.input + (b + i) * depth,
                                         input_offset, data->filter_offset);
      }
      tt_fc_dsp_eval_rows(&view, depth, data->units, b, count, terms);
    }
    return TT_OK;
  }
#endif
  for (int32_t b = 0; b < data->batches; ++b) {
    const int8_t* input_row = view.input + b * depth;
    int8_t* output_row = view.output + b * data->units;
    const int32_t offset_term = fc_filter_offset_term(
        depth, input_row, input_offset, data->filter_offset);
    for (int32_t u = 0; u < data->units; u += 4) {
      const int8_t* quad[4];
      const int32_t n =
          tt_conv_quad_filters(view.filter, depth, u, data->units, quad);
      int32_t acc[4];
      tt_conv_accumulate_quad(&row, depth, input_offset, input_row, quad, acc);
      for (int32_t i = 0; i < n; ++i) {
        acc[i] = tt_conv_wrapping_add(acc[i], offset_term);
      }
      tt_conv_output_values(&view, u, n, acc, output_row + u);
    }
  }
  return TT_OK;
}

const tt_kernel tt_kernel_fully_connected = {
    TT_OP_FULLY_CONNECTED,
    "FULLY_CONNECTED",
    TT_OPTIONS_FULLY_CONNECTED,
    fc_prepare,
    fc_eval,
};
