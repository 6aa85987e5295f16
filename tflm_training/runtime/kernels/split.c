/* SPLIT and SPLIT_V: the input cut along a constant axis into the outputs,
 * in order. Like TFLM, the pieces' sizes come from the output shapes
 * (SPLIT: all equal; SPLIT_V: any, its size_splits input is not read). A
 * pure data move for INT8, INT16, INT32 and FLOAT32. */
#include <string.h>

#include "kernels/common/tt_kernel.h"
#include "kernels/common/tt_kernel_checks.h"
#include "model/tt_types.h"

typedef struct {
  int32_t input_index; /* SPLIT: 1 (after the axis), SPLIT_V: 0 */
  int32_t axis;
  int32_t outer_size;  /* product of the dimensions before the axis */
  int32_t inner_bytes; /* bytes of one index along the axis */
} split_data;

static tt_status read_axis(tt_interpreter* it, const tt_node* node,
                           const tt_tensor* axis, int32_t rank,
                           int32_t* resolved) {
  TT_RETURN_IF_ERROR(tt_expect_constant_i32(it, node, axis, "axis"));
  if (axis->num_elements < 1) /* TFLM reads the first value */
    return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                        "the axis tensor is empty");
  const int32_t value = tt_load_i32(tt_tensor_data(it, axis));
  *resolved = value < 0 ? value + rank : value;
  if (*resolved < 0 || *resolved >= rank)
    return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                        "axis %d is out of range for an input of rank %d",
                        value, rank);
  return TT_OK;
}

static tt_status prepare_split(tt_interpreter* it, tt_node* node,
                               int32_t input_index, int32_t axis_index,
                               bool equal_sizes) {
  if (node->num_outputs < 1)
    return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL, "has no outputs");
  const int32_t num_inputs = input_index == 0 ? 3 : 2;
  TT_RETURN_IF_ERROR(
      tt_expect_io_counts(it, node, num_inputs, num_inputs, node->num_outputs));
  const tt_tensor* input = tt_node_input(it, node, input_index);
  const int32_t type = input->type;
  if (type != TT_TYPE_INT8 && type != TT_TYPE_INT16 && type != TT_TYPE_INT32 &&
      type != TT_TYPE_FLOAT32)
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "input type %s is not supported (INT8, INT16, INT32 "
                        "or FLOAT32)",
                        tt_type_name(type));
  int32_t axis = 0;
  TT_RETURN_IF_ERROR(read_axis(it, node, tt_node_input(it, node, axis_index),
                               input->rank, &axis));
  int64_t axis_total = 0;
  for (int32_t i = 0; i < node->num_outputs; ++i) {
    const tt_tensor* output = tt_node_output(it, node, i);
    char role[TT_ROLE_TEXT_SIZE];
    tt_role_text("output", i, role);
    TT_RETURN_IF_ERROR(tt_expect_type(it, node, output, role, type));
    int32_t expected[TT_MAX_RANK];
    for (int32_t d = 0; d < input->rank; ++d) expected[d] = input->dims[d];
    expected[axis] = equal_sizes ? input->dims[axis] / node->num_outputs
                     : output->rank == input->rank ? output->dims[axis]
                                                   : 0;
    TT_RETURN_IF_ERROR(
        tt_expect_shape(it, node, output, role, expected, input->rank));
    axis_total += output->dims[axis];
  }
  if (axis_total != input->dims[axis])
    return tt_node_fail(
        it, node, TT_ERR_CORRUPT_MODEL,
        "the outputs add up to %d along axis %d, the input "
        "has %d",
        (int32_t)(axis_total > INT32_MAX ? INT32_MAX : axis_total), axis,
        input->dims[axis]);
  split_data* d;
  TT_RETURN_IF_ERROR(tt_node_alloc_op_data(it, node, sizeof *d, (void**)&d));
  d->input_index = input_index;
  d->axis = axis;
  /* With an empty input nothing is copied (and the products could
   * overflow); otherwise they are bounded by its size. */
  if (input->num_elements > 0) {
    d->outer_size = 1;
    d->inner_bytes = tt_type_size(type);
    for (int32_t i = 0; i < axis; ++i) d->outer_size *= input->dims[i];
    for (int32_t i = axis + 1; i < input->rank; ++i)
      d->inner_bytes *= input->dims[i];
  }
  return TT_OK;
}

/* TFLM counts the pieces by the outputs and never reads num_splits. */
static tt_status prepare_split_equal(tt_interpreter* it, tt_node* node) {
  return prepare_split(it, node, /*input_index=*/1, /*axis_index=*/0,
                       /*equal_sizes=*/true);
}

static tt_status prepare_split_v(tt_interpreter* it, tt_node* node) {
  return prepare_split(it, node, /*input_index=*/0, /*axis_index=*/2,
                       /*equal_sizes=*/false);
}

static tt_status eval(tt_interpreter* it, const tt_node* node) {
  const split_data* d = (const split_data*)tt_node_op_data(it, node);
  const uint8_t* in = (const uint8_t*)tt_tensor_data(
      it, tt_node_input(it, node, d->input_index));
  for (int32_t k = 0; k < d->outer_size; ++k) {
    for (int32_t i = 0; i < node->num_outputs; ++i) {
      const tt_tensor* output = tt_node_output(it, node, i);
      const int32_t chunk = output->dims[d->axis] * d->inner_bytes;
      if (chunk == 0) continue;
      uint8_t* out = (uint8_t*)tt_tensor_data(it, output);
      memcpy(out + (int64_t)k * chunk, in, (size_t)chunk);
      in += chunk;
    }
  }
  return TT_OK;
}

const tt_kernel tt_kernel_split = {
    TT_OP_SPLIT, "SPLIT", TT_OPTIONS_SPLIT, prepare_split_equal, eval,
};

const tt_kernel tt_kernel_split_v = {
    TT_OP_SPLIT_V, "SPLIT_V", TT_OPTIONS_SPLIT_V, prepare_split_v, eval,
};
