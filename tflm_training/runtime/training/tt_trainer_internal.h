/* The trainer's arena records, shared by tt_trainer*.c. Like the
 * interpreter's, they hold offsets and numbers, never pointers. */
#ifndef TFLM_TRAINING_TT_TRAINER_INTERNAL_H_
#define TFLM_TRAINING_TT_TRAINER_INTERNAL_H_

#include "kernels/common/tt_backward.h"
#include "memory/tt_arena.h"
#include "training/tt_training_plan.h"
#include "tt_trainer.h"

enum {                          /* tt_train_tensor.flags */
       TT_TRAIN_FEEDS_LOSS = 1, /* the logits depend on it */
       TT_TRAIN_HAS_GRAD = 2,   /* the backward pass computes its gradient */
       TT_TRAIN_PARAM_COPY =
           4, /* trainable weights / bias copied to the arena */
};

typedef struct {
  int32_t flags;
  int32_t producer;    /* operator writing it; -1 for inputs and constants */
  int32_t grad_offset; /* arena offset of the float gradient, or -1 */
  /* The operator whose backward adds into the gradient first (the latest
   * consumer; num_nodes for the loss). It zeroes the gradient. */
  int32_t grad_writer;
} tt_train_tensor;

enum {                       /* tt_train_node.flags */
       TT_TRAIN_VISITED = 1, /* the backward pass runs this operator */
       TT_TRAIN_TRAINED = 2, /* the plan updates its parameters */
       TT_TRAIN_MASKED = 4,  /* its output gradient passes a clamp mask */
       /* It writes input 0's gradient over its output gradient: set where the
        * kernel offers it and the node is the gradient's only writer before
        * the others add, kept only when sharing makes the region smaller. */
       TT_TRAIN_IN_PLACE = 8,
};

typedef struct {
  int32_t flags;
  int32_t layer;       /* into the layer table; -1 when frozen */
  int32_t mask_offset; /* 1 bit per output value (clamp), or -1 */
  int32_t clamp_min;   /* gradient flows where clamp_min < q < clamp_max */
  int32_t clamp_max;
  int32_t scratch_offset; /* or -1 */
  uint32_t scratch_bytes; /* in place: the in-place scratch */
  uint32_t saved_inputs;  /* tt_backward_needs.saved_inputs */
} tt_train_node;

enum { /* tt_train_layer.state: optimizer state arrays */
       TT_STATE_WEIGHT_RESIDUAL,
       TT_STATE_WEIGHT_VELOCITY,
       TT_STATE_WEIGHT_ACCUMULATOR,
       TT_STATE_BIAS_RESIDUAL,
       TT_STATE_BIAS_VELOCITY,
       TT_STATE_BIAS_ACCUMULATOR,
       TT_STATE_COUNT,
};

typedef struct {
  int32_t operator_index;
  int32_t kind;            /* tt_update_kind of the plan */
  int32_t num_channels;    /* selected now */
  int32_t channels_offset; /* arena offset of the int32 selected channels */
  int32_t weights_per_channel;
  int32_t has_bias;
  float learning_rate; /* the plan's rate times the layer's lr_scale */
  int32_t state[TT_STATE_COUNT]; /* arena offsets of float arrays, or -1;
                                    in the sample pool for sampled layers */
  /* The plan's channel list: the selection itself for kinds 0 and 1, the
   * candidates for a sampled layer, whose selection list (channels_offset)
   * follows it with room for all of them. */
  int32_t candidates_offset;
  int32_t num_candidates;
  int32_t channel_cost; /* sampled layers: bytes of the budget */
  int32_t sample_base;  /* sampled candidates of the layers before it */
  /* Low-rank layers (tt_lowrank.h); -1 / 0 for the others. */
  int32_t lowrank_offset; /* arena offset of the state block */
  int32_t rank;
  int32_t refresh_steps;
} tt_train_layer;

static inline tt_train_tensor* tt_train_tensors(const tt_trainer* t) {
  return (tt_train_tensor*)tt_arena_at(&t->interpreter, t->tensor_info_offset);
}

static inline tt_train_node* tt_train_nodes(const tt_trainer* t) {
  return (tt_train_node*)tt_arena_at(&t->interpreter, t->node_info_offset);
}

static inline tt_train_layer* tt_train_layers(const tt_trainer* t) {
  return (tt_train_layer*)tt_arena_at(&t->interpreter, t->layers_offset);
}

/* Tensor index of a node's input / output i (-1 for an absent input). */
static inline int32_t tt_train_input(const tt_interpreter* it,
                                     const tt_node* node, int32_t i) {
  return ((const int32_t*)tt_arena_at(it, node->inputs_offset))[i];
}

static inline int32_t tt_train_output(const tt_interpreter* it,
                                      const tt_node* node, int32_t i) {
  return ((const int32_t*)tt_arena_at(it, node->outputs_offset))[i];
}

/* The layer's update as the backward kernels see it; state pointers are
 * NULL before the optimizer state exists. */
void tt_train_layer_update(tt_trainer* trainer, const tt_train_layer* layer,
                           bool apply, tt_layer_update* update);

/* Setup (tt_trainer_setup.c): tables, graph analysis, backward prepare,
 * parameter copies and optimizer state, in arena order. */
tt_status tt_train_build_tables(tt_trainer* trainer, const uint8_t* plan,
                                const tt_plan_info* info);
tt_status tt_train_copy_parameters(tt_trainer* trainer);
tt_status tt_train_alloc_state(tt_trainer* trainer);

/* Low-rank layers (tt_trainer_lowrank.c): allocates and initialises the
 * layer's state block (in tt_train_alloc_state), and makes its Adam step
 * once its backward pass has handed over every channel of an update. */
tt_status tt_train_lowrank_alloc(tt_trainer* trainer, tt_train_layer* layer);
tt_status tt_train_lowrank_apply(tt_trainer* trainer,
                                 const tt_train_layer* layer);

/* Channel sampling (tt_channel_sampler.c): draws the selection of every
 * sampled layer for `epoch`, places their state in the pool, zeroes it. */
void tt_train_resample(tt_trainer* trainer, uint32_t epoch);

/* The planned region (tt_trainer_region.c), after everything persistent. */
tt_status tt_train_plan_region(tt_trainer* trainer);

#endif /* TFLM_TRAINING_TT_TRAINER_INTERNAL_H_ */
