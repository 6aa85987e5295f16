/* MAXIMUM and MINIMUM, int8: the larger (smaller) of the two stored values,
 * shapes broadcasting numpy-style. Like TFLM, the values are compared as
 * stored, without rescaling: the converter gives both inputs and the
 * output the same quantization. */
#include "kernels/common/tt_elementwise.h"
#include "kernels/common/tt_kernel.h"
#include "kernels/common/tt_kernel_checks.h"

typedef struct {
  tt_broadcast_params shape;
} maximum_minimum_data;

static tt_status prepare(tt_interpreter* it, tt_node* node) {
  TT_RETURN_IF_ERROR(tt_expect_io_counts(it, node, 2, 2, 1));
  const tt_tensor* in1 = tt_node_input(it, node, 0);
  const tt_tensor* in2 = tt_node_input(it, node, 1);
  const tt_tensor* out = tt_node_output(it, node, 0);
  TT_RETURN_IF_ERROR(tt_expect_type(it, node, in1, "input 1", TT_TYPE_INT8));
  TT_RETURN_IF_ERROR(tt_expect_type(it, node, in2, "input 2", TT_TYPE_INT8));
  TT_RETURN_IF_ERROR(tt_expect_type(it, node, out, "output", TT_TYPE_INT8));
  maximum_minimum_data* d;
  TT_RETURN_IF_ERROR(tt_node_alloc_op_data(it, node, sizeof *d, (void**)&d));
  return tt_broadcast_prepare(it, node, in1, in2, out, &d->shape);
}

static void maximum_row(const int8_t* in1, int32_t step1, const int8_t* in2,
                        int32_t step2, int8_t* out, int32_t count,
                        const void* op_params) {
  (void)op_params;
  for (int32_t k = 0; k < count; ++k) {
    const int8_t a = in1[k * step1], b = in2[k * step2];
    out[k] = a > b ? a : b;
  }
}

static void minimum_row(const int8_t* in1, int32_t step1, const int8_t* in2,
                        int32_t step2, int8_t* out, int32_t count,
                        const void* op_params) {
  (void)op_params;
  for (int32_t k = 0; k < count; ++k) {
    const int8_t a = in1[k * step1], b = in2[k * step2];
    out[k] = a < b ? a : b;
  }
}

static tt_status run(tt_interpreter* it, const tt_node* node,
                     tt_binary_row_fn row) {
  const maximum_minimum_data* d =
      (const maximum_minimum_data*)tt_node_op_data(it, node);
  tt_broadcast_run(
      &d->shape, (const int8_t*)tt_tensor_data(it, tt_node_input(it, node, 0)),
      (const int8_t*)tt_tensor_data(it, tt_node_input(it, node, 1)),
      (int8_t*)tt_tensor_data(it, tt_node_output(it, node, 0)), row, NULL);
  return TT_OK;
}

static tt_status eval_maximum(tt_interpreter* it, const tt_node* node) {
  return run(it, node, maximum_row);
}

static tt_status eval_minimum(tt_interpreter* it, const tt_node* node) {
  return run(it, node, minimum_row);
}

const tt_kernel tt_kernel_maximum = {
    TT_OP_MAXIMUM, "MAXIMUM", TT_OPTIONS_MAXIMUM_MINIMUM, prepare, eval_maximum,
};

const tt_kernel tt_kernel_minimum = {
    TT_OP_MINIMUM, "MINIMUM", TT_OPTIONS_MAXIMUM_MINIMUM, prepare, eval_minimum,
};
