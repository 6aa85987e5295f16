/* On-device training: the public C API.
 *
 * A trainer owns an interpreter over the same model and arena, plus what
 * the training plan asks for. One training step runs the int8 forward
 * pass exactly as inference does, keeping only what the backward pass
 * needs; computes softmax cross-entropy on the dequantized int8 logits;
 * then walks the operators backwards in float32, from the logits down to
 * the earliest operator the plan trains (nothing is computed or kept for
 * the frozen part before it). Gradients are real-valued: dL/dx for the
 * dequantized x = scale * (q - zero_point). Each selected channel's weight
 * gradient is applied right after it is computed (tt_optimizer.h), so
 * weight gradients never coexist (a low-rank layer adds it to its compact
 * gradient instead and makes its Adam step after its backward pass); updated
 * int8 weights / int32 biases feed the next forward pass directly.
 *
 * Arena layout: the interpreter's tables and kernel data; then the
 * trainer's tables, RAM copies of the trainable weight and bias tensors
 * (the model may sit in flash), and the optimizer state of the selected
 * channels (for a low-rank layer its weight residual and tt_lowrank.h
 * state block, counted as optimizer_state), then the one pool of the
 * sampled layers' state (sampled_state, tt_channel_sampler.h); then one
 * planned region holding activations, the activations
 * kept for backward, 1-bit activation masks, float gradients and kernel
 * scratch (tt_buffer_planner.h). Inference through the trainer's
 * interpreter uses the same region.
 *
 * Memory timeline used for planning, with N operators: forward step of
 * operator i is i; the loss is step N; the backward step of operator i is
 * 2N - i. An activation lives from its producer's step to its last reader
 * (extended to the backward step of an operator that saves it); a
 * gradient from the backward step of its last consumer, which zeroes it
 * before every consumer adds into it, to its producer's; a clamp mask from
 * its operator's forward step to its backward step; scratch for one
 * backward step.
 *
 * The backward pass visits an operator when the plan trains it or a
 * gradient reaches it from one that is trained, and its output feeds the
 * logits; a training step's forward pass stops at the operator writing the
 * logits (the final SOFTMAX, which the loss replaces, is not run). */
#ifndef TFLM_TRAINING_TT_TRAINER_H_
#define TFLM_TRAINING_TT_TRAINER_H_

#include <stdbool.h>
#include <stdint.h>

#include "tt_interpreter.h"

typedef struct {
  uint32_t interpreter_tables; /* model tables and kernel data */
  uint32_t trainer_tables;     /* plan tables and backward bookkeeping */
  uint32_t weight_copies;      /* RAM copies of trainable weights / biases */
  uint32_t optimizer_state;    /* residuals, momentum, batch accumulators
                                  of the static layers (kinds 0 and 1) and
                                  low-rank layers' state (tt_lowrank.h) */
  uint32_t sampled_state;      /* the pool of the sampled layers' state
                                  (sample_budget bytes, tt_channel_sampler.h) */
  uint32_t planned_region;     /* activations, saved tensors, gradients */
  uint32_t total;              /* == tt_trainer_arena_used() */
} tt_training_memory;

/* A training step's work per operator, for profilers
 * (tt_trainer_set_operator_hook): `run(work)` does the operator's forward
 * (TT_PHASE_FORWARD) or backward (TT_PHASE_BACKWARD) work of the step. */
enum { TT_PHASE_FORWARD = 0, TT_PHASE_BACKWARD = 1 };
typedef tt_status (*tt_operator_run)(void* work);
typedef tt_status (*tt_operator_hook)(void* context, int32_t operator_index,
                                      int32_t phase, tt_operator_run run,
                                      void* work);

typedef struct {
  tt_interpreter interpreter;
  /* Arena offsets of the trainer's tables (tt_trainer_internal.h). */
  int32_t layers_offset;
  int32_t num_layers;
  int32_t tensor_info_offset;
  int32_t node_info_offset;
  int32_t first_backward_node; /* earliest operator the backward pass visits */
  int32_t loss_node;           /* operator writing the logits: a training
                                  step's forward pass ends there */
  uint32_t interpreter_tables_bytes;
  uint32_t trainer_tables_bytes;
  uint32_t weight_copies_bytes;
  uint32_t optimizer_state_bytes;
  int32_t samples_in_batch; /* accumulated since the last update */
  uint32_t steps;           /* training steps taken */
  float learning_rate;
  float momentum;
  int32_t batch_size;
  int32_t flags;
  int32_t logits_tensor;
  int32_t num_classes;
  /* Adam settings of the low-rank layers (tt_lowrank.h); 0 without. */
  float adam_beta1;
  float adam_beta2;
  float adam_epsilon;
  /* Channel sampling (tt_channel_sampler.h); offsets are -1 and counts 0
   * when no layer is sampled. */
  int32_t sample_order_offset; /* uint16 per candidate: the shuffle */
  int32_t sample_pool_offset;  /* the state pool, sample_budget bytes */
  int32_t sampled_candidates;  /* of all sampled layers */
  int32_t sample_budget;
  uint32_t sampled_state_bytes;
  uint32_t seed;
  uint32_t epoch; /* of the current channel selection */
  /* Set only inside tt_trainer_gradient_norms. */
  float* probe_weight_sq;
  float* probe_bias_sq;
  bool probing;
  bool ready;
  /* tt_trainer_set_undo: where a step keeps the learned block; NULL when
   * steps are not all or nothing. */
  uint8_t* undo;
  /* tt_trainer_set_operator_hook; NULL: operators run directly. */
  tt_operator_hook operator_hook;
  void* operator_hook_context;
} tt_trainer;

/* Loads the model and checks the plan against it (TT_ERR_BAD_PLAN says
 * what does not fit), then lays out the arena. The model must stay alive
 * and unchanged for the trainer's lifetime; the plan is only read here. */
tt_status tt_trainer_init(tt_trainer* trainer, const uint8_t* model,
                          uint32_t model_size, const uint8_t* plan,
                          uint32_t plan_size, uint8_t* arena,
                          uint32_t arena_size);

/* One sample: forward, loss, backward, and (every batch_size samples) the
 * update. `input` must match graph input 0 exactly (type and bytes).
 * TT_ERR_DIVERGED when the loss or a gradient is NaN or infinite. A failed
 * step does not count towards the batch. With an undo buffer
 * (tt_trainer_set_undo) a step is all or nothing: a failed one leaves
 * every weight, bias and optimizer value as it was. Without one, the
 * channel being updated is left untouched but channels updated earlier in
 * the same step keep their update (the learner then rolls back to its
 * saved state, tt_learner.h). Activations other than the weights are not
 * kept after a step. */
tt_status tt_trainer_step(tt_trainer* trainer, const void* input,
                          uint32_t input_bytes, int32_t label, float* loss);

/* Makes every later step all or nothing: before a step the trainer copies
 * what a step changes (the learned block of tt_trainer_state.h: trained
 * weights and biases, optimizer state) into `undo`, and copies it back when
 * the step fails. `undo` (tt_trainer_undo_bytes() bytes, outside the
 * arena) must live as long as the trainer; NULL (size 0) turns it off.
 * The copy costs one memcpy of the block per step, and its RAM. */
tt_status tt_trainer_set_undo(tt_trainer* trainer, uint8_t* undo,
                              uint32_t size);

/* Bytes an undo buffer needs (0 before init). */
uint32_t tt_trainer_undo_bytes(const tt_trainer* trainer);

/* Profiling: from now on, tt_trainer_step and tt_trainer_gradient_norms
 * hand each operator's forward and backward work to hook(context,
 * operator, phase, run, work), which must call run(work) once and return
 * its status (e.g. measuring the instructions it takes). NULL removes it. */
void tt_trainer_set_operator_hook(tt_trainer* trainer, tt_operator_hook hook,
                                  void* context);

/* Starts epoch `epoch`: draws the channels every sampled layer
 * (TT_UPDATE_SAMPLED) trains until the next call and zeroes their
 * optimizer state (tt_channel_sampler.h). The draw depends only on the
 * plan's seed and `epoch`. tt_trainer_init draws epoch 0; nothing happens
 * for a plan without sampled layers. With sampled layers an epoch must
 * start on a batch boundary (TT_ERR_BAD_STATE otherwise: the redraw would
 * drop the unfinished batch). */
tt_status tt_trainer_begin_epoch(tt_trainer* trainer, uint32_t epoch);

/* The output channels plan layer `layer` trains now, ascending; *count of
 * them (0 is possible for a sampled layer). NULL (and *count 0) for a
 * layer that does not exist. Valid until the next tt_trainer_begin_epoch. */
const int32_t* tt_trainer_layer_channels(const tt_trainer* trainer,
                                         int32_t layer, int32_t* count);

/* The selected channels of all layers together: the length of the
 * gradient probe's arrays. */
int32_t tt_trainer_selected_slots(const tt_trainer* trainer);

/* The gradient probe, for ranking layers and channels: one sample's
 * forward pass, loss and backward pass, updating nothing (no weight,
 * bias, optimizer state or batch count changes). For each layer in plan
 * order and each of its selected channels in slot order (the layout of
 * tt_trainer_layer_channels, concatenated), adds the squared L2 norm of
 * the real-valued dL/dW of that channel (before QAS scaling; 0 for
 * bias-only layers) to weight_sq_norms[i] and (dL/db)^2 to
 * bias_sq_norms[i] (0 without a bias). Either array may be NULL; each has
 * tt_trainer_selected_slots() floats. *loss gets the loss (may be NULL). */
tt_status tt_trainer_gradient_norms(tt_trainer* trainer, const void* input,
                                    uint32_t input_bytes, int32_t label,
                                    float* weight_sq_norms,
                                    float* bias_sq_norms, float* loss);

/* Forward only; the class with the largest logit. */
tt_status tt_trainer_predict(tt_trainer* trainer, const void* input,
                             uint32_t input_bytes, int32_t* predicted_class);

tt_interpreter* tt_trainer_interpreter(tt_trainer* trainer);
uint32_t tt_trainer_arena_used(const tt_trainer* trainer);
void tt_trainer_memory(const tt_trainer* trainer, tt_training_memory* memory);
const tt_error* tt_trainer_error(const tt_trainer* trainer);
uint32_t tt_sizeof_trainer(void);

/* The bits of a stored activation gradient in this build: 32, or 16
 * (TT_GRADIENT_BITS, tt_grad.h). */
int32_t tt_gradient_bits(void);

#endif /* TFLM_TRAINING_TT_TRAINER_H_ */
