/* LOGISTIC (sigmoid) and TANH, int8, as TFLM's reference integer kernels
 * compute them: the input minus its zero point is scaled into Q4.27 by a
 * multiplier derived from the input scale, the function is evaluated in
 * gemmlowp-style fixed point (tt_fixedpoint) to Q0.31 and rounded to the
 * output. Inputs beyond the radius where Q4.27 would overflow saturate.
 *
 * Like TFLM, the output's quantization is implied, not read: LOGISTIC
 * writes scale 1/256 with zero point -128 (TFLM checks only the zero
 * point), TANH scale 1/128 with zero point 0 (TFLM checks neither). */
#include "kernels/common/tt_elementwise.h"
#include "kernels/common/tt_kernel.h"
#include "kernels/common/tt_kernel_checks.h"
#include "math/tt_fixedpoint.h"
#include "math/tt_quant.h"

#define INPUT_INTEGER_BITS 4

typedef struct {
  int32_t num_elements;
  int32_t input_zero_point;
  int32_t input_range_radius; /* |input - zero point| from here saturates */
  int32_t input_multiplier;
  int32_t input_left_shift;
} logistic_tanh_data;

static tt_status prepare(tt_interpreter* it, tt_node* node) {
  const tt_tensor* input;
  const tt_tensor* output;
  TT_RETURN_IF_ERROR(tt_unary_int8_prepare(it, node, &input, &output));
  logistic_tanh_data* d;
  TT_RETURN_IF_ERROR(tt_node_alloc_op_data(it, node, sizeof *d, (void**)&d));
  d->num_elements = input->num_elements;
  d->input_zero_point = input->zero_point;

  /* input_scale * 2^27 split by frexp into a Q31 multiplier and a shift,
   * without QuantizeMultiplier's adjustments, as TFLM does. The fraction
   * has float's 24 significant bits, so rounding it to 31 bits is exact
   * and stays below 2^31. */
  int32_t shift;
  const double fraction = tt_frexp(
      (double)input->scale * (double)(1 << (31 - INPUT_INTEGER_BITS)), &shift);
  d->input_multiplier = (int32_t)tt_round_double(fraction * 2147483648.0);
  /* The radius is floor((2^4 - 1) * 2^27 / 2^shift): 0 from a shift of 31
   * on (every input saturates). Below a shift of 0 it exceeds int32, which
   * TFLM does not handle. */
  if (shift < 0)
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "the input scale is too small (below 2^-28) for the "
                        "int8 fixed-point kernel");
  const int64_t max_input_rescaled = (((int64_t)1 << INPUT_INTEGER_BITS) - 1)
                                     << (31 - INPUT_INTEGER_BITS);
  d->input_range_radius =
      shift >= 31 ? 0 : (int32_t)(max_input_rescaled >> shift);
  d->input_left_shift = shift >= 31 ? 31 : shift;
  return TT_OK;
}

static tt_status prepare_logistic(tt_interpreter* it, tt_node* node) {
  TT_RETURN_IF_ERROR(prepare(it, node));
  const tt_tensor* output = tt_node_output(it, node, 0);
  if (output->num_scales == 0 || output->zero_point != -128)
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "output must be quantized with zero point -128 (and "
                        "scale 1/256), as TFLM requires");
  return TT_OK;
}

/* The input's Q4.27 value, or -1 / +1 when it saturates low / high. */
static int32_t to_q4(int32_t q, const logistic_tanh_data* d,
                     int32_t* saturated) {
  const int32_t input = q - d->input_zero_point;
  *saturated = 0;
  if (input <= -d->input_range_radius) {
    *saturated = -1;
    return 0;
  }
  if (input >= d->input_range_radius) {
    *saturated = 1;
    return 0;
  }
  return tt_multiply_by_quantized_multiplier(input, d->input_multiplier,
                                             d->input_left_shift);
}

static tt_status eval_logistic(tt_interpreter* it, const tt_node* node) {
  const logistic_tanh_data* d =
      (const logistic_tanh_data*)tt_node_op_data(it, node);
  const int8_t* in =
      (const int8_t*)tt_tensor_data(it, tt_node_input(it, node, 0));
  int8_t* out = (int8_t*)tt_tensor_data(it, tt_node_output(it, node, 0));
  for (int32_t i = 0; i < d->num_elements; ++i) {
    int32_t saturated;
    const int32_t q4 = to_q4(in[i], d, &saturated);
    if (saturated != 0) {
      out[i] = saturated < 0 ? -128 : 127;
      continue;
    }
    /* Q0.31 to Q0.8 (scale 1/256), then the zero point -128. */
    const int32_t q0 = tt_fp_logistic(q4, INPUT_INTEGER_BITS);
    out[i] = (int8_t)tt_clamp_i32(tt_rounding_divide_by_pot(q0, 23) - 128, -128,
                                  127);
  }
  return TT_OK;
}

static tt_status eval_tanh(tt_interpreter* it, const tt_node* node) {
  const logistic_tanh_data* d =
      (const logistic_tanh_data*)tt_node_op_data(it, node);
  const int8_t* in =
      (const int8_t*)tt_tensor_data(it, tt_node_input(it, node, 0));
  int8_t* out = (int8_t*)tt_tensor_data(it, tt_node_output(it, node, 0));
  for (int32_t i = 0; i < d->num_elements; ++i) {
    int32_t saturated;
    const int32_t q4 = to_q4(in[i], d, &saturated);
    if (saturated != 0) {
      out[i] = saturated < 0 ? -128 : 127;
      continue;
    }
    /* Q0.31 to Q0.7 (scale 1/128, zero point 0). */
    const int32_t q0 = tt_fp_tanh(q4, INPUT_INTEGER_BITS);
    out[i] = (int8_t)tt_clamp_i32(tt_rounding_divide_by_pot(q0, 24), -128, 127);
  }
  return TT_OK;
}

const tt_kernel tt_kernel_logistic = {
    TT_OP_LOGISTIC,   "LOGISTIC",    TT_OPTIONS_NONE,
    prepare_logistic, eval_logistic,
};

const tt_kernel tt_kernel_tanh = {
    TT_OP_TANH, "TANH", TT_OPTIONS_NONE, prepare, eval_tanh,
};
