/* CONV_2D backward (groups, stride, dilation, SAME / VALID padding): the
 * input gradient is the transposed convolution of dY with the real-valued
 * filter, over all output channels; weight and bias gradients are computed
 * only for the selected output channels, one at a time, and applied at
 * once (tt_update_channel), after the input gradient.
 *
 * Saved: input 0 only when weights train. Scratch: one output channel's
 * weight gradient (KH * KW * filter_depth floats) when weights train.
 * Clamp: the fused activation range, which includes int8 saturation.
 * In place: a 1x1 filter with stride 1 whose weights do not train writes
 * the input gradient over the output gradient, one pixel at a time (one
 * pixel's scaled dY as scratch), after the bias update. */
#include "kernels/common/tt_backward_helpers.h"
#include "kernels/common/tt_backward_math.h"
#include "optimizer/tt_optimizer.h"

void tt_conv_input_grad(const tt_conv_shape* s, const tt_conv_window* w,
                        const int8_t* filter, const void* scales,
                        int32_t scale_step, const tt_grad* dy, tt_grad* dx) {
  const uint8_t* scale_bytes = (const uint8_t*)scales;
  const int32_t filter_size = s->filter_h * s->filter_w * s->filter_depth;
  const tt_conv_geometry geometry = {
      *w, s->in_h, s->in_w, s->in_c, s->filter_h, s->filter_w, s->filter_depth};
  for (int32_t b = 0; b < s->batches; ++b) {
    tt_grad* dx_image = dx + b * s->in_h * s->in_w * s->in_c;
    for (int32_t y = 0; y < s->out_h; ++y) {
      for (int32_t x = 0; x < s->out_w; ++x) {
        const tt_grad* dy_px =
            dy + ((b * s->out_h + y) * s->out_w + x) * s->out_c;
        const tt_conv_taps taps = tt_conv_pixel_taps(&geometry, y, x);
        for (int32_t oc = 0; oc < s->out_c; ++oc) {
          const float g = tt_grad_value(dy_px[oc]) *
                          tt_load_f32(scale_bytes + oc * scale_step);
          if (g == 0.0f) continue;
          tt_grad* dx_group = dx_image + taps.input_start +
                              oc / s->filters_per_group * s->filter_depth;
          const int8_t* filter_oc =
              filter + oc * filter_size + taps.filter_start;
          for (int32_t row = 0; row < taps.rows; ++row) {
            for (int32_t col = 0; col < taps.cols; ++col) {
              tt_grad* dx_px = dx_group + row * taps.input_row_step +
                               col * taps.input_col_step;
              const int8_t* f_px = filter_oc + row * taps.filter_row_step +
                                   col * taps.filter_col_step;
              for (int32_t c = 0; c < s->filter_depth; ++c) {
                tt_grad_add(&dx_px[c], g * (float)f_px[c]);
              }
            }
          }
        }
      }
    }
  }
}

void tt_conv_pointwise_input_grad_in_place(const tt_conv_shape* s,
                                           const int8_t* filter,
                                           const void* scales,
                                           int32_t scale_step, tt_grad* grad,
                                           float* pixel_grads) {
  const uint8_t* scale_bytes = (const uint8_t*)scales;
  const int32_t pixels = s->batches * s->out_h * s->out_w;
  const bool forward = s->in_c <= s->out_c;
  for (int32_t i = 0; i < pixels; ++i) {
    const int32_t p = forward ? i : pixels - 1 - i;
    const tt_grad* dy_px = grad + p * s->out_c;
    for (int32_t oc = 0; oc < s->out_c; ++oc) {
      pixel_grads[oc] =
          tt_grad_value(dy_px[oc]) * tt_load_f32(scale_bytes + oc * scale_step);
    }
    tt_grad* dx_px = grad + p * s->in_c;
    for (int32_t c = 0; c < s->in_c; ++c) dx_px[c] = tt_grad_from_float(0.0f);
    for (int32_t oc = 0; oc < s->out_c; ++oc) {
      const float g = pixel_grads[oc];
      if (g == 0.0f) continue;
      tt_grad* dx_group = dx_px + (oc / s->filters_per_group) * s->filter_depth;
      const int8_t* f = filter + oc * s->filter_depth;
      for (int32_t c = 0; c < s->filter_depth; ++c) {
        tt_grad_add(&dx_group[c], g * (float)f[c]);
      }
    }
  }
}

void tt_conv_channel_grad(const tt_conv_shape* s, const tt_conv_window* w,
                          int32_t channel, const int8_t* input,
                          int32_t input_zero_point, float input_scale,
                          const tt_grad* dy, float* weight_grad,
                          float* bias_grad) {
  const tt_conv_geometry geometry = {
      *w, s->in_h, s->in_w, s->in_c, s->filter_h, s->filter_w, s->filter_depth};
  const int32_t group = channel / s->filters_per_group;
  tt_window_channel_grad(&geometry, s->batches, s->out_h, s->out_w, s->out_c,
                         dy + channel, input + group * s->filter_depth,
                         input_zero_point, input_scale, weight_grad, bias_grad);
}

static void conv_shape(const void* op_data, tt_layer_shape* shape) {
  const tt_conv_op_data* data = (const tt_conv_op_data*)op_data;
  const tt_conv_shape* s = &data->shape;
  const int32_t filter_size = s->filter_h * s->filter_w * s->filter_depth;
  shape->act_min = data->quant.act_min;
  shape->act_max = data->quant.act_max;
  shape->num_channels = s->out_c;
  shape->weights_per_channel = filter_size;
  shape->layout.channel_step = filter_size;
  shape->layout.weight_stride = 1;
}

static void conv_input(const void* op_data, const int8_t* filter,
                       const void* scales, int32_t scale_step,
                       const tt_grad* dy, tt_grad* dx) {
  const tt_conv_op_data* data = (const tt_conv_op_data*)op_data;
  tt_conv_input_grad(&data->shape, &data->window, filter, scales, scale_step,
                     dy, dx);
}

static void conv_channel(const void* context, int32_t channel,
                         float* weight_grad, float* bias_grad) {
  const tt_layer_grad_context* c = (const tt_layer_grad_context*)context;
  const tt_conv_op_data* data = (const tt_conv_op_data*)c->op_data;
  tt_conv_channel_grad(&data->shape, &data->window, channel, c->input,
                       c->input_zero_point, c->input_scale, c->dy, weight_grad,
                       bias_grad);
}

static void conv_input_in_place(const void* op_data, const int8_t* filter,
                                const void* scales, int32_t scale_step,
                                tt_grad* grad, float* scratch) {
  const tt_conv_op_data* data = (const tt_conv_op_data*)op_data;
  tt_conv_pointwise_input_grad_in_place(&data->shape, filter, scales,
                                        scale_step, grad, scratch);
}

static const tt_layer_backward conv_layer = {conv_shape, conv_input,
                                             conv_channel, conv_input_in_place};

static tt_status conv_backward_prepare(tt_interpreter* it, const tt_node* node,
                                       const tt_layer_update* update,
                                       tt_backward_needs* needs) {
  TT_RETURN_IF_ERROR(
      tt_backward_prepare_layer(it, node, update, &conv_layer, needs));
  /* A 1x1 filter that keeps the image size maps each pixel to itself. The
   * weights must not change before the input gradient reads them. */
  const tt_conv_shape* s =
      &((const tt_conv_op_data*)tt_node_op_data(it, node))->shape;
  if (s->filter_h == 1 && s->filter_w == 1 && s->in_h == s->out_h &&
      s->in_w == s->out_w &&
      (update == NULL || update->kind == TT_UPDATE_BIAS)) {
    needs->in_place = true;
    needs->in_place_scratch_bytes = (uint32_t)s->out_c * sizeof(float);
  }
  return TT_OK;
}

static tt_status conv_backward(tt_interpreter* it, const tt_node* node,
                               const tt_backward_io* io) {
  return tt_backward_layer(it, node, io, &conv_layer);
}

const tt_backward_kernel tt_backward_conv_2d = {
    TT_OP_CONV_2D,
    true,
    conv_backward_prepare,
    conv_backward,
};
