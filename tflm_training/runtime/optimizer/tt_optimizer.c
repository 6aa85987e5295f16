#include "optimizer/tt_optimizer.h"

#include <stddef.h>

#include "math/tt_math.h"
#include "math/tt_quant.h"
#include "optimizer/tt_lowrank.h"

/* Optimizer state of one parameter (NULL where the layer keeps none). */
typedef struct {
  float* residual;
  float* velocity;
  float* accumulator;
} param_state;

/* What one parameter's state becomes, and the whole steps to move into its
 * integer value. */
typedef struct {
  float residual;
  float velocity;
  float accumulator;
  float steps;
} param_step;

static float load_or_zero(const float* p) { return p != NULL ? *p : 0.0f; }

/* grad is the quantized-domain gradient. False when anything would become
 * NaN or infinite. */
static bool plan_step(const tt_layer_update* u, const param_state* state,
                      float grad, param_step* step) {
  const float accumulated = load_or_zero(state->accumulator) + grad;
  step->residual = load_or_zero(state->residual);
  step->velocity = load_or_zero(state->velocity);
  step->steps = 0.0f;
  if (!u->apply) {
    step->accumulator = accumulated;
    return tt_is_finite(accumulated);
  }
  step->accumulator = 0.0f;
  const float g = accumulated * u->batch_scale;
  const float v = u->momentum > 0.0f ? u->momentum * step->velocity + g : g;
  const float r = step->residual - u->learning_rate * v;
  if (!tt_is_finite(g) || !tt_is_finite(v) || !tt_is_finite(r)) return false;
  step->velocity = v;
  step->steps = tt_round_float(r);
  step->residual = r - step->steps;
  return true;
}

static void store_step(const param_state* state, const param_step* step) {
  if (state->residual != NULL) *state->residual = step->residual;
  if (state->velocity != NULL) *state->velocity = step->velocity;
  if (state->accumulator != NULL) *state->accumulator = step->accumulator;
}

static param_state bias_state(const tt_layer_update* u, int32_t slot) {
  param_state s = {u->bias_residual ? u->bias_residual + slot : NULL,
                   u->bias_velocity ? u->bias_velocity + slot : NULL,
                   u->bias_accumulator ? u->bias_accumulator + slot : NULL};
  return s;
}

/* What a real-valued gradient is multiplied by in the quantized domain:
 * dL/dW_q = s dL/dW, and QAS then divides by s^2, so 1 / s with QAS and s
 * without. Once per channel: one division, not one per weight. */
static float grad_factor(const tt_layer_update* u, float scale) {
  return u->qas ? 1.0f / scale : scale;
}

static int8_t moved_weight(int8_t value, float steps) {
  if (steps == 0.0f) return value;
  /* 254 steps reach either end of [-127, 127] from anywhere in it. */
  const float k = steps > 254.0f ? 254.0f : (steps < -254.0f ? -254.0f : steps);
  return (int8_t)tt_clamp_i32((int32_t)value + (int32_t)k, -127, 127);
}

static int32_t moved_bias(int32_t value, float steps) {
  const float limit = 4294967296.0f; /* 2^32 steps span all of int32 */
  const float k = steps > limit ? limit : (steps < -limit ? -limit : steps);
  const int64_t sum = (int64_t)value + (int64_t)k;
  if (sum > INT32_MAX) return INT32_MAX;
  if (sum < INT32_MIN) return INT32_MIN;
  return (int32_t)sum;
}

/* One channel's weights as runs of arrays: their real-valued gradients,
 * the channel's quantized-domain factor, and their state (NULL where the
 * layer keeps none). plan_step's arithmetic, in the same order (the same
 * bits), written as loops over the run (on a Cortex-M4 a classifier
 * weight's update went from about 228 instructions to 60). */
typedef struct {
  const float* grad;
  float factor;
  float* residual;
  float* velocity;
  float* accumulator;
  int32_t count;
} weight_run;

/* The settings a run's loops read, copied out of the tt_layer_update
 * (stores into the float state could alias its fields, so the compiler
 * would reload them for every weight). */
typedef struct {
  bool apply;
  bool momentum;
  float momentum_rate;
  float learning_rate;
  float batch_scale;
} run_settings;

static run_settings settings_of(const tt_layer_update* u) {
  const run_settings s = {u->apply, u->momentum > 0.0f, u->momentum,
                          u->learning_rate, u->batch_scale};
  return s;
}

/* Weight i's gradient in the quantized domain plus what the batch has
 * accumulated. */
static inline float run_sum(const weight_run* r, int32_t i) {
  const float g = r->grad[i] * r->factor;
  return r->accumulator != NULL ? r->accumulator[i] + g : g;
}

/* Its new velocity (the batch mean, with momentum when the layer has it). */
static inline float run_velocity(const run_settings* s, const weight_run* r,
                                 int32_t i, float sum) {
  const float g = sum * s->batch_scale;
  return s->momentum ? s->momentum_rate * r->velocity[i] + g : g;
}

/* Whether every weight's step is finite. Applying, the new residual
 * r = residual - lr * v alone decides it: with a finite, non-negative
 * learning rate and finite state, r is finite exactly when v, the batch
 * mean and the gradient are. Accumulating, the new sum decides it. */
static bool weight_run_is_finite(const tt_layer_update* u,
                                 const weight_run* run) {
  const run_settings s = settings_of(u);
  const weight_run r = *run;
  for (int32_t i = 0; i < r.count; ++i) {
    const float sum = run_sum(&r, i);
    if (!s.apply) {
      if (!tt_is_finite(sum)) return false;
      continue;
    }
    const float v = run_velocity(&s, &r, i, sum);
    const float residual = r.residual != NULL ? r.residual[i] : 0.0f;
    if (!tt_is_finite(residual - s.learning_rate * v)) return false;
  }
  return true;
}

/* The steps of a run. With `check`, false at the first weight whose step
 * is not finite, the weights before it already written (the caller then
 * restores the channel); without, for a run weight_run_is_finite accepted. */
static inline __attribute__((always_inline)) bool weight_run_store(
    const tt_layer_update* u, const weight_run* run, int8_t* weights,
    int32_t stride, bool check) {
  const run_settings s = settings_of(u);
  const weight_run r = *run;
  for (int32_t i = 0; i < r.count; ++i) {
    const float sum = run_sum(&r, i);
    if (!s.apply) {
      if (check && !tt_is_finite(sum)) return false;
      r.accumulator[i] = sum;
      continue;
    }
    const float v = run_velocity(&s, &r, i, sum);
    const float residual =
        (r.residual != NULL ? r.residual[i] : 0.0f) - s.learning_rate * v;
    if (check && !tt_is_finite(residual)) return false;
    if (r.accumulator != NULL) r.accumulator[i] = 0.0f;
    if (r.velocity != NULL) r.velocity[i] = v;
    if (residual < 0.5f && residual > -0.5f) { /* no whole step: most */
      if (r.residual != NULL) r.residual[i] = residual; /* = residual - 0 */
      continue;
    }
    const float steps = tt_round_float(residual);
    if (r.residual != NULL) r.residual[i] = residual - steps;
    if (steps != 0.0f) {
      int8_t* w = weights + i * stride;
      *w = moved_weight(*w, steps);
    }
  }
  return true;
}

static tt_status check_arguments(const tt_layer_update* u, int32_t slot,
                                 const tt_channel_params* p,
                                 const float* weight_grad, bool weights) {
  if (u == NULL) return TT_ERR_INVALID_ARGUMENT;
  if (p == NULL || slot < 0 || slot >= u->num_channels)
    return tt_error_set(u->error, TT_ERR_INVALID_ARGUMENT,
                        "optimizer: channel slot %d is outside the %d "
                        "selected channels",
                        slot, u->num_channels);
  const bool momentum = u->momentum > 0.0f;
  if (weights && (weight_grad == NULL || p->weights == NULL ||
                  (momentum && u->weight_velocity == NULL) ||
                  (!u->apply && u->weight_accumulator == NULL)))
    return tt_error_set(u->error, TT_ERR_INVALID_ARGUMENT,
                        "optimizer: a weight update needs the weights, their "
                        "gradient and the layer's weight state");
  if (p->bias != NULL && ((momentum && u->bias_velocity == NULL) ||
                          (!u->apply && u->bias_accumulator == NULL)))
    return tt_error_set(u->error, TT_ERR_INVALID_ARGUMENT,
                        "optimizer: a bias update needs the layer's bias "
                        "state");
  if (!(p->weight_scale > 0.0f && tt_is_finite(p->weight_scale)) ||
      !(p->bias_scale > 0.0f && tt_is_finite(p->bias_scale)))
    return tt_error_set(u->error, TT_ERR_INVALID_ARGUMENT,
                        "optimizer: channel slot %d has a scale that is not "
                        "positive and finite",
                        slot);
  return TT_OK;
}

static tt_status diverged(const tt_layer_update* u, int32_t slot) {
  const int32_t channel = u->channels != NULL ? u->channels[slot] : slot;
  return tt_error_set(u->error, TT_ERR_DIVERGED,
                      "training diverged: a gradient or update of output "
                      "channel %d is NaN or infinite; lower the learning "
                      "rate",
                      channel);
}

/* The probe: squared norms of the real-valued gradients, before QAS. */
static tt_status probe_channel(const tt_layer_update* u, int32_t slot,
                               const tt_channel_params* p,
                               const float* weight_grad, float bias_grad) {
  if (p == NULL || slot < 0 || slot >= u->num_channels)
    return tt_error_set(u->error, TT_ERR_INVALID_ARGUMENT,
                        "optimizer: channel slot %d is outside the %d "
                        "selected channels",
                        slot, u->num_channels);
  float weight_sq = 0.0f;
  if ((u->kind == TT_UPDATE_WEIGHTS || u->kind == TT_UPDATE_LOWRANK) &&
      weight_grad != NULL) {
    for (int32_t i = 0; i < u->weights_per_channel; ++i) {
      if (!tt_is_finite(weight_grad[i])) return diverged(u, slot);
      weight_sq += weight_grad[i] * weight_grad[i];
    }
  }
  const float bias_sq = p->bias != NULL ? bias_grad * bias_grad : 0.0f;
  if (!tt_is_finite(weight_sq) || !tt_is_finite(bias_sq))
    return diverged(u, slot);
  if (u->probe_weight_sq != NULL) u->probe_weight_sq[slot] += weight_sq;
  if (u->probe_bias_sq != NULL) u->probe_bias_sq[slot] += bias_sq;
  return TT_OK;
}

/* TT_UPDATE_LOWRANK: the bias by SGD, the weight gradient into the
 * layer's compact gradient. On a NaN or infinity nothing of the channel
 * changes and the layer's gradient accumulated since its last update is
 * dropped (tt_lowrank_discard), so the next update starts clean. */
static tt_status lowrank_channel(const tt_layer_update* u, int32_t slot,
                                 const tt_channel_params* p,
                                 const float* weight_grad, float bias_grad) {
  TT_RETURN_IF_ERROR(check_arguments(u, slot, p, weight_grad, false));
  if (u->lowrank == NULL || weight_grad == NULL || p->weights == NULL)
    return tt_error_set(u->error, TT_ERR_INVALID_ARGUMENT,
                        "optimizer: a low-rank update needs the layer's "
                        "low-rank state, its weights and their gradient");
  const int32_t channel = u->channels != NULL ? u->channels[slot] : slot;
  param_step step;
  const param_state state = bias_state(u, slot);
  if (p->bias != NULL &&
      (!tt_is_finite(bias_grad) ||
       !plan_step(u, &state, bias_grad * grad_factor(u, p->bias_scale),
                  &step))) {
    tt_lowrank_discard(u->lowrank);
    return diverged(u, slot);
  }
  if (!tt_lowrank_accumulate(u->lowrank, channel, weight_grad, p->weight_scale,
                             u->qas)) {
    tt_lowrank_discard(u->lowrank);
    return diverged(u, slot);
  }
  if (p->bias != NULL) {
    store_step(&state, &step);
    *p->bias = moved_bias(*p->bias, step.steps);
  }
  return TT_OK;
}

tt_status tt_update_channel(tt_layer_update* u, int32_t slot,
                            const tt_channel_params* p,
                            const float* weight_grad, float bias_grad) {
  if (u != NULL && u->probe)
    return probe_channel(u, slot, p, weight_grad, bias_grad);
  if (u != NULL && u->kind == TT_UPDATE_LOWRANK)
    return lowrank_channel(u, slot, p, weight_grad, bias_grad);
  const bool weights = u != NULL && u->kind == TT_UPDATE_WEIGHTS;
  TT_RETURN_IF_ERROR(check_arguments(u, slot, p, weight_grad, weights));
  const int32_t count = weights ? u->weights_per_channel : 0;
  const int32_t base = slot * u->weights_per_channel;
  param_step step;
  const float bias_factor = grad_factor(u, p->bias_scale);
  const weight_run run = {
      weight_grad,
      grad_factor(u, p->weight_scale),
      u->weight_residual ? u->weight_residual + base : NULL,
      u->weight_velocity ? u->weight_velocity + base : NULL,
      u->weight_accumulator ? u->weight_accumulator + base : NULL,
      count};
  if (p->bias != NULL) {
    const param_state state = bias_state(u, slot);
    const float g = bias_grad * bias_factor;
    if (!tt_is_finite(bias_grad) || !plan_step(u, &state, g, &step))
      return diverged(u, slot);
  }
  if (u->restored_on_failure) {
    /* One pass: a failure part-way is undone by the caller. */
    if (!weight_run_store(u, &run, p->weights, p->weight_stride, true))
      return diverged(u, slot);
  } else {
    /* Nothing is stored unless every parameter's step is finite. */
    if (!weight_run_is_finite(u, &run)) return diverged(u, slot);
    weight_run_store(u, &run, p->weights, p->weight_stride, false);
  }
  if (p->bias != NULL) {
    const param_state state = bias_state(u, slot);
    plan_step(u, &state, bias_grad * bias_factor, &step);
    store_step(&state, &step);
    *p->bias = moved_bias(*p->bias, step.steps);
  }
  return TT_OK;
}
