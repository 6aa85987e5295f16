/* What the int8 convolution-like kernels (CONV_2D, DEPTHWISE_CONV_2D,
 * FULLY_CONNECTED) share: checks of their tensors, the requantization
 * parameters of each output channel, the sliding-window geometry (down to
 * which taps of one output pixel's window lie inside the input), the
 * multiply-accumulate loop of CONV_2D and FULLY_CONNECTED, and the step
 * from an int32 accumulator to an int8 output. The arithmetic matches
 * TFLite Micro's reference kernels bit for bit: accumulators wrap like
 * TFLM's int32 ones, so summing in another order gives the same bits.
 *
 * Op data of these kernels is a fixed header followed by `count` int32
 * multipliers and then `count` int8 shifts (tt_quantize_multiplier's
 * exponents lie in [-31, 30]), where count is 1 for a per-tensor quantized
 * filter and the number of output channels for a per-channel one. */
#ifndef TFLM_TRAINING_TT_CONV_PARAMS_H_
#define TFLM_TRAINING_TT_CONV_PARAMS_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/common/tt_kernel.h"
#include "kernels/common/tt_kernel_checks.h"
#include "math/tt_quant.h"

/* Activation offsets and fused-activation clamp of an int8 op. */
typedef struct {
  int32_t input_offset;  /* minus the input zero point */
  int32_t output_offset; /* the output zero point */
  int32_t act_min;
  int32_t act_max;
} tt_conv_quant;

/* Sliding window over an NHWC image. pad_* is the padding before the first
 * row / column; the rest of SAME padding falls after the last one. */
typedef struct {
  int32_t stride_h;
  int32_t stride_w;
  int32_t dilation_h;
  int32_t dilation_w;
  int32_t pad_h;
  int32_t pad_w;
} tt_conv_window;

/* Signed 32-bit addition that wraps, as TFLM's accumulators do on every
 * target, without relying on -fwrapv (or tripping a sanitizer). */
static inline int32_t tt_conv_wrapping_add(int32_t a, int32_t b) {
  return (int32_t)((uint32_t)a + (uint32_t)b);
}

/* Eval-time view of the tensors and the per-channel parameters (built on
 * the stack; op data itself holds no pointers). */
typedef struct {
  const int8_t* input;
  const int8_t* filter;
  const uint8_t* bias; /* int32 values, maybe unaligned; NULL if none */
  int8_t* output;
  const int32_t* multipliers;
  const int8_t* shifts;
  int32_t channel_step; /* 1 with a multiplier per channel, 0 with one */
  const tt_conv_quant* quant;
} tt_conv_eval_view;

/* Fills *view from the node's tensors (input 0, filter 1, optional bias 2,
 * output 0) and from the multipliers/shifts that follow an op data header
 * of header_size bytes; fails if any of them has no memory. */
tt_status tt_conv_eval_view_init(tt_interpreter* interpreter,
                                 const tt_node* node, uint32_t header_size,
                                 int32_t multiplier_count,
                                 const tt_conv_quant* quant,
                                 tt_conv_eval_view* view);

/* The high word of x * m + (high:low), the 64-bit number whose words
 * are high and low: one SMLAL on Arm. */
static inline int32_t tt_conv_mul_add_high(int32_t x, int32_t m, uint32_t low,
                                           int32_t high) {
#if defined(__arm__) && defined(__ARM_ARCH_7EM__)
  __asm__("smlal %0, %1, %2, %3" : "+r"(low), "+r"(high) : "r"(x), "r"(m));
  return high;
#else
  const int64_t addend = (int64_t)(((uint64_t)(uint32_t)high << 32) | low);
  return (int32_t)(((int64_t)x * m + addend) >> 32);
#endif
}

/* One output channel's bias and requantization, unpacked once to serve
 * many pixels. */
typedef struct {
  int32_t bias;
  int32_t multiplier; /* in [0, 2^31): prepare derives it from scales */
  int32_t left_shift;
  int32_t right_shift;
  /* The words of 2^30 + 2^(30 + right_shift), then of that minus 2^31
   * (tt_conv_scaled_output). */
  uint32_t round_low[2];
  int32_t round_high[2];
} tt_conv_channel_scale;

static inline tt_conv_channel_scale tt_conv_channel_scale_of(
    const tt_conv_eval_view* view, int32_t channel) {
  const int32_t q = channel * view->channel_step;
  const int32_t shift = view->shifts[q];
  tt_conv_channel_scale c;
  c.bias = view->bias != NULL ? tt_load_i32(view->bias + 4 * channel) : 0;
  c.multiplier = view->multipliers[q];
  c.left_shift = shift > 0 ? shift : 0;
  c.right_shift = shift > 0 ? 0 : -shift;
  /* Built from words, without a variable 64-bit shift (right_shift is at
   * most 31; below 1 the words are not used). */
  const int32_t high = c.right_shift >= 2 ? 1 << (c.right_shift - 2) : 0;
  const bool low_has_two_bits = c.right_shift == 1; /* 2^30 + 2^31 */
  c.round_low[0] = low_has_two_bits ? 0xC0000000u : 0x40000000u;
  c.round_high[0] = high;
  c.round_low[1] = low_has_two_bits ? 0x40000000u : 0xC0000000u;
  c.round_high[1] = low_has_two_bits ? high : high - 1;
  return c;
}

/* The channel's output for accumulator `acc` (bias not yet added):
 * tt_multiply_by_quantized_multiplier of acc + bias, then the output
 * offset and the clamp, with TFLM's two roundings done as one.
 *
 * With x the shifted sum, P = x * multiplier and e = right_shift >= 1,
 * TFLM computes r = floor((P + 2^30) / 2^31) (its doubling high multiply,
 * which cannot saturate with a multiplier below 2^31), then rounds r / 2^e
 * half away from zero: floor((r + 2^(e-1) - [r < 0]) / 2^e). As
 * floor((floor(y) + h) / c) = floor((y + h) / c) for integers h and c > 0,
 * that is floor((P + 2^30 + 2^(30+e) - [r < 0] 2^31) / 2^(31+e)), one
 * 64-bit sum (below 2^63) whose high word shifted by e - 1 is the result.
 * [r < 0] may be replaced by [x < 0]: they differ only for -2^30 <= P < 0,
 * where both forms give 0. */
static inline int8_t tt_conv_scaled_output(const tt_conv_channel_scale* c,
                                           const tt_conv_quant* quant,
                                           int32_t acc) {
  const int32_t x =
      (int32_t)((uint32_t)tt_conv_wrapping_add(acc, c->bias) << c->left_shift);
  int32_t value;
  if (c->right_shift > 0) {
    const int32_t negative = x < 0;
    value = tt_conv_mul_add_high(x, c->multiplier, c->round_low[negative],
                                 c->round_high[negative]) >>
            (c->right_shift - 1);
  } else {
    value = (int32_t)(((int64_t)x * c->multiplier + ((int64_t)1 << 30)) >> 31);
  }
  return (int8_t)tt_clamp_i32(tt_conv_wrapping_add(value, quant->output_offset),
                              quant->act_min, quant->act_max);
}

/* Adds the channel's bias to its accumulator and requantizes it. */
static inline int8_t tt_conv_output_value(const tt_conv_eval_view* view,
                                          int32_t channel, int32_t acc) {
  const tt_conv_channel_scale c = tt_conv_channel_scale_of(view, channel);
  return tt_conv_scaled_output(&c, view->quant, acc);
}

/* tt_conv_output_value of channels first .. first + n - 1, from acc[0 ..
 * n - 1], into out[0 .. n - 1]. */
static inline void tt_conv_output_values(const tt_conv_eval_view* view,
                                         int32_t first, int32_t n,
                                         const int32_t* acc, int8_t* out) {
  for (int32_t i = 0; i < n; ++i) {
    out[i] = tt_conv_output_value(view, first + i, acc[i]);
  }
}

/* What a sliding window reads: an [in_h, in_w, in_c] image (one batch) and
 * a [filter_h, filter_w, tap_size] filter. */
typedef struct {
  tt_conv_window window;
  int32_t in_h, in_w, in_c;
  int32_t filter_h, filter_w;
  int32_t tap_size; /* filter values per tap */
} tt_conv_geometry;

/* The taps of one output pixel's window that fall inside the input (taps on
 * padding add nothing, so they are left out): a rows x cols grid whose
 * first tap reads the image from element input_start and the filter from
 * element filter_start, the next tap across or down the given steps
 * further. rows and cols are both 0 (then so is everything else) or both
 * positive; an input step is 0 when there is no second tap to step to. */
typedef struct {
  int32_t rows, cols;
  int32_t input_start, filter_start;
  int32_t input_row_step, input_col_step;
  int32_t filter_row_step, filter_col_step;
} tt_conv_taps;

/* The taps of output pixel (out_y, out_x). */
tt_conv_taps tt_conv_pixel_taps(const tt_conv_geometry* geometry, int32_t out_y,
                                int32_t out_x);

/* The taps struct of a rows x cols grid of valid taps whose first is
 * filter tap (first_y, first_x), at input pixel (in_y, in_x). A step is
 * only set when it joins two taps inside the input: then it is less than
 * the image size, while a huge dilation could overflow. */
static inline tt_conv_taps tt_conv_taps_of_grid(const tt_conv_geometry* g,
                                                int32_t rows, int32_t cols,
                                                int32_t first_y,
                                                int32_t first_x, int32_t in_y,
                                                int32_t in_x) {
  tt_conv_taps t;
  t.rows = rows;
  t.cols = cols;
  t.input_row_step = rows > 1 ? g->window.dilation_h * g->in_w * g->in_c : 0;
  t.input_col_step = cols > 1 ? g->window.dilation_w * g->in_c : 0;
  t.filter_row_step = g->filter_w * g->tap_size;
  t.filter_col_step = g->tap_size;
  t.input_start = (in_y * g->in_w + in_x) * g->in_c;
  t.filter_start = (first_y * g->filter_w + first_x) * g->tap_size;
  return t;
}

/* tt_conv_pixel_taps, with its most common case inline: the whole window
 * inside the input. */
static inline tt_conv_taps tt_conv_pixel_taps_inline(const tt_conv_geometry* g,
                                                     int32_t out_y,
                                                     int32_t out_x) {
  const tt_conv_window* w = &g->window;
  const int32_t origin_y = out_y * w->stride_h - w->pad_h;
  const int32_t origin_x = out_x * w->stride_w - w->pad_w;
  /* Window extents are below 2^29 (tt_conv_prepare_window): no overflow. */
  if (origin_y < 0 || origin_x < 0 ||
      origin_y >= g->in_h - (g->filter_h - 1) * w->dilation_h ||
      origin_x >= g->in_w - (g->filter_w - 1) * w->dilation_w) {
    return tt_conv_pixel_taps(g, out_y, out_x);
  }
  return tt_conv_taps_of_grid(g, g->filter_h, g->filter_w, 0, 0, origin_y,
                              origin_x);
}

/* Joins each row of *taps into one tap of the returned number of values
 * when its taps are adjacent in the input too (no horizontal dilation, no
 * groups); they always are in the filter. cols is then 1. Without a join
 * the taps stay as they are, tap_size values each. */
static inline int32_t tt_conv_join_rows(tt_conv_taps* taps, int32_t tap_size) {
  if (taps->cols > 1 && taps->input_col_step == tap_size) {
    const int32_t span = tap_size * taps->cols;
    taps->cols = 1;
    return span;
  }
  return tap_size;
}

/* acc[k] = the sum over the taps of filters[k] * (input + input_offset),
 * for four filters at once; each tap is `span` values contiguous in both
 * the input and the filters (input and filters[k] point at the first
 * tap's). Sharing each input load and offset add between four output
 * channels brings a MAC down to 3 Cortex-M4 instructions, from 6 for one
 * channel at a time. No bias. */
void tt_conv_accumulate_quad(const tt_conv_taps* taps, int32_t span,
                             int32_t input_offset, const int8_t* input,
                             const int8_t* const filters[4], int32_t acc[4]);

/* Points quad[i] at the filter of channel first + i for
 * tt_conv_accumulate_quad, the filters being `size` values apart from
 * `filter` on. Channels from `end` on do not exist: their entries repeat
 * channel end - 1, and the caller drops their sums. Returns the number of
 * real channels, 1 to 4 (first < end). */
static inline int32_t tt_conv_quad_filters(const int8_t* filter, int32_t size,
                                           int32_t first, int32_t end,
                                           const int8_t* quad[4]) {
  for (int32_t i = 0; i < 4; ++i) {
    const int32_t channel = first + i < end ? first + i : end - 1;
    quad[i] = filter + channel * size;
  }
  return end - first < 4 ? end - first : 4;
}

/* The node's input 0, filter 1, optional bias 2 (NULL when absent) and
 * output 0: 2 or 3 inputs, one output, all but the bias present. */
tt_status tt_conv_node_tensors(tt_interpreter* interpreter, const tt_node* node,
                               const tt_tensor** input,
                               const tt_tensor** filter, const tt_tensor** bias,
                               const tt_tensor** output);

/* Every dimension of the tensor is at least 1. */
tt_status tt_conv_expect_nonempty(tt_interpreter* interpreter,
                                  const tt_node* node, const tt_tensor* tensor,
                                  const char* role);

/* tt_conv_expect_nonempty of input, filter and output. */
tt_status tt_conv_expect_nonempty_io(tt_interpreter* interpreter,
                                     const tt_node* node,
                                     const tt_tensor* input,
                                     const tt_tensor* filter,
                                     const tt_tensor* output);

/* Input and output: int8 quantized per tensor (tt_expect_int8_per_tensor);
 * fills the offsets and the clamp of `activation`. */
tt_status tt_conv_prepare_io(tt_interpreter* interpreter, const tt_node* node,
                             const tt_tensor* input, const tt_tensor* output,
                             int32_t activation, tt_conv_quant* quant);

/* Weights: int8 and quantized. Says clearly when they are packed int4. */
tt_status tt_conv_expect_filter(tt_interpreter* interpreter,
                                const tt_node* node, const tt_tensor* filter);

/* CONV_2D and DEPTHWISE_CONV_2D: tt_conv_prepare_io, tt_conv_expect_filter,
 * then input, filter and output 4-D and nonempty. */
tt_status tt_conv_prepare_image_io(tt_interpreter* interpreter,
                                   const tt_node* node, const tt_tensor* input,
                                   const tt_tensor* filter,
                                   const tt_tensor* output, int32_t activation,
                                   tt_conv_quant* quant);

/* Bias (may be NULL): int32, one value per output channel. */
tt_status tt_conv_expect_bias(tt_interpreter* interpreter, const tt_node* node,
                              const tt_tensor* bias, int32_t num_channels);

/* Number of multiplier/shift pairs the op data needs: 1 for a filter with
 * one scale, num_channels when it has one scale per output channel along
 * quantized_dimension; anything else fails. */
tt_status tt_conv_multiplier_count(tt_interpreter* interpreter,
                                   const tt_node* node, const tt_tensor* filter,
                                   int32_t quantized_dimension,
                                   int32_t num_channels, int32_t* count);

/* Scale `channel` of the filter, which must be finite and non-negative (a
 * zero scale, an all-zero channel, makes its outputs the zero point, as in
 * TFLM). */
tt_status tt_conv_filter_scale(tt_interpreter* interpreter, const tt_node* node,
                               const tt_tensor* filter, int32_t channel,
                               float* scale);

/* TFLM's per-channel rule, for each of `count` filter scales:
 * double(input scale) * double(filter scale) / double(output scale). */
tt_status tt_conv_channel_multipliers(tt_interpreter* interpreter,
                                      const tt_node* node,
                                      const tt_tensor* input,
                                      const tt_tensor* filter,
                                      const tt_tensor* output, int32_t count,
                                      int32_t* multipliers, int8_t* shifts);

/* One real multiplier to (multiplier, shift); fails when it is not finite
 * or too large for the fixed-point multiply (2^30 and above). */
tt_status tt_conv_quantize_multiplier(tt_interpreter* interpreter,
                                      const tt_node* node, double real,
                                      int32_t channel, int32_t* multiplier,
                                      int8_t* shift);

/* Where the shifts start: after `count` multipliers. */
static inline int8_t* tt_conv_shifts(int32_t* multipliers, int32_t count) {
  return (int8_t*)(multipliers + count);
}

/* Checks strides and dilations (stride_*, dilation_* already set in
 * *window), computes the output size and leading padding of each axis the
 * way TFLite does, requires the output tensor to have that size, and fills
 * pad_h / pad_w. Sizes are bounded so that every window coordinate eval
 * computes fits in int32. */
tt_status tt_conv_prepare_window(tt_interpreter* interpreter,
                                 const tt_node* node, int32_t padding,
                                 int32_t in_h, int32_t in_w, int32_t filter_h,
                                 int32_t filter_w, int32_t out_h, int32_t out_w,
                                 tt_conv_window* window);

/* Op data: a header plus count int32 multipliers and count int8 shifts. */
tt_status tt_conv_alloc_op_data(tt_interpreter* interpreter, tt_node* node,
                                uint32_t header_size, int32_t count,
                                void** data);

/* tt_conv_multiplier_count, tt_conv_alloc_op_data, then the multipliers and
 * shifts after the header by tt_conv_channel_multipliers: op data whose
 * header the caller fills in. */
tt_status tt_conv_alloc_channel_op_data(
    tt_interpreter* interpreter, tt_node* node, const tt_tensor* input,
    const tt_tensor* filter, const tt_tensor* output, uint32_t header_size,
    int32_t quantized_dimension, int32_t num_channels, int32_t* count,
    void** data);

#endif /* TFLM_TRAINING_TT_CONV_PARAMS_H_ */
