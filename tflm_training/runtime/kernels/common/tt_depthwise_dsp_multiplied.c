#include "kernels/common/tt_depthwise_dsp_loops.h"

#if TT_HAVE_DSP

void tt_depthwise_dsp_group_multiplied(gather_kind kind,
                                       const tt_depthwise_shape* s,
                                       const tt_conv_geometry* g,
                                       const tt_conv_eval_view* view,
                                       const int8_t* image, int8_t* out,
                                       int32_t oc, const tt_i16x2* weights) {
  /* Each kind with code of its own: only models that have such a layer
   * carry this object. */
  if (kind == GATHER_TWO_TWICE) {
    group_over_image(GATHER_TWO_TWICE, s, g, view, image, out, oc, weights);
  } else {
    group_over_image(GATHER_ONE, s, g, view, image, out, oc, weights);
  }
}

#endif
