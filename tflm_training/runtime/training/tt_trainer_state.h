/* The learned state of a trainer: everything a device must keep to go on
 * training after a reset exactly as if it had never stopped
 * (tt_state_store.h keeps it in flash; tests/test_learner_state.py checks
 * that a trainer restored from it continues bit for bit).
 *
 * Payload, little-endian, TT_STATE_FORMAT_VERSION 1:
 *
 *   offset  field
 *        0  steps             uint32  training steps taken
 *        4  epoch             uint32  of the current channel selection
 *        8  samples_in_batch  int32   samples summed since the last update
 *       12  reserved          0
 *       16  learned block     the arena bytes between the trainer's tables
 *                             and the planned region: the RAM copies of the
 *                             trained weights and biases, the optimizer
 *                             state (tt_optimizer.h, tt_lowrank.h) and the
 *                             sampled channels' pool (tt_channel_sampler.h)
 *
 * The block's layout is fixed by the model and the plan (arena records
 * hold offsets, so a PC and a Cortex-M4 lay it out identically), which is
 * why a state is only ever loaded into a trainer of the same model and
 * plan (tt_state_store.h checks their CRCs). The sampled channels are not
 * stored: they are redrawn from the plan's seed and the epoch. */
#ifndef TFLM_TRAINING_TT_TRAINER_STATE_H_
#define TFLM_TRAINING_TT_TRAINER_STATE_H_

#include <stdbool.h>
#include <stdint.h>

#include "tt_trainer.h"

#define TT_STATE_FORMAT_VERSION 1u
#define TT_STATE_COUNTERS_BYTES 16u

/* Bytes of the whole payload: counters and learned block. */
uint32_t tt_trainer_state_bytes(const tt_trainer* trainer);

/* The learned block inside the arena (read it, do not write it). */
const uint8_t* tt_trainer_learned_block(const tt_trainer* trainer,
                                        uint32_t* size);

/* The 16 counter bytes of the payload. */
void tt_trainer_state_counters(const tt_trainer* trainer,
                               uint8_t counters[TT_STATE_COUNTERS_BYTES]);

/* The whole payload into out[0, size); size must be
 * tt_trainer_state_bytes(). */
tt_status tt_trainer_state_write(const tt_trainer* trainer, uint8_t* out,
                                 uint32_t size);

/* Replaces the trainer's learned state with `payload` after checking it:
 * its size, counters in range, and every optimizer float finite. On an
 * error nothing changes (TT_ERR_BAD_STATE says what is wrong). */
tt_status tt_trainer_state_load(tt_trainer* trainer, const uint8_t* payload,
                                uint32_t size);

/* Whether every float of the optimizer state in `block` (a learned block
 * laid out as this trainer's, e.g. tt_trainer_learned_block()) is finite. */
bool tt_trainer_state_is_finite(const tt_trainer* trainer,
                                const uint8_t* block);

/* The trained parameter tensors, in the order their RAM copies were made
 * (plan order; weights before the bias of a layer): tensor index of the
 * k-th, or -1 past the last. */
int32_t tt_trainer_trained_tensor(const tt_trainer* trainer, int32_t k);

/* Softmax cross-entropy of the logits the last forward pass
 * (tt_trainer_predict) left against `label`; the trainer's loss. */
float tt_trainer_last_loss(const tt_trainer* trainer, int32_t label);

#endif /* TFLM_TRAINING_TT_TRAINER_STATE_H_ */
