/* CONCATENATION backward: each input gets its slice of the output's
 * gradient (inputs share the output's scale and zero point, so the values
 * were only moved). Nothing is saved; no clamp. At most
 * TT_BACKWARD_MAX_INPUTS inputs. */
#include "kernels/common/tt_backward_helpers.h"
#include "kernels/common/tt_backward_math.h"
#include "kernels/common/tt_kernel_checks.h"

void tt_concatenation_grad(int32_t outer, int32_t output_row, int32_t offset,
                           int32_t chunk, const tt_grad* dy, tt_grad* dx) {
  for (int32_t k = 0; k < outer; ++k) {
    const tt_grad* from = dy + k * output_row + offset;
    tt_grad* to = dx + k * chunk;
    for (int32_t j = 0; j < chunk; ++j)
      tt_grad_add(&to[j], tt_grad_value(from[j]));
  }
}

/* The concatenation axis, resolved against the output's rank. */
static tt_status concatenation_axis(tt_interpreter* it, const tt_node* node,
                                    int32_t* axis) {
  const tt_tensor* output = tt_node_output(it, node, 0);
  if (output == NULL || node->num_inputs < 1) {
    return tt_node_fail(it, node, TT_ERR_BAD_STATE,
                        "forward kernel is not prepared");
  }
  int32_t value;
  TT_RETURN_IF_ERROR(tt_option_i32(it, node, TT_CONCAT_AXIS, 0, &value));
  *axis = value < 0 ? value + output->rank : value;
  if (*axis < 0 || *axis >= output->rank) {
    return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                        "axis %d is out of range for rank %d", value,
                        output->rank);
  }
  for (int32_t i = 0; i < node->num_inputs; ++i) {
    const tt_tensor* input = tt_node_input(it, node, i);
    if (input == NULL || input->rank != output->rank) {
      return tt_node_fail(it, node, TT_ERR_BAD_STATE,
                          "forward kernel is not prepared");
    }
  }
  return TT_OK;
}

static tt_status concatenation_backward_prepare(tt_interpreter* it,
                                                const tt_node* node,
                                                const tt_layer_update* update,
                                                tt_backward_needs* needs) {
  (void)update;
  tt_backward_needs_clear(needs);
  if (node->num_inputs > TT_BACKWARD_MAX_INPUTS) {
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "has %d inputs; training supports at most %d",
                        node->num_inputs, TT_BACKWARD_MAX_INPUTS);
  }
  int32_t axis;
  return concatenation_axis(it, node, &axis);
}

static tt_status concatenation_backward(tt_interpreter* it, const tt_node* node,
                                        const tt_backward_io* io) {
  int32_t axis;
  TT_RETURN_IF_ERROR(concatenation_axis(it, node, &axis));
  const tt_tensor* output = tt_node_output(it, node, 0);
  if (output->num_elements == 0) return TT_OK;
  int32_t outer = 1, inner = 1;
  for (int32_t d = 0; d < axis; ++d) outer *= output->dims[d];
  for (int32_t d = axis + 1; d < output->rank; ++d) inner *= output->dims[d];
  const int32_t output_row = output->dims[axis] * inner;
  int32_t offset = 0;
  const int32_t count = node->num_inputs < TT_BACKWARD_MAX_INPUTS
                            ? node->num_inputs
                            : TT_BACKWARD_MAX_INPUTS;
  for (int32_t i = 0; i < count; ++i) {
    const int32_t chunk = tt_node_input(it, node, i)->dims[axis] * inner;
    if (io->input_grads[i] != NULL) {
      tt_concatenation_grad(outer, output_row, offset, chunk, io->output_grad,
                            io->input_grads[i]);
    }
    offset += chunk;
  }
  return TT_OK;
}

const tt_backward_kernel tt_backward_concatenation = {
    TT_OP_CONCATENATION,
    false,
    concatenation_backward_prepare,
    concatenation_backward,
};
