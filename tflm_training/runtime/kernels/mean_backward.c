/* MEAN backward: each input gets its output's gradient divided by the
 * number of inputs per output (the rescaling to the output's scale is the
 * identity in real values). Nothing is saved. Clamp: int8 saturation,
 * unless input and output share scale and zero point. */
#include "kernels/common/tt_backward_helpers.h"
#include "kernels/common/tt_backward_math.h"
#include "kernels/common/tt_kernel_checks.h"

void tt_mean_grad(int32_t rank, const int32_t* input_dims,
                  uint32_t reduced_mask, const tt_grad* dy, tt_grad* dx) {
  /* Each input dimension's element stride in the output (0 if reduced),
   * and the number of inputs per output. */
  int32_t out_strides[TT_MAX_RANK];
  int32_t stride = 1;
  int32_t count = 1;
  int32_t total = 1;
  for (int32_t d = rank - 1; d >= 0; --d) {
    if (input_dims[d] <= 0) return;
    total *= input_dims[d];
    if ((reduced_mask >> d) & 1u) {
      out_strides[d] = 0;
      count *= input_dims[d];
    } else {
      out_strides[d] = stride;
      stride *= input_dims[d];
    }
  }
  const float n = (float)count;
  int32_t index[TT_MAX_RANK] = {0};
  int32_t out = 0;
  for (int32_t i = 0; i < total; ++i) {
    tt_grad_add(&dx[i], tt_grad_value(dy[out]) / n);
    for (int32_t d = rank - 1; d >= 0; --d) {
      out += out_strides[d];
      if (++index[d] < input_dims[d]) break;
      out -= out_strides[d] * input_dims[d];
      index[d] = 0;
    }
  }
}

/* The reduced dimensions, from the constant axis tensor, as the forward
 * kernel resolves them (negative axes count from the end, repeats are
 * ignored, a scalar input reduces nothing). */
static tt_status mean_axes(tt_interpreter* it, const tt_node* node,
                           uint32_t* mask) {
  const tt_tensor* input = tt_node_input(it, node, 0);
  const tt_tensor* axis = tt_node_input(it, node, 1);
  const tt_tensor* output = tt_node_output(it, node, 0);
  *mask = 0;
  const uint8_t* values =
      axis != NULL ? (const uint8_t*)tt_tensor_data(it, axis) : NULL;
  if (input == NULL || output == NULL || values == NULL ||
      axis->type != TT_TYPE_INT32 || input->rank > TT_MAX_RANK) {
    return tt_node_fail(it, node, TT_ERR_BAD_STATE,
                        "forward kernel is not prepared");
  }
  if (input->rank == 0) return TT_OK;
  for (int32_t i = 0; i < axis->num_elements; ++i) {
    const int32_t value = tt_load_i32(values + 4 * i);
    const int32_t d = value < 0 ? value + input->rank : value;
    if (d < 0 || d >= input->rank) {
      return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                          "axis %d is out of range for an input of rank %d",
                          value, input->rank);
    }
    *mask |= 1u << d;
  }
  return TT_OK;
}

static tt_status mean_backward_prepare(tt_interpreter* it, const tt_node* node,
                                       const tt_layer_update* update,
                                       tt_backward_needs* needs) {
  (void)update;
  tt_backward_needs_clear(needs);
  uint32_t mask;
  TT_RETURN_IF_ERROR(mean_axes(it, node, &mask));
  tt_backward_clamp_requantize(needs, tt_node_input(it, node, 0),
                               tt_node_output(it, node, 0));
  return TT_OK;
}

static tt_status mean_backward(tt_interpreter* it, const tt_node* node,
                               const tt_backward_io* io) {
  if (io->input_grads[0] == NULL) return TT_OK;
  uint32_t mask;
  TT_RETURN_IF_ERROR(mean_axes(it, node, &mask));
  const tt_tensor* input = tt_node_input(it, node, 0);
  tt_mean_grad(input->rank, input->dims, mask, io->output_grad,
               io->input_grads[0]);
  return TT_OK;
}

const tt_backward_kernel tt_backward_mean = {
    TT_OP_MEAN,
    false,
    mean_backward_prepare,
    mean_backward,
};
