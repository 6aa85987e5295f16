/* CONV_2D backward (groups, stride, dilation, SAME / VALID padding): the
 * input gradient is the transposed convolution of dY with the real-valued
 * filter, over all output channels; weight and bias gradients are computed
 * only for the selected output channels, one at a time, and applied at
 * once (tt_update_channel), after the input gradient.
 *
 * Saved: input 0 only when weights train. Scratch: one output channel's
 * weight gradient (KH * KW * filter_depth floats) when weights train.
 * Clamp: the fused activation range, which includes int8 saturation. */
#include "../tt_backward_helpers.h"
#include "../tt_backward_math.h"
#include "../tt_kernel_checks.h"
#include "../tt_plan.h"

void tt_conv_input_grad(const tt_conv_shape* s, const tt_conv_window* w,
                        const int8_t* filter, const void* scales,
                        int32_t scale_step, const float* dy, float* dx) {
  const uint8_t* scale_bytes = (const uint8_t*)scales;
  const int32_t filter_size = s->filter_h * s->filter_w * s->filter_depth;
  for (int32_t b = 0; b < s->batches; ++b) {
    for (int32_t y = 0; y < s->out_h; ++y) {
      const int32_t in_y0 = y * w->stride_h - w->pad_h;
      for (int32_t x = 0; x < s->out_w; ++x) {
        const int32_t in_x0 = x * w->stride_w - w->pad_w;
        const float* dy_px =
            dy + ((b * s->out_h + y) * s->out_w + x) * s->out_c;
        for (int32_t oc = 0; oc < s->out_c; ++oc) {
          const float g =
              dy_px[oc] * tt_load_f32(scale_bytes + oc * scale_step);
          if (g == 0.0f) continue;
          const int32_t group = oc / s->filters_per_group;
          const int8_t* filter_oc = filter + oc * filter_size;
          for (int32_t fy = 0; fy < s->filter_h; ++fy) {
            const int32_t in_y = in_y0 + fy * w->dilation_h;
            if (in_y < 0 || in_y >= s->in_h) continue;
            for (int32_t fx = 0; fx < s->filter_w; ++fx) {
              const int32_t in_x = in_x0 + fx * w->dilation_w;
              if (in_x < 0 || in_x >= s->in_w) continue;
              float* dx_px = dx +
                             ((b * s->in_h + in_y) * s->in_w + in_x) * s->in_c +
                             group * s->filter_depth;
              const int8_t* f_px =
                  filter_oc + (fy * s->filter_w + fx) * s->filter_depth;
              for (int32_t c = 0; c < s->filter_depth; ++c) {
                dx_px[c] += g * (float)f_px[c];
              }
            }
          }
        }
      }
    }
  }
}

void tt_conv_channel_grad(const tt_conv_shape* s, const tt_conv_window* w,
                          int32_t channel, const int8_t* input,
                          int32_t input_zero_point, float input_scale,
                          const float* dy, float* weight_grad,
                          float* bias_grad) {
  const int32_t filter_size = s->filter_h * s->filter_w * s->filter_depth;
  const int32_t group = channel / s->filters_per_group;
  if (weight_grad != NULL) {
    for (int32_t i = 0; i < filter_size; ++i) weight_grad[i] = 0.0f;
  }
  float bias_sum = 0.0f;
  for (int32_t b = 0; b < s->batches; ++b) {
    for (int32_t y = 0; y < s->out_h; ++y) {
      const int32_t in_y0 = y * w->stride_h - w->pad_h;
      for (int32_t x = 0; x < s->out_w; ++x) {
        const float g =
            dy[((b * s->out_h + y) * s->out_w + x) * s->out_c + channel];
        bias_sum += g;
        if (weight_grad == NULL || g == 0.0f) continue;
        const int32_t in_x0 = x * w->stride_w - w->pad_w;
        for (int32_t fy = 0; fy < s->filter_h; ++fy) {
          const int32_t in_y = in_y0 + fy * w->dilation_h;
          if (in_y < 0 || in_y >= s->in_h) continue;
          for (int32_t fx = 0; fx < s->filter_w; ++fx) {
            const int32_t in_x = in_x0 + fx * w->dilation_w;
            if (in_x < 0 || in_x >= s->in_w) continue;
            const int8_t* in_px =
                input + ((b * s->in_h + in_y) * s->in_w + in_x) * s->in_c +
                group * s->filter_depth;
            float* g_px =
                weight_grad + (fy * s->filter_w + fx) * s->filter_depth;
            for (int32_t c = 0; c < s->filter_depth; ++c) {
              g_px[c] += g * (float)((int32_t)in_px[c] - input_zero_point);
            }
          }
        }
      }
    }
  }
  if (weight_grad != NULL) {
    for (int32_t i = 0; i < filter_size; ++i) weight_grad[i] *= input_scale;
  }
  if (bias_grad != NULL) *bias_grad = bias_sum;
}

typedef struct {
  const tt_conv_op_data* data;
  const int8_t* input;
  int32_t input_zero_point;
  float input_scale;
  const float* dy;
} conv_grad_context;

static void conv_channel(const void* context, int32_t channel,
                         float* weight_grad, float* bias_grad) {
  const conv_grad_context* c = (const conv_grad_context*)context;
  tt_conv_channel_grad(&c->data->shape, &c->data->window, channel, c->input,
                       c->input_zero_point, c->input_scale, c->dy,
                       weight_grad, bias_grad);
}

static tt_status conv_backward_prepare(tt_interpreter* it,
                                       const tt_node* node,
                                       const tt_layer_update* update,
                                       tt_backward_needs* needs) {
  tt_backward_needs_clear(needs);
  const tt_conv_op_data* data =
      (const tt_conv_op_data*)tt_node_op_data(it, node);
  if (data == NULL || node->num_inputs < 2) {
    return tt_node_fail(it, node, TT_ERR_BAD_STATE,
                        "forward kernel is not prepared");
  }
  const tt_conv_shape* s = &data->shape;
  tt_backward_clamp(needs, data->quant.act_min, data->quant.act_max);
  return tt_backward_prepare_update(
      it, node, update, tt_node_input(it, node, 1),
      tt_node_input(it, node, 2), s->out_c,
      s->filter_h * s->filter_w * s->filter_depth, needs);
}

static tt_status conv_backward(tt_interpreter* it, const tt_node* node,
                               const tt_backward_io* io) {
  const tt_conv_op_data* data =
      (const tt_conv_op_data*)tt_node_op_data(it, node);
  const tt_tensor* input = tt_node_input(it, node, 0);
  const tt_tensor* filter = tt_node_input(it, node, 1);
  const int8_t* filter_data = (const int8_t*)tt_tensor_data(it, filter);
  const int8_t* input_data = (const int8_t*)tt_tensor_data(it, input);
  if (data == NULL || filter_data == NULL || io->output_grad == NULL) {
    return tt_node_fail(it, node, TT_ERR_BAD_STATE,
                        "backward has no filter or output gradient");
  }
  const tt_conv_shape* s = &data->shape;
  if (io->input_grads[0] != NULL) {
    const void* scales;
    int32_t step;
    tt_backward_scales(it, filter, &scales, &step);
    tt_conv_input_grad(s, &data->window, filter_data, scales, step,
                       io->output_grad, io->input_grads[0]);
  }
  if (io->update == NULL) return TT_OK;
  if (io->update->kind == TT_UPDATE_WEIGHTS && input_data == NULL) {
    return tt_node_fail(it, node, TT_ERR_BAD_STATE,
                        "the saved input has no memory");
  }
  const conv_grad_context context = {data, input_data, input->zero_point,
                                     input->scale, io->output_grad};
  const tt_channel_layout layout = {
      s->filter_h * s->filter_w * s->filter_depth, 1};
  return tt_backward_update_channels(it, node, io->update, &layout,
                                     io->scratch, conv_channel, &context);
}

const tt_backward_kernel tt_backward_conv_2d = {
    TT_OP_CONV_2D, true, conv_backward_prepare, conv_backward,
};
