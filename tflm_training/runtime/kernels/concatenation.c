/* CONCATENATION, int8: a byte copy. TFLM never rescales here: every input
 * must already have the output's scale and zero point, and no fused
 * activation is allowed; models that need rescaling are rejected. */
#include <string.h>

#include "kernels/common/tt_kernel.h"
#include "kernels/common/tt_kernel_checks.h"

#define MAX_INPUTS 10 /* TFLM's limit on the inputs of one CONCATENATION */

typedef struct {
  int32_t axis;
  int32_t outer_size; /* product of the dimensions before the axis */
  int32_t inner_size; /* product of the dimensions after the axis */
} concatenation_data;

static tt_status check_input(tt_interpreter* it, const tt_node* node,
                             int32_t index, const tt_tensor* input,
                             const tt_tensor* output, int32_t axis,
                             int64_t* axis_total) {
  if (input == NULL)
    return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL, "input %d is missing",
                        index);
  char role[TT_ROLE_TEXT_SIZE];
  TT_RETURN_IF_ERROR(tt_expect_int8_per_tensor(
      it, node, input, tt_role_text("input", index, role)));
  if (input->scale != output->scale || input->zero_point != output->zero_point)
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "input %d does not have the output's scale and zero "
                        "point; TFLM does not rescale in CONCATENATION",
                        index);
  bool same = input->rank == output->rank;
  for (int32_t d = 0; same && d < output->rank; ++d)
    same = d == axis || input->dims[d] == output->dims[d];
  if (!same) {
    char s1[TT_SHAPE_TEXT_SIZE], s2[TT_SHAPE_TEXT_SIZE];
    return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                        "input %d shape %s does not match output shape %s "
                        "outside axis %d",
                        index, tt_shape_text(input->dims, input->rank, s1),
                        tt_shape_text(output->dims, output->rank, s2), axis);
  }
  *axis_total += input->dims[axis];
  return TT_OK;
}

static tt_status prepare(tt_interpreter* it, tt_node* node) {
  if (node->num_inputs < 1)
    return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL, "has no inputs");
  if (node->num_inputs > MAX_INPUTS)
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "has %d inputs; at most %d are supported, as in TFLM",
                        node->num_inputs, MAX_INPUTS);
  TT_RETURN_IF_ERROR(tt_expect_io_counts(it, node, 1, node->num_inputs, 1));
  const tt_tensor* output = tt_node_output(it, node, 0);
  TT_RETURN_IF_ERROR(tt_expect_int8_per_tensor(it, node, output, "output"));
  int32_t axis, activation;
  TT_RETURN_IF_ERROR(tt_option_i32(it, node, TT_CONCAT_AXIS, 0, &axis));
  TT_RETURN_IF_ERROR(tt_option_i8(it, node, TT_CONCAT_ACTIVATION,
                                  TT_ACTIVATION_NONE, &activation));
  if (activation != TT_ACTIVATION_NONE)
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "fused activation %d is not supported", activation);
  const int32_t rank = output->rank;
  const int32_t resolved = axis < 0 ? axis + rank : axis;
  if (resolved < 0 || resolved >= rank)
    return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                        "axis %d is out of range for rank %d", axis, rank);

  int64_t axis_total = 0;
  for (int32_t i = 0; i < node->num_inputs; ++i)
    TT_RETURN_IF_ERROR(check_input(it, node, i, tt_node_input(it, node, i),
                                   output, resolved, &axis_total));
  if (axis_total != output->dims[resolved])
    return tt_node_fail(
        it, node, TT_ERR_CORRUPT_MODEL,
        "inputs add up to %d along axis %d, output has %d",
        (int32_t)(axis_total > INT32_MAX ? INT32_MAX : axis_total), resolved,
        output->dims[resolved]);

  concatenation_data* data;
  TT_RETURN_IF_ERROR(
      tt_node_alloc_op_data(it, node, sizeof *data, (void**)&data));
  data->axis = resolved;
  /* With an empty output eval copies nothing (and the products below could
   * overflow); otherwise they are bounded by its element count. */
  if (output->num_elements > 0) {
    data->outer_size = 1;
    data->inner_size = 1;
    for (int32_t d = 0; d < resolved; ++d) data->outer_size *= output->dims[d];
    for (int32_t d = resolved + 1; d < rank; ++d)
      data->inner_size *= output->dims[d];
  }
  return TT_OK;
}

static tt_status eval(tt_interpreter* it, const tt_node* node) {
  const concatenation_data* d =
      (const concatenation_data*)tt_node_op_data(it, node);
  int8_t* out = (int8_t*)tt_tensor_data(it, tt_node_output(it, node, 0));
  for (int32_t k = 0; k < d->outer_size; ++k) {
    for (int32_t i = 0; i < node->num_inputs; ++i) {
      const tt_tensor* input = tt_node_input(it, node, i);
      const int32_t chunk = input->dims[d->axis] * d->inner_size;
      if (chunk == 0) continue;
      const int8_t* in = (const int8_t*)tt_tensor_data(it, input);
      memcpy(out, in + (int64_t)k * chunk, (size_t)chunk);
      out += chunk;
    }
  }
  return TT_OK;
}

const tt_kernel tt_kernel_concatenation = {
    TT_OP_CONCATENATION,
    "CONCATENATION",
    TT_OPTIONS_CONCATENATION,
    prepare,
    eval,
};
