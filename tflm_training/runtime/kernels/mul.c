/* MUL, int8, as TFLM's reference kernel computes it: the product of the
 * two zero-point-corrected inputs is rescaled by
 * input1_scale * input2_scale / output_scale, offset by the output's zero
 * point and clamped by the fused activation. Shapes broadcast numpy-style
 * (e.g. a squeeze-excite gate [N,1,1,C] times [N,H,W,C]). */
#include "kernels/common/tt_elementwise.h"
#include "kernels/common/tt_kernel.h"
#include "kernels/common/tt_kernel_checks.h"
#include "math/tt_quant.h"

typedef struct {
  int32_t input1_offset; /* minus the zero point */
  int32_t input2_offset;
  int32_t output_offset;
  int32_t output_multiplier;
  int32_t output_shift;
  int32_t activation_min;
  int32_t activation_max;
  tt_broadcast_params shape;
} mul_data;

static tt_status prepare(tt_interpreter* it, tt_node* node) {
  TT_RETURN_IF_ERROR(tt_expect_io_counts(it, node, 2, 2, 1));
  const tt_tensor* in1 = tt_node_input(it, node, 0);
  const tt_tensor* in2 = tt_node_input(it, node, 1);
  const tt_tensor* out = tt_node_output(it, node, 0);
  TT_RETURN_IF_ERROR(tt_expect_int8_per_tensor(it, node, in1, "input 1"));
  TT_RETURN_IF_ERROR(tt_expect_int8_per_tensor(it, node, in2, "input 2"));
  TT_RETURN_IF_ERROR(tt_expect_int8_per_tensor(it, node, out, "output"));
  int32_t activation;
  TT_RETURN_IF_ERROR(tt_option_i8(it, node, TT_MUL_ACTIVATION,
                                  TT_ACTIVATION_NONE, &activation));
  mul_data* d;
  TT_RETURN_IF_ERROR(tt_node_alloc_op_data(it, node, sizeof *d, (void**)&d));
  TT_RETURN_IF_ERROR(tt_broadcast_prepare(it, node, in1, in2, out, &d->shape));
  TT_RETURN_IF_ERROR(tt_fused_activation_range(
      it, node, activation, out, &d->activation_min, &d->activation_max));
  /* The same double arithmetic as TFLM. A left shift of 32 or more would be
   * undefined there; such a multiplier is rejected. */
  const double real =
      (double)in1->scale * (double)in2->scale / (double)out->scale;
  if (!tt_quantize_multiplier(real, &d->output_multiplier, &d->output_shift) ||
      d->output_shift > 31)
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "input1 scale * input2 scale / output scale is too "
                        "large to requantize");
  d->input1_offset = -in1->zero_point;
  d->input2_offset = -in2->zero_point;
  d->output_offset = out->zero_point;
  return TT_OK;
}

static void mul_row(const int8_t* in1, int32_t step1, const int8_t* in2,
                    int32_t step2, int8_t* out, int32_t count,
                    const void* op_params) {
  const mul_data* d = (const mul_data*)op_params;
  for (int32_t k = 0; k < count; ++k) {
    /* Each factor is at most 255 in magnitude: the product fits. */
    const int32_t product = (d->input1_offset + in1[k * step1]) *
                            (d->input2_offset + in2[k * step2]);
    const int32_t result =
        d->output_offset + tt_multiply_by_quantized_multiplier(
                               product, d->output_multiplier, d->output_shift);
    out[k] = (int8_t)tt_clamp_i32(result, d->activation_min, d->activation_max);
  }
}

static tt_status eval(tt_interpreter* it, const tt_node* node) {
  const mul_data* d = (const mul_data*)tt_node_op_data(it, node);
  tt_broadcast_run(
      &d->shape, (const int8_t*)tt_tensor_data(it, tt_node_input(it, node, 0)),
      (const int8_t*)tt_tensor_data(it, tt_node_input(it, node, 1)),
      (int8_t*)tt_tensor_data(it, tt_node_output(it, node, 0)), mul_row, d);
  return TT_OK;
}

const tt_kernel tt_kernel_mul = {
    TT_OP_MUL, "MUL", TT_OPTIONS_MUL, prepare, eval,
};
