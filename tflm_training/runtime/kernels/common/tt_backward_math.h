/* The arithmetic of the backward kernels: pure functions over plain arrays
 * and the forward kernels' shape structs, exported so that tests call them
 * directly (tests/test_backward_ops.py compares them with TensorFlow
 * autodiff).
 *
 * Conventions. Gradients are real-valued, stored as tt_grad (tt_grad.h)
 * and computed in float32: dL/dx for the
 * dequantized x = scale * (q - zero_point), dL/dW for the dequantized
 * weights the forward kernel multiplies by (s_W * (q + filter_offset)).
 * Input gradients are ADDED to what the output array already holds (a
 * tensor read by several operators sums their contributions); weight and
 * bias gradients of one output channel are written, not added. Arrays are
 * row-major (NHWC for images), as the int8 tensors are.
 *
 * Per-channel weight scales are passed as bytes + step: channel c's float32
 * scale is read (with memcpy, since a model's scale vector may sit at any
 * address) at scales + c * scale_step; scale_step is 4 for one scale per
 * channel and 0 for a single per-tensor scale.
 *
 * Determinism: every sum runs in a fixed order that depends only on the
 * shapes, in float32 (the runtime is built with -ffp-contract=off), so host
 * and Cortex-M4 results are bit-identical. Products whose gradient factor
 * is exactly zero (masked outputs) are skipped, which makes them cheap and
 * changes no value: x + 0 * w == x for the finite w here (at most the sign
 * of a zero sum differs). Nothing allocates. */
#ifndef TFLM_TRAINING_TT_BACKWARD_MATH_H_
#define TFLM_TRAINING_TT_BACKWARD_MATH_H_

#include <stdint.h>

#include "kernels/common/tt_conv_op_data.h"
#include "kernels/common/tt_elementwise.h"
#include "kernels/common/tt_pool_params.h"
#include "math/tt_grad.h"

/* dx[i] += gain * dy[i] for i < count: RESHAPE, SQUEEZE, QUANTIZE, RELU,
 * RELU6 (gain is the derivative of the real-valued map, 1 unless the op
 * moves int8 values between different scales unchanged). */
void tt_grad_scaled_add(int32_t count, float gain, const tt_grad* dy,
                        tt_grad* dx);

/* dx[i] = 0 + gain * dy[i]: the same bits as tt_grad_scaled_add into
 * zeros; dx may be dy (in place). */
void tt_grad_scaled_write(int32_t count, float gain, const tt_grad* dy,
                          tt_grad* dx);

/* FULLY_CONNECTED, y[b, u] = sum_d W[u, d] x[b, d] + bias[u] over
 * `batches` rows of `depth` inputs and `units` outputs.
 *
 * dx[b, d] += sum_u dy[b, u] * s_W[u] * (filter[u, d] + filter_offset),
 * summed over u in increasing order. */
void tt_fc_input_grad(int32_t batches, int32_t depth, int32_t units,
                      const int8_t* filter, int32_t filter_offset,
                      const void* scales, int32_t scale_step, const tt_grad* dy,
                      tt_grad* dx);

/* Output channel `unit`: weight_grad[d] = s_x * sum_b dy[b, unit] *
 * (x[b, d] - x_zero_point) (depth values; NULL for none), *bias_grad =
 * sum_b dy[b, unit] (NULL for none); sums over b in increasing order. */
void tt_fc_channel_grad(int32_t batches, int32_t depth, int32_t units,
                        int32_t unit, const int8_t* input,
                        int32_t input_zero_point, float input_scale,
                        const tt_grad* dy, float* weight_grad,
                        float* bias_grad);

/* CONV_2D (groups, stride, dilation, padding as in the forward kernel;
 * filter [C_out, KH, KW, filter_depth]).
 *
 * dx (input shape) += the transposed convolution of dy with s_W * filter:
 * each output element scatters into its receptive field, output elements
 * in increasing order, then output channels in increasing order. */
void tt_conv_input_grad(const tt_conv_shape* shape,
                        const tt_conv_window* window, const int8_t* filter,
                        const void* scales, int32_t scale_step,
                        const tt_grad* dy, tt_grad* dx);

/* The input gradient of a 1x1 CONV_2D with stride 1 (input and output
 * pixels are the same), written over dy: one pixel at a time, its dy times
 * the channel scales first into `pixel_grads` (C_out floats), then its dx
 * (0 plus the same terms in the same order as tt_conv_input_grad). Pixels
 * run forward when C_in <= C_out and backward otherwise, so a pixel's dx
 * covers only dy of pixels already done. The buffer holds
 * max(C_in, C_out) stored gradients per pixel. */
void tt_conv_pointwise_input_grad_in_place(const tt_conv_shape* shape,
                                           const int8_t* filter,
                                           const void* scales,
                                           int32_t scale_step, tt_grad* grad,
                                           float* pixel_grads);

/* Output channel `channel`: weight_grad (KH * KW * filter_depth values, in
 * the filter's order; NULL for none) = s_x * sum over output positions of
 * dy * (x - x_zero_point) over the receptive field, positions in
 * increasing order; *bias_grad = sum of dy over the channel. */
void tt_conv_channel_grad(const tt_conv_shape* shape,
                          const tt_conv_window* window, int32_t channel,
                          const int8_t* input, int32_t input_zero_point,
                          float input_scale, const tt_grad* dy,
                          float* weight_grad, float* bias_grad);

/* DEPTHWISE_CONV_2D (filter [1, KH, KW, C_out]; output channel oc reads
 * input channel oc / depth_multiplier). As for CONV_2D; weight_grad has
 * KH * KW values, channel `channel`'s weights in the filter's order (the
 * filter holds them C_out elements apart). */
void tt_depthwise_input_grad(const tt_depthwise_shape* shape,
                             const tt_conv_window* window, const int8_t* filter,
                             const void* scales, int32_t scale_step,
                             const tt_grad* dy, tt_grad* dx);
/* The input gradient of a stride-1 DEPTHWISE_CONV_2D with multiplier 1
 * that keeps the image size, written over dy (`grad`): dy is scaled by the
 * channel scales in place, then each input row is gathered (0 plus the
 * same terms in the same order as tt_depthwise_input_grad) once the rows
 * it needs that it overwrites are saved in `ring`,
 * tt_depthwise_in_place_rows rows of out_w * C stored gradients. */
uint32_t tt_depthwise_in_place_rows(const tt_depthwise_shape* shape,
                                    const tt_conv_window* window);
void tt_depthwise_input_grad_in_place(const tt_depthwise_shape* shape,
                                      const tt_conv_window* window,
                                      const int8_t* filter, const void* scales,
                                      int32_t scale_step, tt_grad* grad,
                                      tt_grad* ring);
void tt_depthwise_channel_grad(const tt_depthwise_shape* shape,
                               const tt_conv_window* window, int32_t channel,
                               const int8_t* input, int32_t input_zero_point,
                               float input_scale, const tt_grad* dy,
                               float* weight_grad, float* bias_grad);

/* The weight and bias gradients of one output channel of a sliding-window
 * layer, as tt_conv_channel_grad and tt_depthwise_channel_grad define them:
 * dy points at the channel's gradient in output pixel 0 of a [batches,
 * out_h, out_w, out_c] array, input at the first of the g->tap_size
 * adjacent channels the channel reads in image 0, and weight_grad (NULL for
 * none) holds the channel's KH * KW * tap_size weights in filter order.
 * Inline always, so that each caller's constant tap size folds in. */
static inline __attribute__((always_inline)) void tt_window_channel_grad(
    const tt_conv_geometry* g, int32_t batches, int32_t out_h, int32_t out_w,
    int32_t out_c, const tt_grad* dy, const int8_t* input,
    int32_t input_zero_point, float input_scale, float* weight_grad,
    float* bias_grad) {
  if (weight_grad == NULL) { /* the bias alone: no window to walk */
    const int32_t pixels = batches * out_h * out_w;
    float sum = 0.0f;
    for (int32_t p = 0; p < pixels; ++p) sum += tt_grad_value(dy[p * out_c]);
    if (bias_grad != NULL) *bias_grad = sum;
    return;
  }
  float bias_sum = 0.0f;
  const int32_t depth = g->tap_size;
  const int32_t filter_size = g->filter_h * g->filter_w * depth;
  for (int32_t i = 0; i < filter_size; ++i) weight_grad[i] = 0.0f;
  int32_t at = 0; /* dy's index: pixels in increasing order */
  for (int32_t b = 0; b < batches; ++b) {
    const int8_t* image = input + b * g->in_h * g->in_w * g->in_c;
    for (int32_t y = 0; y < out_h; ++y) {
      for (int32_t x = 0; x < out_w; ++x) {
        const float grad = tt_grad_value(dy[at]);
        at += out_c;
        bias_sum += grad;
        if (grad == 0.0f) continue;
        const tt_conv_taps taps = tt_conv_pixel_taps_inline(g, y, x);
        const int8_t* in_window = image + taps.input_start;
        float* grad_window = weight_grad + taps.filter_start;
        for (int32_t row = 0; row < taps.rows; ++row) {
          for (int32_t col = 0; col < taps.cols; ++col) {
            const int8_t* in_px = in_window + row * taps.input_row_step +
                                  col * taps.input_col_step;
            float* grad_px = grad_window + row * taps.filter_row_step +
                             col * taps.filter_col_step;
            for (int32_t c = 0; c < depth; ++c) {
              grad_px[c] +=
                  grad * (float)((int32_t)in_px[c] - input_zero_point);
            }
          }
        }
      }
    }
  }
  for (int32_t i = 0; i < filter_size; ++i) weight_grad[i] *= input_scale;
  if (bias_grad != NULL) *bias_grad = bias_sum;
}

/* ADD and SUB with numpy broadcasting (the forward kernel's params): dx1 +=
 * dy and dx2 += dy (or -= dy when subtract), each summed over the output
 * elements it was broadcast to, in output order. Either may be NULL. */
void tt_add_sub_grad(const tt_broadcast_params* params, int32_t subtract,
                     const tt_grad* dy, tt_grad* dx1, tt_grad* dx2);

/* The same, with dx1 written over dy (in place; input 1 not broadcast):
 * dx1 = 0 + dy, each dy value read before it is overwritten. */
void tt_add_sub_grad_in_place(const tt_broadcast_params* params,
                              int32_t subtract, tt_grad* dy_dx1, tt_grad* dx2);

/* AVERAGE_POOL_2D: each output's gain * dy / n goes to the n inputs of its
 * window that lie inside the image (padding is not counted, as forward). */
void tt_average_pool_grad(const tt_pool_params* params, float gain,
                          const tt_grad* dy, tt_grad* dx);

/* MAX_POOL_2D: each output's gain * dy goes to the input its maximum came
 * from, the first largest value of the window in row-major order (as
 * TensorFlow routes ties). `input` is the int8 forward input. */
void tt_max_pool_grad(const tt_pool_params* params, const int8_t* input,
                      float gain, const tt_grad* dy, tt_grad* dx);

/* MEAN of an input of `rank` dimensions over the dimensions whose bit is
 * set in reduced_mask (bit d = dimension d): dx[i] += dy[o(i)] / count,
 * count the number of inputs per output. */
void tt_mean_grad(int32_t rank, const int32_t* input_dims,
                  uint32_t reduced_mask, const tt_grad* dy, tt_grad* dx);

/* PAD / PADV2 over `rank` dimensions (before[d], after[d] >= 0): dx +=
 * gain * (the part of dy inside the padded box); *value_grad (NULL for
 * none) += the sum of dy over the padding, in output order. dx may be
 * NULL. */
void tt_pad_grad(int32_t rank, const int32_t* input_dims, const int32_t* before,
                 const int32_t* after, float gain, const tt_grad* dy,
                 tt_grad* dx, tt_grad* value_grad);

/* CONCATENATION: one input's share of dy. The output holds `outer` rows of
 * output_row values; the input's `chunk` values of each row start at
 * `offset`: dx[k * chunk + j] += dy[k * output_row + offset + j]. */
void tt_concatenation_grad(int32_t outer, int32_t output_row, int32_t offset,
                           int32_t chunk, const tt_grad* dy, tt_grad* dx);

#endif /* TFLM_TRAINING_TT_BACKWARD_MATH_H_ */
