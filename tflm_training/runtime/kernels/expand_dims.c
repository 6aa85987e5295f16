/* EXPAND_DIMS: the input with a size-1 dimension inserted at a constant
 * axis; the bytes are unchanged. Types as TFLM's kernel: INT8, INT16 and
 * FLOAT32. */
#include "kernels/common/tt_kernel.h"
#include "kernels/common/tt_kernel_checks.h"
#include "kernels/common/tt_strided_copy.h"
#include "model/tt_types.h"

typedef struct {
  int32_t element_size;
  tt_strided_copy_params copy; /* one contiguous row */
} expand_dims_data;

static tt_status prepare(tt_interpreter* it, tt_node* node) {
  TT_RETURN_IF_ERROR(tt_expect_io_counts(it, node, 2, 2, 1));
  const tt_tensor* input = tt_node_input(it, node, 0);
  const tt_tensor* axis = tt_node_input(it, node, 1);
  const tt_tensor* output = tt_node_output(it, node, 0);
  TT_RETURN_IF_ERROR(tt_expect_movable_io(it, node, input, output));
  TT_RETURN_IF_ERROR(tt_expect_constant_i32(it, node, axis, "axis"));
  if (axis->rank > 1 || axis->num_elements < 1) /* TFLM reads the first */
    return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                        "axis must be a scalar or a vector of at least one "
                        "value");
  const int32_t value = tt_load_i32(tt_tensor_data(it, axis));
  const int32_t resolved = value < 0 ? value + input->rank + 1 : value;
  if (input->rank >= TT_MAX_RANK)
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "the output would have rank %d; at most %d is "
                        "supported",
                        input->rank + 1, TT_MAX_RANK);
  if (resolved < 0 || resolved > input->rank)
    return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                        "axis %d is out of range for an input of rank %d",
                        value, input->rank);
  int32_t expected[TT_MAX_RANK];
  for (int32_t d = 0, i = 0; d <= input->rank; ++d)
    expected[d] = d == resolved ? 1 : input->dims[i++];
  TT_RETURN_IF_ERROR(
      tt_expect_shape(it, node, output, "output", expected, input->rank + 1));
  expand_dims_data* d;
  TT_RETURN_IF_ERROR(tt_node_alloc_op_data(it, node, sizeof *d, (void**)&d));
  d->element_size = tt_type_size(input->type);
  d->copy.rank = 1;
  d->copy.num_elements = input->num_elements;
  d->copy.dims[0] = input->num_elements;
  d->copy.steps[0] = 1;
  return TT_OK;
}

static tt_status eval(tt_interpreter* it, const tt_node* node) {
  const expand_dims_data* d =
      (const expand_dims_data*)tt_node_op_data(it, node);
  tt_strided_copy(&d->copy, d->element_size,
                  tt_tensor_data(it, tt_node_input(it, node, 0)),
                  tt_tensor_data(it, tt_node_output(it, node, 0)));
  return TT_OK;
}

const tt_kernel tt_kernel_expand_dims = {
    TT_OP_EXPAND_DIMS, "EXPAND_DIMS", TT_OPTIONS_EXPAND_DIMS, prepare, eval,
};
