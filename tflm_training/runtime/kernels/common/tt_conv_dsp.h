/* CONV_2D (one group) and FULLY_CONNECTED on the Cortex-M4's DSP
 * extension (tt_dsp.h). Each output pixel's window, or each input row,
 * is first widened to int16 with the input offset added (a "column",
 * zeros where the window lies on padding); then two filters meet two
 * columns at a time, so that every weight and input load feeds two
 * SMLADs: about 1.1 instructions per MAC. Bit-exact with the portable
 * kernels: the same int32 products, summed with wrap-around.
 *
 * Buffer needs: two columns of at most TT_CONV_DSP_MAX_DEPTH int16 values
 * (or one of twice that) and the unpacked scales of 64 output channels on
 * the stack (3.5 KB), nothing in the arena.
 * Deeper windows take the portable path. */
#ifndef TFLM_TRAINING_TT_CONV_DSP_H_
#define TFLM_TRAINING_TT_CONV_DSP_H_

#include <stdbool.h>
#include <stdint.h>

#include "kernels/common/tt_conv_op_data.h"
#include "kernels/common/tt_dsp.h"

#define TT_CONV_DSP_MAX_DEPTH 512

/* 1 when this build runs the DSP paths (real or emulated), else 0. */
int32_t tt_dsp_paths_enabled(void);

#if TT_HAVE_DSP
/* Whether the DSP path takes a CONV_2D of shape *s: one group, and a
 * window of at most TT_CONV_DSP_MAX_DEPTH values. */
bool tt_conv_dsp_supports(const tt_conv_shape* s);

/* CONV_2D over the whole batch (tt_conv_dsp_supports(s) must hold). */
void tt_conv_dsp_eval(const tt_conv_shape* s, const tt_conv_geometry* g,
                      const tt_conv_eval_view* view);

/* How many input rows of this depth the DSP path of FULLY_CONNECTED
 * takes at once: 2 up to TT_CONV_DSP_MAX_DEPTH, 1 up to twice that (the
 * two columns' room), else 0 (the portable path). */
int32_t tt_fc_dsp_rows(int32_t depth);

/* FULLY_CONNECTED of input rows first .. first + count - 1 (count 1 or
 * at most tt_fc_dsp_rows(depth)), each `depth` values long, into `units`
 * outputs each; terms[i] is added to every accumulator of row first + i before
 * the bias (the filter zero point's share, tt_fc_op_data). */
void tt_fc_dsp_eval_rows(const tt_conv_eval_view* view, int32_t depth,
                         int32_t units, int32_t first, int32_t count,
                         const int32_t terms[2]);
#endif

#endif /* TFLM_TRAINING_TT_CONV_DSP_H_ */
