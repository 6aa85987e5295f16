#include "tt_depthwise_dsp_loops.h"

#if TT_HAVE_DSP

void tt_depthwise_dsp_group_multiplied(gather_kind kind,
                                       const tt_depthwise_shape* s,
                                       const tt_conv_geometry* g,
                                       const tt_conv_eval_view* view,
                                       const int8_t* image, int8_t* out,
                                       int32_t oc, const tt_i16x2* weights) {
  group_over_image(kind, s, g, view, image, out, oc, weights);
}

#endif
