/* RELU and RELU6, int8, as TFLM computes them: RELU requantizes from the
 * input's to the output's scale and clamps at the output's zero; RELU6
 * clamps in the input's quantized domain, between its zero point and the
 * quantized 6.0 (TFLM ignores the output's quantization there). */
#include "kernels/common/tt_kernel.h"
#include "kernels/common/tt_kernel_checks.h"
#include "math/tt_quant.h"

typedef struct {
  int32_t num_elements;
  int32_t input_zero_point;
  int32_t output_zero_point;
  int32_t multiplier;
  int32_t shift;
  int32_t lower;
  int32_t upper;
} relu_data;

static tt_status prepare_common(tt_interpreter* it, tt_node* node,
                                relu_data** data) {
  TT_RETURN_IF_ERROR(tt_expect_io_counts(it, node, 1, 1, 1));
  const tt_tensor* input = tt_node_input(it, node, 0);
  const tt_tensor* output = tt_node_output(it, node, 0);
  TT_RETURN_IF_ERROR(tt_expect_int8_per_tensor(it, node, input, "input"));
  TT_RETURN_IF_ERROR(tt_expect_type(it, node, output, "output", TT_TYPE_INT8));
  TT_RETURN_IF_ERROR(
      tt_expect_shape(it, node, output, "output", input->dims, input->rank));
  TT_RETURN_IF_ERROR(
      tt_node_alloc_op_data(it, node, sizeof **data, (void**)data));
  (*data)->num_elements = input->num_elements;
  (*data)->input_zero_point = input->zero_point;
  return TT_OK;
}

static tt_status prepare_relu(tt_interpreter* it, tt_node* node) {
  relu_data* data;
  TT_RETURN_IF_ERROR(prepare_common(it, node, &data));
  const tt_tensor* input = tt_node_input(it, node, 0);
  const tt_tensor* output = tt_node_output(it, node, 0);
  TT_RETURN_IF_ERROR(tt_expect_int8_per_tensor(it, node, output, "output"));
  /* The tflite-micro release we match divides the scales in double (its
   * older sources divided in float; one LSB differs in rare cases). */
  if (!tt_quantize_multiplier((double)input->scale / (double)output->scale,
                              &data->multiplier, &data->shift) ||
      data->shift > 31)
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "input scale / output scale is too large to "
                        "requantize");
  data->output_zero_point = output->zero_point;
  /* round(0 / scale) is 0: the lower bound is the zero point. */
  data->lower = output->zero_point;
  data->upper = 127;
  return TT_OK;
}

static tt_status prepare_relu6(tt_interpreter* it, tt_node* node) {
  relu_data* data;
  TT_RETURN_IF_ERROR(prepare_common(it, node, &data));
  const tt_tensor* input = tt_node_input(it, node, 0);
  /* round(6 / scale) + zero point, clamped to int8. Beyond int32 TFLM's
   * float-to-int conversion is undefined; on x86, where it is checked,
   * it gives INT32_MIN, so the bound becomes -128. */
  const float six = tt_round_float(6.0f / input->scale);
  int32_t upper = -128;
  if (six < 2147483648.0f) {
    const int64_t q = (int64_t)six + input->zero_point;
    upper = (int32_t)(q > 127 ? 127 : (q < -128 ? -128 : q));
  }
  data->lower = input->zero_point;
  data->upper = upper;
  return TT_OK;
}

static tt_status eval_relu(tt_interpreter* it, const tt_node* node) {
  const relu_data* d = (const relu_data*)tt_node_op_data(it, node);
  const int8_t* in =
      (const int8_t*)tt_tensor_data(it, tt_node_input(it, node, 0));
  int8_t* out = (int8_t*)tt_tensor_data(it, tt_node_output(it, node, 0));
  for (int32_t i = 0; i < d->num_elements; ++i) {
    const int32_t value =
        d->output_zero_point +
        tt_multiply_by_quantized_multiplier(in[i] - d->input_zero_point,
                                            d->multiplier, d->shift);
    out[i] = (int8_t)tt_clamp_i32(value, d->lower, d->upper);
  }
  return TT_OK;
}

static tt_status eval_relu6(tt_interpreter* it, const tt_node* node) {
  const relu_data* d = (const relu_data*)tt_node_op_data(it, node);
  const int8_t* in =
      (const int8_t*)tt_tensor_data(it, tt_node_input(it, node, 0));
  int8_t* out = (int8_t*)tt_tensor_data(it, tt_node_output(it, node, 0));
  for (int32_t i = 0; i < d->num_elements; ++i) {
    const int32_t v = in[i];
    out[i] = (int8_t)(v > d->upper ? d->upper : (v < d->lower ? d->lower : v));
  }
  return TT_OK;
}

const tt_kernel tt_kernel_relu = {
    TT_OP_RELU, "RELU", TT_OPTIONS_NONE, prepare_relu, eval_relu,
};

const tt_kernel tt_kernel_relu6 = {
    TT_OP_RELU6, "RELU6", TT_OPTIONS_NONE, prepare_relu6, eval_relu6,
};
