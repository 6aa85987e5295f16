/* DEQUANTIZE, int8 to float32: scale * (q - zero point), multiplied in
 * double and rounded once to float, as TFLM's reference does. */
#include "kernels/common/tt_kernel.h"
#include "kernels/common/tt_kernel_checks.h"

typedef struct {
  int32_t num_elements;
  float scale;
  int32_t zero_point;
} dequantize_data;

static tt_status prepare(tt_interpreter* it, tt_node* node) {
  TT_RETURN_IF_ERROR(tt_expect_io_counts(it, node, 1, 1, 1));
  const tt_tensor* input = tt_node_input(it, node, 0);
  const tt_tensor* output = tt_node_output(it, node, 0);
  TT_RETURN_IF_ERROR(tt_expect_int8_per_tensor(it, node, input, "input"));
  TT_RETURN_IF_ERROR(
      tt_expect_type(it, node, output, "output", TT_TYPE_FLOAT32));
  TT_RETURN_IF_ERROR(
      tt_expect_shape(it, node, output, "output", input->dims, input->rank));
  dequantize_data* data;
  TT_RETURN_IF_ERROR(
      tt_node_alloc_op_data(it, node, sizeof *data, (void**)&data));
  data->num_elements = input->num_elements;
  data->scale = input->scale;
  data->zero_point = input->zero_point;
  return TT_OK;
}

static tt_status eval(tt_interpreter* it, const tt_node* node) {
  const dequantize_data* d = (const dequantize_data*)tt_node_op_data(it, node);
  const int8_t* in =
      (const int8_t*)tt_tensor_data(it, tt_node_input(it, node, 0));
  uint8_t* out = (uint8_t*)tt_tensor_data(it, tt_node_output(it, node, 0));
  const double scale = (double)d->scale;
  for (int32_t i = 0; i < d->num_elements; ++i)
    tt_store_f32(out + 4 * (int64_t)i,
                 (float)(scale * (double)(in[i] - d->zero_point)));
  return TT_OK;
}

const tt_kernel tt_kernel_dequantize = {
    TT_OP_DEQUANTIZE, "DEQUANTIZE", TT_OPTIONS_DEQUANTIZE, prepare, eval,
};
