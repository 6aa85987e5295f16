#include "training/tt_channel_sampler.h"

#include <string.h>

#include "training/tt_trainer_internal.h"

#define SPLITMIX_GAMMA 0x9E3779B97F4A7C15ull

static uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void tt_sampler_seed(tt_sampler_rng* rng, uint32_t seed, uint32_t epoch) {
  rng->state = mix(((uint64_t)seed << 32) | (uint64_t)epoch);
}

uint32_t tt_sampler_next(tt_sampler_rng* rng) {
  rng->state += SPLITMIX_GAMMA;
  return (uint32_t)(mix(rng->state) >> 32);
}

uint32_t tt_sampler_below(tt_sampler_rng* rng, uint32_t bound) {
  uint64_t m = (uint64_t)tt_sampler_next(rng) * bound;
  uint32_t low = (uint32_t)m;
  if (low < bound) {
    const uint32_t threshold = (0u - bound) % bound;
    while (low < threshold) {
      m = (uint64_t)tt_sampler_next(rng) * bound;
      low = (uint32_t)m;
    }
  }
  return (uint32_t)(m >> 32);
}

void tt_sampler_shuffle(tt_sampler_rng* rng, uint16_t* order, uint32_t count) {
  for (uint32_t k = 0; k < count; ++k) order[k] = (uint16_t)k;
  for (uint32_t i = count; i > 1; --i) {
    const uint32_t j = tt_sampler_below(rng, i);
    const uint16_t swap = order[i - 1];
    order[i - 1] = order[j];
    order[j] = swap;
  }
}

/* The sampled layer owning candidate `index`: the last layer whose
 * sample_base is <= index (layers without candidates share the base of
 * the next one, so the last of a run is the one that has candidates). */
static int32_t layer_of(const tt_train_layer* layers, int32_t num_layers,
                        int32_t index) {
  int32_t lo = 0, hi = num_layers - 1;
  while (lo < hi) {
    const int32_t mid = lo + (hi - lo + 1) / 2;
    if (layers[mid].sample_base <= index) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

/* Step 4: selection[slot] holds 1 for a taken candidate; compacts it into
 * the ascending list of taken channels (candidates are ascending). */
static void list_selection(const tt_interpreter* it, tt_train_layer* layer) {
  const int32_t* candidates =
      (const int32_t*)tt_arena_at(it, layer->candidates_offset);
  int32_t* selection = (int32_t*)tt_arena_at(it, layer->channels_offset);
  int32_t count = 0;
  for (int32_t slot = 0; slot < layer->num_candidates; ++slot)
    if (selection[slot]) selection[count++] = candidates[slot];
  layer->num_channels = count;
}

/* Step 5: the layer's state arrays at `*offset` in the pool. */
static void place_state(const tt_trainer* t, tt_train_layer* layer,
                        uint32_t* offset) {
  const bool arrays[3] = {(t->flags & TT_PLAN_FLAG_NO_RESIDUAL) == 0,
                          t->momentum > 0.0f, t->batch_size > 1};
  const uint32_t counts[2] = {
      (uint32_t)layer->num_channels * (uint32_t)layer->weights_per_channel,
      layer->has_bias ? (uint32_t)layer->num_channels : 0u};
  for (int32_t s = 0; s < TT_STATE_COUNT; ++s) {
    const uint32_t count = counts[s / 3];
    if (!arrays[s % 3] || (s >= 3 && !layer->has_bias)) {
      layer->state[s] = -1;
      continue;
    }
    layer->state[s] = (int32_t)*offset;
    *offset += count * (uint32_t)sizeof(float);
  }
}

void tt_train_resample(tt_trainer* t, uint32_t epoch) {
  tt_interpreter* it = &t->interpreter;
  t->epoch = epoch;
  if (t->sampled_candidates == 0) return;
  tt_train_layer* layers = tt_train_layers(t);
  for (int32_t l = 0; l < t->num_layers; ++l)
    if (layers[l].kind == TT_UPDATE_SAMPLED)
      memset(tt_arena_at(it, layers[l].channels_offset), 0,
             (size_t)layers[l].num_candidates * sizeof(int32_t));
  uint16_t* order = (uint16_t*)tt_arena_at(it, t->sample_order_offset);
  tt_sampler_rng rng;
  tt_sampler_seed(&rng, t->seed, epoch);
  tt_sampler_shuffle(&rng, order, (uint32_t)t->sampled_candidates);
  int32_t remaining = t->sample_budget;
  for (int32_t k = 0; k < t->sampled_candidates; ++k) {
    const int32_t index = order[k];
    tt_train_layer* layer = &layers[layer_of(layers, t->num_layers, index)];
    if (layer->channel_cost > remaining) continue;
    remaining -= layer->channel_cost;
    int32_t* selection = (int32_t*)tt_arena_at(it, layer->channels_offset);
    selection[index - layer->sample_base] = 1;
  }
  uint32_t offset = (uint32_t)t->sample_pool_offset;
  for (int32_t l = 0; l < t->num_layers; ++l) {
    if (layers[l].kind != TT_UPDATE_SAMPLED) continue;
    list_selection(it, &layers[l]);
    place_state(t, &layers[l], &offset);
  }
  memset(tt_arena_at(it, t->sample_pool_offset), 0, (size_t)t->sample_budget);
}
