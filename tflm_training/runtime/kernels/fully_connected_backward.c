/* FULLY_CONNECTED backward: dX = dY W_real (all units), then for each
 * selected unit its weight gradient dW[u] = sum_rows dY[:, u] X_real and
 * bias gradient sum_rows dY[:, u], applied at once (tt_update_channel).
 * dX is computed first, with the weights of the forward pass.
 *
 * Saved: input 0 only when weights train. Scratch: one unit's weight
 * gradient (depth floats) when weights train. Clamp: the fused activation
 * range, which includes int8 saturation. */
#include "../tt_backward_helpers.h"
#include "../tt_backward_math.h"
#include "../tt_kernel_checks.h"
#include "../tt_plan.h"

void tt_fc_input_grad(int32_t batches, int32_t depth, int32_t units,
                      const int8_t* filter, int32_t filter_offset,
                      const void* scales, int32_t scale_step,
                      const float* dy, float* dx) {
  const uint8_t* scale_bytes = (const uint8_t*)scales;
  for (int32_t b = 0; b < batches; ++b) {
    const float* dy_row = dy + b * units;
    float* dx_row = dx + b * depth;
    for (int32_t u = 0; u < units; ++u) {
      const float g = dy_row[u] * tt_load_f32(scale_bytes + u * scale_step);
      if (g == 0.0f) continue;
      const int8_t* w = filter + u * depth;
      for (int32_t d = 0; d < depth; ++d) {
        dx_row[d] += g * (float)((int32_t)w[d] + filter_offset);
      }
    }
  }
}

void tt_fc_channel_grad(int32_t batches, int32_t depth, int32_t units,
                        int32_t unit, const int8_t* input,
                        int32_t input_zero_point, float input_scale,
                        const float* dy, float* weight_grad,
                        float* bias_grad) {
  if (weight_grad != NULL) {
    for (int32_t d = 0; d < depth; ++d) weight_grad[d] = 0.0f;
  }
  float bias_sum = 0.0f;
  for (int32_t b = 0; b < batches; ++b) {
    const float g = dy[b * units + unit];
    bias_sum += g;
    if (weight_grad == NULL || g == 0.0f) continue;
    const int8_t* x = input + b * depth;
    for (int32_t d = 0; d < depth; ++d) {
      weight_grad[d] += g * (float)((int32_t)x[d] - input_zero_point);
    }
  }
  if (weight_grad != NULL) {
    for (int32_t d = 0; d < depth; ++d) weight_grad[d] *= input_scale;
  }
  if (bias_grad != NULL) *bias_grad = bias_sum;
}

typedef struct {
  const tt_fc_op_data* data;
  const int8_t* input;
  int32_t input_zero_point;
  float input_scale;
  const float* dy;
} fc_grad_context;

static void fc_channel(const void* context, int32_t channel,
                       float* weight_grad, float* bias_grad) {
  const fc_grad_context* c = (const fc_grad_context*)context;
  tt_fc_channel_grad(c->data->batches, c->data->accum_depth, c->data->units,
                     channel, c->input, c->input_zero_point, c->input_scale,
                     c->dy, weight_grad, bias_grad);
}

static tt_status fc_backward_prepare(tt_interpreter* it, const tt_node* node,
                                     const tt_layer_update* update,
                                     tt_backward_needs* needs) {
  tt_backward_needs_clear(needs);
  const tt_fc_op_data* data = (const tt_fc_op_data*)tt_node_op_data(it, node);
  if (data == NULL || node->num_inputs < 2) {
    return tt_node_fail(it, node, TT_ERR_BAD_STATE,
                        "forward kernel is not prepared");
  }
  tt_backward_clamp(needs, data->quant.act_min, data->quant.act_max);
  return tt_backward_prepare_update(
      it, node, update, tt_node_input(it, node, 1),
      tt_node_input(it, node, 2), data->units, data->accum_depth, needs);
}

static tt_status fc_backward(tt_interpreter* it, const tt_node* node,
                             const tt_backward_io* io) {
  const tt_fc_op_data* data = (const tt_fc_op_data*)tt_node_op_data(it, node);
  const tt_tensor* input = tt_node_input(it, node, 0);
  const tt_tensor* filter = tt_node_input(it, node, 1);
  const int8_t* filter_data = (const int8_t*)tt_tensor_data(it, filter);
  const int8_t* input_data = (const int8_t*)tt_tensor_data(it, input);
  if (data == NULL || filter_data == NULL || io->output_grad == NULL) {
    return tt_node_fail(it, node, TT_ERR_BAD_STATE,
                        "backward has no filter or output gradient");
  }
  if (io->input_grads[0] != NULL) {
    const void* scales;
    int32_t step;
    tt_backward_scales(it, filter, &scales, &step);
    tt_fc_input_grad(data->batches, data->accum_depth, data->units,
                     filter_data, data->filter_offset, scales, step,
                     io->output_grad, io->input_grads[0]);
  }
  if (io->update == NULL) return TT_OK;
  if (io->update->kind == TT_UPDATE_WEIGHTS && input_data == NULL) {
    return tt_node_fail(it, node, TT_ERR_BAD_STATE,
                        "the saved input has no memory");
  }
  const fc_grad_context context = {data, input_data, input->zero_point,
                                   input->scale, io->output_grad};
  const tt_channel_layout layout = {data->accum_depth, 1};
  return tt_backward_update_channels(it, node, io->update, &layout,
                                     io->scratch, fc_channel, &context);
}

const tt_backward_kernel tt_backward_fully_connected = {
    TT_OP_FULLY_CONNECTED, true, fc_backward_prepare, fc_backward,
};
