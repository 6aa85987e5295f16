/* FULLY_CONNECTED backward: dX = dY W_real (all units), then for each
 * selected unit its weight gradient dW[u] = sum_rows dY[:, u] X_real and
 * bias gradient sum_rows dY[:, u], applied at once (tt_update_channel).
 * dX is computed first, with the weights of the forward pass.
 *
 * Saved: input 0 only when weights train. Scratch: one unit's weight
 * gradient (depth floats) when weights train. Clamp: the fused activation
 * range, which includes int8 saturation. */
#include "kernels/common/tt_backward_helpers.h"
#include "kernels/common/tt_backward_math.h"

void tt_fc_input_grad(int32_t batches, int32_t depth, int32_t units,
                      const int8_t* filter, int32_t filter_offset,
                      const void* scales, int32_t scale_step, const tt_grad* dy,
                      tt_grad* dx) {
  const uint8_t* scale_bytes = (const uint8_t*)scales;
  for (int32_t b = 0; b < batches; ++b) {
    const tt_grad* dy_row = dy + b * units;
    tt_grad* dx_row = dx + b * depth;
    for (int32_t u = 0; u < units; ++u) {
      const float g =
          tt_grad_value(dy_row[u]) * tt_load_f32(scale_bytes + u * scale_step);
      if (g == 0.0f) continue;
      const int8_t* w = filter + u * depth;
      for (int32_t d = 0; d < depth; ++d) {
        tt_grad_add(&dx_row[d], g * (float)((int32_t)w[d] + filter_offset));
      }
    }
  }
}

void tt_fc_channel_grad(int32_t batches, int32_t depth, int32_t units,
                        int32_t unit, const int8_t* input,
                        int32_t input_zero_point, float input_scale,
                        const tt_grad* dy, float* weight_grad,
                        float* bias_grad) {
  if (weight_grad != NULL) {
    for (int32_t d = 0; d < depth; ++d) weight_grad[d] = 0.0f;
  }
  float bias_sum = 0.0f;
  for (int32_t b = 0; b < batches; ++b) {
    const float g = tt_grad_value(dy[b * units + unit]);
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

static void fc_shape(const void* op_data, tt_layer_shape* shape) {
  const tt_fc_op_data* data = (const tt_fc_op_data*)op_data;
  shape->act_min = data->quant.act_min;
  shape->act_max = data->quant.act_max;
  shape->num_channels = data->units;
  shape->weights_per_channel = data->accum_depth;
  shape->layout.channel_step = data->accum_depth;
  shape->layout.weight_stride = 1;
}

static void fc_input(const void* op_data, const int8_t* filter,
                     const void* scales, int32_t scale_step, const tt_grad* dy,
                     tt_grad* dx) {
  const tt_fc_op_data* data = (const tt_fc_op_data*)op_data;
  tt_fc_input_grad(data->batches, data->accum_depth, data->units, filter,
                   data->filter_offset, scales, scale_step, dy, dx);
}

static void fc_channel(const void* context, int32_t channel, float* weight_grad,
                       float* bias_grad) {
  const tt_layer_grad_context* c = (const tt_layer_grad_context*)context;
  const tt_fc_op_data* data = (const tt_fc_op_data*)c->op_data;
  tt_fc_channel_grad(data->batches, data->accum_depth, data->units, channel,
                     c->input, c->input_zero_point, c->input_scale, c->dy,
                     weight_grad, bias_grad);
}

static const tt_layer_backward fc_layer = {fc_shape, fc_input, fc_channel,
                                           NULL};

static tt_status fc_backward_prepare(tt_interpreter* it, const tt_node* node,
                                     const tt_layer_update* update,
                                     tt_backward_needs* needs) {
  return tt_backward_prepare_layer(it, node, update, &fc_layer, needs);
}

static tt_status fc_backward(tt_interpreter* it, const tt_node* node,
                             const tt_backward_io* io) {
  return tt_backward_layer(it, node, io, &fc_layer);
}

const tt_backward_kernel tt_backward_fully_connected = {
    TT_OP_FULLY_CONNECTED,
    true,
    fc_backward_prepare,
    fc_backward,
};
