/* DEPTHWISE_CONV_2D backward (depth multiplier, stride, dilation, SAME /
 * VALID padding): output channel oc = c * M + m filters input channel c
 * only, so the input gradient of channel c gathers the M output channels
 * of c; weight and bias gradients are computed only for the selected
 * output channels (a channel's KH * KW weights sit C_out apart in the
 * filter) and applied at once (tt_update_channel), after the input
 * gradient.
 *
 * Saved: input 0 only when weights train. Scratch: one output channel's
 * weight gradient (KH * KW floats) when weights train. Clamp: the fused
 * activation range, which includes int8 saturation. In place: with
 * multiplier 1, stride 1 and the image size kept, and weights that do not
 * train, the input gradient is written over the output gradient row by
 * row, the rows it still needs saved in a ring
 * (tt_depthwise_in_place_rows rows of scratch, stored gradients), after the
 * bias update. */
#include "kernels/common/tt_backward_helpers.h"
#include "kernels/common/tt_backward_math.h"
#include "optimizer/tt_optimizer.h"

/* Output channels taken at once: their gradients times their scales are
 * worked out once per output pixel (a stack buffer of this many floats). */
#define INPUT_GRAD_CHUNK 64

/* Taps outer and channels inner, contiguous in dy, the filter and dx. Each
 * dx value still receives its additions in the order of the plain loops
 * (output pixels, then output channels, then taps): one output pixel
 * reaches one dx pixel through one tap only, so the same bits. */
void tt_depthwise_input_grad(const tt_depthwise_shape* s,
                             const tt_conv_window* w, const int8_t* filter,
                             const void* scales, int32_t scale_step,
                             const tt_grad* dy, tt_grad* dx) {
  const uint8_t* scale_bytes = (const uint8_t*)scales;
  const int32_t m = s->depth_multiplier;
  /* Taps counted one by one: filter_start is a tap index. */
  const tt_conv_geometry g = {*w,          s->in_h,     s->in_w, s->in_c,
                              s->filter_h, s->filter_w, 1};
  float grads[INPUT_GRAD_CHUNK];
  for (int32_t b = 0; b < s->batches; ++b) {
    tt_grad* dx_image = dx + b * s->in_h * s->in_w * s->in_c;
    for (int32_t y = 0; y < s->out_h; ++y) {
      for (int32_t x = 0; x < s->out_w; ++x) {
        const tt_grad* dy_px =
            dy + ((b * s->out_h + y) * s->out_w + x) * s->out_c;
        const tt_conv_taps taps = tt_conv_pixel_taps(&g, y, x);
        for (int32_t first = 0; first < s->out_c; first += INPUT_GRAD_CHUNK) {
          const int32_t count = s->out_c - first < INPUT_GRAD_CHUNK
                                    ? s->out_c - first
                                    : INPUT_GRAD_CHUNK;
          for (int32_t i = 0; i < count; ++i) {
            grads[i] = tt_grad_value(dy_px[first + i]) *
                       tt_load_f32(scale_bytes + (first + i) * scale_step);
          }
          for (int32_t row = 0; row < taps.rows; ++row) {
            for (int32_t col = 0; col < taps.cols; ++col) {
              tt_grad* dx_px = dx_image + taps.input_start +
                               row * taps.input_row_step +
                               col * taps.input_col_step;
              const int8_t* f =
                  filter +
                  (taps.filter_start + row * taps.filter_row_step + col) *
                      s->out_c +
                  first;
              if (m == 1) {
                tt_grad* dx_c = dx_px + first;
                for (int32_t i = 0; i < count; ++i) {
                  if (grads[i] != 0.0f) {
                    tt_grad_add(&dx_c[i], grads[i] * (float)f[i]);
                  }
                }
              } else {
                for (int32_t i = 0; i < count; ++i) {
                  if (grads[i] != 0.0f) {
                    tt_grad_add(&dx_px[(first + i) / m],
                                grads[i] * (float)f[i]);
                  }
                }
              }
            }
          }
        }
      }
    }
  }
}

uint32_t tt_depthwise_in_place_rows(const tt_depthwise_shape* s,
                                    const tt_conv_window* w) {
  return (uint32_t)((s->filter_h - 1) * w->dilation_h - w->pad_h + 1);
}

/* Gathers each dx value from the output pixels that reach it, latest tap
 * first so that the pixels come in raster order, as they scatter in
 * tt_depthwise_input_grad. Rows at or above the one being written come from
 * the ring, the rows below are still intact. */
void tt_depthwise_input_grad_in_place(const tt_depthwise_shape* s,
                                      const tt_conv_window* w,
                                      const int8_t* filter, const void* scales,
                                      int32_t scale_step, tt_grad* grad,
                                      tt_grad* ring) {
  const uint8_t* scale_bytes = (const uint8_t*)scales;
  const int32_t channels = s->out_c;
  const int32_t row = s->out_w * channels;
  const int32_t ring_rows = (int32_t)tt_depthwise_in_place_rows(s, w);
  for (int32_t b = 0; b < s->batches; ++b) {
    tt_grad* g = grad + b * s->out_h * row;
    for (int32_t p = 0; p < s->out_h * s->out_w; ++p) {
      for (int32_t c = 0; c < channels; ++c) {
        tt_grad* at = &g[p * channels + c];
        *at = tt_grad_from_float(tt_grad_value(*at) *
                                 tt_load_f32(scale_bytes + c * scale_step));
      }
    }
    for (int32_t y = 0; y < s->out_h; ++y) {
      /* Row y moves to the ring; its memory starts dx's row y at zero. */
      tt_grad* dx_row = g + y * row;
      tt_grad* saved = ring + (y % ring_rows) * row;
      for (int32_t i = 0; i < row; ++i) {
        saved[i] = dx_row[i];
        dx_row[i] = tt_grad_from_float(0.0f);
      }
      for (int32_t x = 0; x < s->out_w; ++x) {
        tt_grad* dx = dx_row + x * channels;
        for (int32_t fy = s->filter_h - 1; fy >= 0; --fy) {
          const int32_t from_y = y + w->pad_h - fy * w->dilation_h;
          if (from_y < 0 || from_y >= s->out_h) continue;
          const tt_grad* source = from_y <= y
                                      ? ring + (from_y % ring_rows) * row
                                      : g + from_y * row;
          for (int32_t fx = s->filter_w - 1; fx >= 0; --fx) {
            const int32_t from_x = x + w->pad_w - fx * w->dilation_w;
            if (from_x < 0 || from_x >= s->out_w) continue;
            const tt_grad* value = source + from_x * channels;
            const int8_t* f = filter + (fy * s->filter_w + fx) * channels;
            for (int32_t c = 0; c < channels; ++c) {
              const float v = tt_grad_value(value[c]);
              if (v != 0.0f) tt_grad_add(&dx[c], v * (float)f[c]);
            }
          }
        }
      }
    }
  }
}

void tt_depthwise_channel_grad(const tt_depthwise_shape* s,
                               const tt_conv_window* w, int32_t channel,
                               const int8_t* input, int32_t input_zero_point,
                               float input_scale, const tt_grad* dy,
                               float* weight_grad, float* bias_grad) {
  /* Taps counted one by one: filter_start is a tap index. */
  const tt_conv_geometry geometry = {*w,          s->in_h,     s->in_w, s->in_c,
                                     s->filter_h, s->filter_w, 1};
  tt_window_channel_grad(&geometry, s->batches, s->out_h, s->out_w, s->out_c,
                         dy + channel, input + channel / s->depth_multiplier,
                         input_zero_point, input_scale, weight_grad, bias_grad);
}

static void depthwise_shape(const void* op_data, tt_layer_shape* shape) {
  const tt_depthwise_op_data* data = (const tt_depthwise_op_data*)op_data;
  const tt_depthwise_shape* s = &data->shape;
  shape->act_min = data->quant.act_min;
  shape->act_max = data->quant.act_max;
  shape->num_channels = s->out_c;
  shape->weights_per_channel = s->filter_h * s->filter_w;
  shape->layout.channel_step = 1;
  shape->layout.weight_stride = s->out_c;
}

static void depthwise_input(const void* op_data, const int8_t* filter,
                            const void* scales, int32_t scale_step,
                            const tt_grad* dy, tt_grad* dx) {
  const tt_depthwise_op_data* data = (const tt_depthwise_op_data*)op_data;
  tt_depthwise_input_grad(&data->shape, &data->window, filter, scales,
                          scale_step, dy, dx);
}

static void depthwise_channel(const void* context, int32_t channel,
                              float* weight_grad, float* bias_grad) {
  const tt_layer_grad_context* c = (const tt_layer_grad_context*)context;
  const tt_depthwise_op_data* data = (const tt_depthwise_op_data*)c->op_data;
  tt_depthwise_channel_grad(&data->shape, &data->window, channel, c->input,
                            c->input_zero_point, c->input_scale, c->dy,
                            weight_grad, bias_grad);
}

static void depthwise_input_in_place(const void* op_data, const int8_t* filter,
                                     const void* scales, int32_t scale_step,
                                     tt_grad* grad, float* scratch) {
  const tt_depthwise_op_data* data = (const tt_depthwise_op_data*)op_data;
  tt_depthwise_input_grad_in_place(&data->shape, &data->window, filter, scales,
                                   scale_step, grad, (tt_grad*)(void*)scratch);
}

static const tt_layer_backward depthwise_layer = {
    depthwise_shape, depthwise_input, depthwise_channel,
    depthwise_input_in_place};

static tt_status depthwise_backward_prepare(tt_interpreter* it,
                                            const tt_node* node,
                                            const tt_layer_update* update,
                                            tt_backward_needs* needs) {
  TT_RETURN_IF_ERROR(
      tt_backward_prepare_layer(it, node, update, &depthwise_layer, needs));
  /* One input channel per output channel, stride 1, the image size kept:
   * each input row is finished once the rows below it are read. */
  const tt_depthwise_op_data* data =
      (const tt_depthwise_op_data*)tt_node_op_data(it, node);
  const tt_depthwise_shape* s = &data->shape;
  if (s->depth_multiplier == 1 && data->window.stride_h == 1 &&
      data->window.stride_w == 1 && s->in_h == s->out_h &&
      s->in_w == s->out_w &&
      (update == NULL || update->kind == TT_UPDATE_BIAS)) {
    const uint64_t bytes =
        (uint64_t)tt_depthwise_in_place_rows(s, &data->window) *
        (uint64_t)s->out_w * (uint64_t)s->out_c * sizeof(tt_grad);
    if (bytes <= UINT32_MAX) {
      needs->in_place = true;
      needs->in_place_scratch_bytes = (uint32_t)bytes;
    }
  }
  return TT_OK;
}

static tt_status depthwise_backward(tt_interpreter* it, const tt_node* node,
                                    const tt_backward_io* io) {
  return tt_backward_layer(it, node, io, &depthwise_layer);
}

const tt_backward_kernel tt_backward_depthwise_conv_2d = {
    TT_OP_DEPTHWISE_CONV_2D,
    true,
    depthwise_backward_prepare,
    depthwise_backward,
};
