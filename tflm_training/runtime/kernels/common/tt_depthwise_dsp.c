#include "kernels/common/tt_depthwise_dsp_loops.h"

#if TT_HAVE_DSP

int32_t tt_depthwise_dsp_channels(const tt_depthwise_shape* s) {
  const int32_t m = s->depth_multiplier;
  const bool gathered = m == 1 || ((m == 2 || m % 4 == 0) &&
                                   tt_depthwise_dsp_group_multiplied != NULL);
  if (!gathered) return 0;
  if ((int64_t)s->filter_h * s->filter_w > TT_DEPTHWISE_DSP_MAX_TAPS) {
    return 0;
  }
  return s->out_c & ~3;
}

void tt_depthwise_dsp_eval(const tt_depthwise_shape* s,
                           const tt_conv_window* window,
                           const tt_conv_eval_view* view) {
  tt_i16x2 weights[2 * TT_DEPTHWISE_DSP_MAX_TAPS];
  /* Taps counted one by one (tap size 1): filter_start is a tap index. */
  const tt_conv_geometry g = {*window,     s->in_h,     s->in_w, s->in_c,
                              s->filter_h, s->filter_w, 1};
  const int32_t taps = s->filter_h * s->filter_w;
  const int32_t channels = tt_depthwise_dsp_channels(s);
  const gather_kind kind = s->depth_multiplier == 1   ? GATHER_FOUR
                           : s->depth_multiplier == 2 ? GATHER_TWO_TWICE
                                                      : GATHER_ONE;
  const int32_t image_size = s->in_h * s->in_w * s->in_c;
  const int32_t out_size = s->out_h * s->out_w * s->out_c;
  for (int32_t oc = 0; oc < channels; oc += 4) {
    for (int32_t t = 0; t < taps; ++t) {
      const uint32_t w = tt_dsp_load4(view->filter + t * s->out_c + oc);
      weights[2 * t] = tt_dsp_sxtb16(w);
      weights[2 * t + 1] = tt_dsp_sxtb16_ror8(w);
    }
    for (int32_t b = 0; b < s->batches; ++b) {
      const int8_t* image = view->input + b * image_size;
      int8_t* out = view->output + b * out_size;
      if (kind == GATHER_FOUR) {
        group_over_image(GATHER_FOUR, s, &g, view, image, out, oc, weights);
      } else {
        tt_depthwise_dsp_group_multiplied(kind, s, &g, view, image, out, oc,
                                          weights);
      }
    }
  }
}

#endif
