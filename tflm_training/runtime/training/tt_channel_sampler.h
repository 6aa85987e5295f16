/* TraDy channel sampling: the layers a plan marks TT_UPDATE_SAMPLED train
 * a new random subset of their candidate output channels every epoch,
 * within one memory budget. tflm_training/channel_sampler.py is the
 * pure-Python mirror (same generator, same algorithm, same result).
 *
 * Memory. The arena holds, for each sampled layer, its candidate list and
 * a selection list of the same capacity (the trainer's channel lists),
 * one uint16 index per candidate of all sampled layers together (the
 * shuffle; at most TT_PLAN_MAX_CANDIDATES), and ONE pool of exactly
 * sample_budget bytes for the optimizer state of the selected channels
 * (residuals, velocities, accumulators as the plan's flags, momentum and
 * batch size say). Weights and biases of sampled layers are copied to RAM
 * whole, like static layers'. A selected channel of layer l takes
 * channel_cost_l bytes of the budget; the plan parser checks that
 * channel_cost_l covers the channel's real state
 * (tt_plan_channel_state_bytes), so the pool never overflows. Layers of
 * kinds 0 and 1 keep their own state, untouched by sampling.
 *
 * Generator. SplitMix64 (Steele, Lea, Flood 2014):
 *   mix(z): z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9;
 *           z = (z ^ z >> 27) * 0x94D049BB133111EB; return z ^ z >> 31
 *   seeding: state = mix(seed << 32 | epoch)       (64-bit unsigned)
 *   next32:  state += 0x9E3779B97F4A7C15; return mix(state) >> 32
 * Bounded integers in [0, n): Lemire's multiply-shift with rejection
 * (unbiased): m = next32() * n (64-bit); while (m mod 2^32) < (2^32 - n)
 * mod n, draw again; return m >> 32.
 *
 * Algorithm (tt_trainer_begin_epoch(trainer, epoch); init does epoch 0):
 *  1. Number the candidates of the sampled layers 0 .. N-1 in layer-table
 *     order, each layer's in its plan order; order[k] = k.
 *  2. Fisher-Yates: for i = N-1 down to 1, j = bounded(i + 1), swap
 *     order[i] and order[j].
 *  3. remaining = sample_budget; walk order[0 .. N-1]: a candidate of
 *     layer l is taken when channel_cost_l <= remaining (remaining -=
 *     channel_cost_l). The walk goes to the end: a candidate that does
 *     not fit does not stop it, so afterwards no untaken candidate fits.
 *  4. Each layer's taken channels are listed ascending (its selection).
 *  5. The pool is laid out layer by layer in layer-table order, each
 *     layer's arrays in the static order (weight residual, velocity,
 *     accumulator, then bias residual, velocity, accumulator; only those
 *     the plan uses), k_l channels each, and zeroed.
 * So within a layer every channel is equally likely; across layers a
 * cheaper channel is likelier. A layer may get no channel in an epoch:
 * gradients still flow through it to earlier layers.
 *
 * State restarts every epoch: the residual (the sub-step remainder of
 * each weight, under half a quantization step) and the momentum velocity
 * of sampled channels are dropped. An unfinished batch would be dropped
 * too, so tt_trainer_begin_epoch refuses to start an epoch inside one. */
#ifndef TFLM_TRAINING_TT_CHANNEL_SAMPLER_H_
#define TFLM_TRAINING_TT_CHANNEL_SAMPLER_H_

#include <stdint.h>

typedef struct {
  uint64_t state;
} tt_sampler_rng;

/* The generator for (seed, epoch). */
void tt_sampler_seed(tt_sampler_rng* rng, uint32_t seed, uint32_t epoch);

/* The next 32 random bits. */
uint32_t tt_sampler_next(tt_sampler_rng* rng);

/* A uniform integer in [0, bound); bound >= 1. */
uint32_t tt_sampler_below(tt_sampler_rng* rng, uint32_t bound);

/* order[0 .. count) = a uniformly random permutation of 0 .. count-1
 * (steps 1 and 2 above). */
void tt_sampler_shuffle(tt_sampler_rng* rng, uint16_t* order, uint32_t count);

#endif /* TFLM_TRAINING_TT_CHANNEL_SAMPLER_H_ */
