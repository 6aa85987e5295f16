/* The inner loops of tt_depthwise_dsp.c, shared with
 * tt_depthwise_dsp_multiplied.c: only the runtime's DSP depthwise files
 * include this. */
#ifndef TFLM_TRAINING_TT_DEPTHWISE_DSP_LOOPS_H_
#define TFLM_TRAINING_TT_DEPTHWISE_DSP_LOOPS_H_

#include "kernels/common/tt_depthwise_dsp.h"

#if TT_HAVE_DSP

/* How the inputs of a group of four output channels sit in one tap's
 * pixel: the even pair feeds channels 0 and 2, the odd pair 1 and 3. */
typedef enum {
  GATHER_FOUR,      /* multiplier 1: four adjacent input channels */
  GATHER_TWO_TWICE, /* multiplier 2: channels 0, 1 read c, 2, 3 read c + 1 */
  GATHER_ONE,       /* a multiple of 4: all four read one channel */
} gather_kind;

static inline __attribute__((always_inline)) void gather(gather_kind kind,
                                                         const int8_t* in,
                                                         tt_i16x2 offsets,
                                                         tt_i16x2* even,
                                                         tt_i16x2* odd) {
  if (kind == GATHER_FOUR) {
    tt_dsp_widen(tt_dsp_load4(in), offsets, even, odd);
    return;
  }
  uint32_t bytes; /* the value for the low half in byte 0, high in byte 2 */
  if (kind == GATHER_TWO_TWICE) {
    const uint32_t two = (uint8_t)in[0] | (uint32_t)(uint8_t)in[1] << 8;
    bytes = two | two << 8;
  } else {
    bytes = (uint8_t)in[0] * 0x10001u;
  }
  *even = *odd = tt_dsp_sxtab16(offsets, bytes);
}

/* The four channels' sums so far, in registers. */
typedef struct {
  int32_t a0, a1, a2, a3;
} sums;

/* s + the products of one tap: `in` points at the group's first input
 * channel in the tap's pixel, w at the tap's even and odd weight pairs. */
static inline __attribute__((always_inline)) sums mac_tap(gather_kind kind,
                                                          const int8_t* in,
                                                          tt_i16x2 offsets,
                                                          const tt_i16x2* w,
                                                          sums s) {
  tt_i16x2 even, odd;
  gather(kind, in, offsets, &even, &odd);
  s.a0 = tt_dsp_smlabb(even, w[0], s.a0);
  s.a2 = tt_dsp_smlatt(even, w[0], s.a2);
  s.a1 = tt_dsp_smlabb(odd, w[1], s.a1);
  s.a3 = tt_dsp_smlatt(odd, w[1], s.a3);
  return s;
}

/* The sums of one output pixel for the group: `input` points at the
 * group's first input channel in the image, weights[2 t] and
 * weights[2 t + 1] are tap t's even and odd weight pairs. Rows of three
 * taps (3x3 windows, the common case) are unrolled. Offsets into the
 * input stay integers, so no pointer steps past the image. */
static inline __attribute__((always_inline)) sums
accumulate(gather_kind kind, const tt_conv_taps* taps, const int8_t* input,
           const tt_i16x2* weights, tt_i16x2 offsets) {
  sums s = {0, 0, 0, 0};
  const int32_t step = taps->input_col_step;
  const int8_t* in = input + taps->input_start;
  const tt_i16x2* w = weights + 2 * taps->filter_start;
  /* A whole 3x3 window (the common case) straight through. */
  if (taps->rows == 3 && taps->cols == 3 && taps->filter_row_step == 3) {
    const int8_t* row1 = in + taps->input_row_step;
    const int8_t* row2 = row1 + taps->input_row_step;
    s = mac_tap(kind, in, offsets, w, s);
    s = mac_tap(kind, in + step, offsets, w + 2, s);
    s = mac_tap(kind, in + 2 * step, offsets, w + 4, s);
    s = mac_tap(kind, row1, offsets, w + 6, s);
    s = mac_tap(kind, row1 + step, offsets, w + 8, s);
    s = mac_tap(kind, row1 + 2 * step, offsets, w + 10, s);
    s = mac_tap(kind, row2, offsets, w + 12, s);
    s = mac_tap(kind, row2 + step, offsets, w + 14, s);
    s = mac_tap(kind, row2 + 2 * step, offsets, w + 16, s);
    return s;
  }
  for (int32_t row = 0; row < taps->rows; ++row) {
    if (taps->cols == 3) {
      s = mac_tap(kind, in, offsets, w, s);
      s = mac_tap(kind, in + step, offsets, w + 2, s);
      s = mac_tap(kind, in + 2 * step, offsets, w + 4, s);
    } else {
      int32_t at = 0;
      for (int32_t col = 0; col < taps->cols; ++col) {
        s = mac_tap(kind, in + at, offsets, w + 2 * col, s);
        at += step;
      }
    }
    if (row + 1 < taps->rows) { /* no step past the last row */
      in += taps->input_row_step;
      w += 2 * taps->filter_row_step;
    }
  }
  return s;
}

/* Output channels oc .. oc + 3 of every pixel of one image. */
static inline __attribute__((always_inline)) void group_over_image(
    gather_kind kind, const tt_depthwise_shape* s, const tt_conv_geometry* g,
    const tt_conv_eval_view* view, const int8_t* image, int8_t* out, int32_t oc,
    const tt_i16x2* weights) {
  const tt_conv_quant quant = *view->quant;
  tt_conv_channel_scale scales[4];
  for (int32_t i = 0; i < 4; ++i) {
    scales[i] = tt_conv_channel_scale_of(view, oc + i);
  }
  const tt_i16x2 offsets = tt_dsp_pair(quant.input_offset);
  const int8_t* input = image + oc / s->depth_multiplier;
  for (int32_t y = 0; y < s->out_h; ++y) {
    for (int32_t x = 0; x < s->out_w; ++x) {
      const tt_conv_taps taps = tt_conv_pixel_taps_inline(g, y, x);
      const sums acc = accumulate(kind, &taps, input, weights, offsets);
      out[oc] = tt_conv_scaled_output(&scales[0], &quant, acc.a0);
      out[oc + 1] = tt_conv_scaled_output(&scales[1], &quant, acc.a1);
      out[oc + 2] = tt_conv_scaled_output(&scales[2], &quant, acc.a2);
      out[oc + 3] = tt_conv_scaled_output(&scales[3], &quant, acc.a3);
      out += s->out_c;
    }
  }
}

/* group_over_image for depth multipliers 2 and 4k, in its own object:
 * firmware links it only for models that have such a layer
 * (tools/firmware_build.kernel_symbols); without it those layers take the
 * portable path. */
void tt_depthwise_dsp_group_multiplied(
    gather_kind kind, const tt_depthwise_shape* s, const tt_conv_geometry* g,
    const tt_conv_eval_view* view, const int8_t* image, int8_t* out, int32_t oc,
    const tt_i16x2* weights) __attribute__((weak));

#endif

#endif /* TFLM_TRAINING_TT_DEPTHWISE_DSP_LOOPS_H_ */
