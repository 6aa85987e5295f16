/* What a backward kernel implements.
 *
 * Each operator that training can pass through has a backward kernel in
 * kernels/<op>_backward.c, beside its forward twin, defining
 * `const tt_backward_kernel tt_backward_<name>` listed in
 * tt_backward_registry.c. Gradients are real-valued (dL/dx for the
 * dequantized tensor), stored as tt_grad (tt_grad.h: float32, or bfloat16
 * in the 16-bit build) and computed in float32. Inputs to backward kernels are
 * the int8 tensors of the forward pass (the trainer keeps the ones `prepare`
 * asks for) and the output's gradient with the fused-activation / saturation
 * mask already applied by the trainer.
 *
 * Keep the math in small pure functions over plain arrays and shape
 * structs (tests call them directly and compare with TensorFlow autodiff). */
#ifndef TFLM_TRAINING_TT_BACKWARD_H_
#define TFLM_TRAINING_TT_BACKWARD_H_

#include <stdbool.h>
#include <stdint.h>

#include "kernels/common/tt_kernel.h"
#include "math/tt_grad.h"
#include "optimizer/tt_optimizer.h"

#define TT_BACKWARD_MAX_INPUTS 8

/* Bits of tt_backward_needs.saved_inputs: forward inputs the backward
 * kernel reads (bit i = input i). */
typedef struct {
  uint32_t saved_inputs;  /* which inputs must be kept until backward */
  uint32_t scratch_bytes; /* float scratch during this op's backward */
  bool has_clamp;         /* output passes gradient only inside a range */
  int32_t clamp_min;      /* gradient flows where clamp_min < q < clamp_max */
  int32_t clamp_max;
  /* The kernel can write input 0's gradient over the output gradient's
   * memory (tt_backward_io.in_place), given this scratch instead of
   * scratch_bytes. Offered only where the bits are those of the separate
   * buffers; the trainer decides whether to take it. */
  bool in_place;
  uint32_t in_place_scratch_bytes;
} tt_backward_needs;

typedef struct {
  const tt_grad* output_grad; /* dL/dy for output 0, already masked */
  /* += dL/dx for each input; NULL where no gradient is wanted (constants,
   * and inputs produced before the earliest trained operator). */
  tt_grad* input_grads[TT_BACKWARD_MAX_INPUTS];
  float* scratch;          /* needs.scratch_bytes, 16-byte aligned */
  tt_layer_update* update; /* NULL for an operator the plan freezes */
  /* input_grads[0] is output_grad's memory (needs.in_place; scratch is
   * needs.in_place_scratch_bytes): the kernel writes dL/dx there, as if
   * adding to zeros, after its last read of dL/dy. */
  bool in_place;
} tt_backward_io;

typedef struct {
  int32_t builtin_code;
  bool has_parameters; /* weights / biases a plan may select */
  /* Checks the operator can run backward; `update` is NULL when frozen,
   * else says what will train (kind, channels, weights_per_channel; its
   * optimizer state pointers are still NULL). Fills `needs`, which starts
   * cleared. Runs once at trainer init, after the forward prepare and
   * before trainable tensors move to their RAM copies; allocates nothing
   * (the node's op data stays the forward kernel's). */
  tt_status (*prepare)(tt_interpreter* interpreter, const tt_node* node,
                       const tt_layer_update* update, tt_backward_needs* needs);
  tt_status (*backward)(tt_interpreter* interpreter, const tt_node* node,
                        const tt_backward_io* io);
} tt_backward_kernel;

/* NULL when the operator has no backward kernel. */
const tt_backward_kernel* tt_backward_find(int32_t builtin_code);

#endif /* TFLM_TRAINING_TT_BACKWARD_H_ */
