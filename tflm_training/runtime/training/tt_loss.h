/* The training loss: softmax cross-entropy on int8 logits. */
#ifndef TFLM_TRAINING_TT_LOSS_H_
#define TFLM_TRAINING_TT_LOSS_H_

#include <stdint.h>

#include "math/tt_grad.h"

/* For the dequantized logits z_i = scale * (logits[i] - zero_point) and the
 * true class `label` (0 <= label < count): returns
 * L = log(sum_i e^z_i) - z_label and writes dL/dz_i = softmax(z)_i -
 * [i == label] into grad[0, count) (grad may be NULL: the loss only).
 * The zero point cancels out of both. */
float tt_softmax_cross_entropy(const int8_t* logits, int32_t count, float scale,
                               int32_t label, tt_grad* grad);

#endif /* TFLM_TRAINING_TT_LOSS_H_ */
