#include "training/tt_loss.h"

#include <stddef.h>

#include "math/tt_math.h"

float tt_softmax_cross_entropy(const int8_t* logits, int32_t count, float scale,
                               int32_t label, tt_grad* grad) {
  /* Shifting by the largest logit keeps every exponent <= 0. */
  int32_t max_q = logits[0];
  for (int32_t i = 1; i < count; ++i)
    if (logits[i] > max_q) max_q = logits[i];
  float sum = 0.0f;
  for (int32_t i = 0; i < count; ++i)
    sum += tt_expf(scale * (float)(logits[i] - max_q));
  if (grad != NULL) {
    /* The same exponentials again, so that only the result is stored. */
    for (int32_t i = 0; i < count; ++i) {
      float g = tt_expf(scale * (float)(logits[i] - max_q)) / sum;
      if (i == label) g -= 1.0f;
      grad[i] = tt_grad_from_float(g);
    }
  }
  return tt_logf(sum) - scale * (float)(logits[label] - max_q);
}
