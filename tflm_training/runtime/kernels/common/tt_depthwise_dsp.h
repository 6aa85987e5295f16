/* DEPTHWISE_CONV_2D on the Cortex-M4's DSP extension (tt_dsp.h), four
 * output channels at a time: their weights are widened to int16 once for
 * the whole image, and each tap inside the window costs one input load,
 * its widening and four 16-bit multiply-accumulates (SMLABB / SMLATT).
 * Depth multipliers 1, 2 and multiples of 4 have a way to gather the four
 * channels' inputs in a word; others, and channels left over past a
 * multiple of four, take the portable path. Bit-exact with it: the same
 * int32 products, summed with wrap-around.
 *
 * Buffer needs: two int16 pairs per filter tap for the four channels on
 * the stack (at most TT_DEPTHWISE_DSP_MAX_TAPS taps: 2 KB), nothing in the
 * arena. */
#ifndef TFLM_TRAINING_TT_DEPTHWISE_DSP_H_
#define TFLM_TRAINING_TT_DEPTHWISE_DSP_H_

#include <stdbool.h>
#include <stdint.h>

#include "kernels/common/tt_conv_op_data.h"
#include "kernels/common/tt_dsp.h"

#define TT_DEPTHWISE_DSP_MAX_TAPS 256

#if TT_HAVE_DSP
/* Output channels 0 .. the returned count - 1 (a multiple of 4, maybe 0)
 * are what tt_depthwise_dsp_eval computes for a shape *s. */
int32_t tt_depthwise_dsp_channels(const tt_depthwise_shape* s);

/* Those channels of every output pixel of the batch. */
void tt_depthwise_dsp_eval(const tt_depthwise_shape* s,
                           const tt_conv_window* window,
                           const tt_conv_eval_view* view);
#endif

#endif /* TFLM_TRAINING_TT_DEPTHWISE_DSP_H_ */
