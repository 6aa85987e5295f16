/* PAD and PADV2 backward: the input's gradient is the padded box cut out
 * of the output's (scaled by output scale / input scale, 1 when they
 * agree); a non-constant PADV2 fill value gets the sum over the padding.
 * Nothing is saved; no clamp (values are only moved). */
#include "kernels/common/tt_backward_helpers.h"
#include "kernels/common/tt_backward_math.h"
#include "kernels/common/tt_kernel_checks.h"

void tt_pad_grad(int32_t rank, const int32_t* input_dims, const int32_t* before,
                 const int32_t* after, float gain, const tt_grad* dy,
                 tt_grad* dx, tt_grad* value_grad) {
  if (rank <= 0) {
    if (dx != NULL) tt_grad_add(&dx[0], gain * tt_grad_value(dy[0]));
    return;
  }
  int32_t out_dims[TT_MAX_RANK];
  int32_t rows = 1;
  for (int32_t d = 0; d < rank; ++d) {
    out_dims[d] = input_dims[d] + before[d] + after[d];
    if (d + 1 < rank) rows *= out_dims[d];
  }
  const int32_t last = rank - 1;
  const int32_t width = out_dims[last];
  if (width <= 0 || rows <= 0) return;
  /* Output rows in order, as the forward kernel writes them; the rows
   * inside the box meet the input's rows in order. */
  float padding_sum = 0.0f;
  int32_t index[TT_MAX_RANK] = {0};
  int32_t in = 0;
  for (int32_t r = 0; r < rows; ++r) {
    const tt_grad* row = dy + r * width;
    bool inside = true;
    for (int32_t d = 0; d < last; ++d) {
      if (index[d] < before[d] || index[d] >= before[d] + input_dims[d]) {
        inside = false;
      }
    }
    const int32_t start = inside ? before[last] : width;
    const int32_t end = inside ? before[last] + input_dims[last] : width;
    for (int32_t k = 0; k < start; ++k) padding_sum += tt_grad_value(row[k]);
    for (int32_t k = start; k < end; ++k) {
      if (dx != NULL) tt_grad_add(&dx[in], gain * tt_grad_value(row[k]));
      ++in;
    }
    for (int32_t k = end; k < width; ++k) {
      padding_sum += tt_grad_value(row[k]);
    }
    for (int32_t d = last - 1; d >= 0; --d) {
      if (++index[d] < out_dims[d]) break;
      index[d] = 0;
    }
  }
  if (value_grad != NULL) tt_grad_add(value_grad, padding_sum);
}

/* Rank and padding amounts from the constant paddings tensor. */
static tt_status pad_geometry(tt_interpreter* it, const tt_node* node,
                              int32_t* before, int32_t* after) {
  const tt_tensor* input = tt_node_input(it, node, 0);
  const tt_tensor* paddings = tt_node_input(it, node, 1);
  const uint8_t* amounts =
      paddings != NULL ? (const uint8_t*)tt_tensor_data(it, paddings) : NULL;
  if (input == NULL || amounts == NULL || input->rank > TT_MAX_RANK ||
      paddings->type != TT_TYPE_INT32 ||
      paddings->num_elements != 2 * input->rank) {
    return tt_node_fail(it, node, TT_ERR_BAD_STATE,
                        "forward kernel is not prepared");
  }
  for (int32_t d = 0; d < input->rank; ++d) {
    before[d] = tt_load_i32(amounts + 8 * d);
    after[d] = tt_load_i32(amounts + 8 * d + 4);
    if (before[d] < 0 || after[d] < 0) {
      return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                          "negative padding in dimension %d", d);
    }
  }
  return TT_OK;
}

static tt_status pad_backward_prepare(tt_interpreter* it, const tt_node* node,
                                      const tt_layer_update* update,
                                      tt_backward_needs* needs) {
  (void)update;
  tt_backward_needs_clear(needs);
  int32_t before[TT_MAX_RANK], after[TT_MAX_RANK];
  return pad_geometry(it, node, before, after);
}

static tt_status pad_backward(tt_interpreter* it, const tt_node* node,
                              const tt_backward_io* io) {
  tt_grad* value_grad = node->num_inputs > 2 ? io->input_grads[2] : NULL;
  if (io->input_grads[0] == NULL && value_grad == NULL) return TT_OK;
  int32_t before[TT_MAX_RANK], after[TT_MAX_RANK];
  TT_RETURN_IF_ERROR(pad_geometry(it, node, before, after));
  const tt_tensor* input = tt_node_input(it, node, 0);
  tt_pad_grad(input->rank, input->dims, before, after,
              tt_backward_copy_gain(input, tt_node_output(it, node, 0)),
              io->output_grad, io->input_grads[0], value_grad);
  return TT_OK;
}

const tt_backward_kernel tt_backward_pad = {
    TT_OP_PAD,
    false,
    pad_backward_prepare,
    pad_backward,
};

const tt_backward_kernel tt_backward_padv2 = {
    TT_OP_PADV2,
    false,
    pad_backward_prepare,
    pad_backward,
};
