/* QUANTIZE to int8, per tensor: from float32 (round(x / scale) + zero point,
 * in float as TFLM computes it) or from int8 (a requantization to the
 * output's scale and zero point). */
#include "kernels/common/tt_kernel.h"
#include "kernels/common/tt_kernel_checks.h"
#include "math/tt_quant.h"

typedef struct {
  int32_t from_float;
  int32_t num_elements;
  float output_scale;
  int32_t output_zero_point;
  int32_t input_zero_point;
  int32_t multiplier;
  int32_t shift;
} quantize_data;

static tt_status prepare(tt_interpreter* it, tt_node* node) {
  TT_RETURN_IF_ERROR(tt_expect_io_counts(it, node, 1, 1, 1));
  const tt_tensor* input = tt_node_input(it, node, 0);
  const tt_tensor* output = tt_node_output(it, node, 0);
  if (input->type != TT_TYPE_FLOAT32 && input->type != TT_TYPE_INT8)
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "input must be FLOAT32 or INT8, got %s%s",
                        tt_type_name(input->type),
                        input->type == TT_TYPE_INT16
                            ? " (int16 activations are not supported, only "
                              "int8)"
                            : "");
  TT_RETURN_IF_ERROR(tt_expect_int8_per_tensor(it, node, output, "output"));
  TT_RETURN_IF_ERROR(
      tt_expect_shape(it, node, output, "output", input->dims, input->rank));
  quantize_data* data;
  TT_RETURN_IF_ERROR(
      tt_node_alloc_op_data(it, node, sizeof *data, (void**)&data));
  data->num_elements = output->num_elements;
  data->output_scale = output->scale;
  data->output_zero_point = output->zero_point;
  data->from_float = input->type == TT_TYPE_FLOAT32;
  if (data->from_float) return TT_OK;

  TT_RETURN_IF_ERROR(tt_expect_int8_per_tensor(it, node, input, "input"));
  data->input_zero_point = input->zero_point;
  if (!tt_quantize_multiplier((double)input->scale / (double)output->scale,
                              &data->multiplier, &data->shift) ||
      data->shift > 31)
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "input scale / output scale is too large to "
                        "requantize");
  return TT_OK;
}

/* round(x / scale) in float, converted to int32 as TFLM's reference does
 * on the host it is checked against (x86): NaN and values beyond int32
 * become INT32_MIN (the conversion is undefined in C, x86 yields that), to
 * which the zero point is then added with wraparound. */
static int32_t quantize_float(float x, float scale, int32_t zero_point) {
  const float rounded = tt_round_float(x / scale);
  int32_t q = INT32_MIN;
  if (rounded >= -2147483648.0f && rounded < 2147483648.0f)
    q = (int32_t)rounded;
  return (int32_t)((uint32_t)q + (uint32_t)zero_point);
}

static tt_status eval(tt_interpreter* it, const tt_node* node) {
  const quantize_data* d = (const quantize_data*)tt_node_op_data(it, node);
  const uint8_t* in =
      (const uint8_t*)tt_tensor_data(it, tt_node_input(it, node, 0));
  int8_t* out = (int8_t*)tt_tensor_data(it, tt_node_output(it, node, 0));
  if (d->from_float) {
    for (int32_t i = 0; i < d->num_elements; ++i) {
      const int32_t q = quantize_float(tt_load_f32(in + 4 * (int64_t)i),
                                       d->output_scale, d->output_zero_point);
      out[i] = (int8_t)tt_clamp_i32(q, -128, 127);
    }
    return TT_OK;
  }
  for (int32_t i = 0; i < d->num_elements; ++i) {
    const int32_t centered = (int32_t)(int8_t)in[i] - d->input_zero_point;
    const int32_t value =
        tt_multiply_by_quantized_multiplier(centered, d->multiplier, d->shift) +
        d->output_zero_point;
    out[i] = (int8_t)tt_clamp_i32(value, -128, 127);
  }
  return TT_OK;
}

const tt_kernel tt_kernel_quantize = {
    TT_OP_QUANTIZE, "QUANTIZE", TT_OPTIONS_QUANTIZE, prepare, eval,
};
