/* Low-rank layers in the trainer (TT_UPDATE_LOWRANK, tt_lowrank.h): their
 * state block, allocated with the optimizer state, and the Adam step the
 * trainer runs once the layer's backward pass has handed every channel of
 * an update to tt_update_channel. */
#include <stddef.h>

#include "kernels/common/tt_kernel.h"
#include "optimizer/tt_lowrank.h"
#include "training/tt_trainer_internal.h"

tt_status tt_train_lowrank_alloc(tt_trainer* t, tt_train_layer* layer) {
  tt_interpreter* it = &t->interpreter;
  const int32_t rows = layer->num_channels; /* all (tt_training_plan.c) */
  const int32_t cols = layer->weights_per_channel;
  if ((t->flags & TT_PLAN_FLAG_NO_RESIDUAL) == 0)
    TT_RETURN_IF_ERROR(tt_arena_alloc_persistent(
        it, (uint64_t)rows * (uint64_t)cols * sizeof(float),
        "the optimizer state", &layer->state[TT_STATE_WEIGHT_RESIDUAL]));
  const uint64_t bytes = tt_lowrank_state_bytes(rows, cols, layer->rank);
  if (bytes == UINT64_MAX)
    return tt_error_set(&it->error, TT_ERR_BAD_PLAN,
                        "training plan: operator %d: rank %d does not fit "
                        "its %d x %d weights",
                        layer->operator_index, layer->rank, rows, cols);
  TT_RETURN_IF_ERROR(tt_arena_alloc_persistent(it, bytes, "the low-rank state",
                                               &layer->lowrank_offset));
  tt_lowrank_init(tt_arena_at(it, layer->lowrank_offset), rows, cols,
                  layer->rank, layer->refresh_steps,
                  tt_lowrank_seed(t->seed, layer->operator_index));
  return TT_OK;
}

tt_status tt_train_lowrank_apply(tt_trainer* t, const tt_train_layer* layer) {
  tt_interpreter* it = &t->interpreter;
  const tt_node* node = &it->nodes[layer->operator_index];
  const tt_tensor* filter = tt_node_input(it, node, 1);
  int8_t* weights = filter != NULL ? (int8_t*)tt_tensor_data(it, filter) : NULL;
  if (weights == NULL || filter->location != TT_DATA_ARENA ||
      layer->lowrank_offset < 0)
    return tt_node_fail(it, node, TT_ERR_BAD_STATE,
                        "a low-rank update needs the weights' RAM copy and "
                        "the layer's low-rank state");
  const tt_lowrank_adam adam = {layer->learning_rate, t->adam_beta1,
                                t->adam_beta2, t->adam_epsilon,
                                1.0f / (float)t->batch_size};
  const int32_t residual = layer->state[TT_STATE_WEIGHT_RESIDUAL];
  void* state = tt_arena_at(it, layer->lowrank_offset);
  if (!tt_lowrank_apply(
          state, &adam, weights, layer->weights_per_channel,
          residual >= 0 ? (float*)tt_arena_at(it, residual) : NULL)) {
    tt_lowrank_discard(state);
    return tt_node_fail(it, node, TT_ERR_DIVERGED,
                        "training diverged: its low-rank Adam step is NaN "
                        "or infinite (the batch's gradient is dropped); "
                        "lower the learning rate");
  }
  return TT_OK;
}
