/* Low-rank gradient projection with Adam (Gooneratne et al. 2020, "Low-rank
 * gradient approximation for memory-efficient on-device training of deep
 * neural network"; GaLore, Zhao et al. 2024) for a layer whose weights are
 * a C x D matrix W (C output channels of D weights each: FULLY_CONNECTED,
 * and CONV_2D with a 1x1 filter and one group).
 *
 * The optimizer keeps a projector P (C x r, orthonormal columns) and runs
 * Adam on the compact gradient R = P^T G (r x D) instead of the C x D
 * gradient G, so its moments take 2 r D floats instead of 2 C D; the
 * update is dW = -lr P N, N the Adam step of R. G itself is never stored:
 * the backward kernels hand over one output channel's gradient G[c, :] at
 * a time (tt_update_channel) and tt_lowrank_accumulate adds
 * outer(P[c, :], G[c, :]) into R. Once every channel (and, with batches,
 * every sample of the batch) is in, tt_lowrank_apply makes the Adam step.
 *
 * Units (QAS, tt_optimizer.h): G is the quantized-domain gradient, row c
 * divided by the channel's weight scale s_c with QAS (the int8 gradient
 * s_c dL/dW times s_c^-2) or multiplied by it without, exactly as the SGD
 * path does it; the learning rate is in quantization steps per unit of
 * the Adam step, and dW goes into the int8 weights through the float
 * residual of tt_optimizer.h (whole steps move into the weight, saturating
 * at [-127, 127]; without a residual each update is rounded on its own).
 *
 * Adam, bias-corrected, element-wise on R, t = 1, 2, ... the update count:
 *   g = R * batch_scale, M = b1 M + (1 - b1) g, V = b2 V + (1 - b2) g^2,
 *   N = (M / (1 - b1^t)) / (sqrt(V / (1 - b2^t)) + eps)   (tt_sqrtf).
 *
 * The projector starts as orthonormalised (modified Gram-Schmidt)
 * pseudo-random numbers: xorshift32 (shifts 13, 17, 5) from the state
 * seed (0 is replaced by 0x9E3779B9), each value the top 24 bits as
 * ((int32)(x >> 8) - 2^23) / 2^23 in [-1, 1), filling P row by row. It is
 * refreshed at updates t = K + 1, 2K + 1, ... (K = refresh_steps) by
 * one step of subspace iteration, P <- orth(G_t R_{t-1}^T) = orth(G_t
 * G_{t-1}^T P): row c of Y = G_t R_{t-1}^T is G[c, :] R_{t-1}^T, which is
 * accumulated channel by channel during the pass like R, so no full
 * gradient is kept; the new P replaces the old one after the update.
 * Approximations (as in GaLore): the subspace comes from two consecutive
 * gradients (one power step per refresh, not an SVD), and the Adam
 * moments are kept unchanged when P changes although they were
 * accumulated in the old basis. Columns of Y that are (nearly) dependent
 * on the ones before them (residual norm under 2^-10 of their own norm
 * after two Gram-Schmidt passes) are replaced by the old P's column, then
 * by unit vectors, so P always has r orthonormal columns: a gradient of
 * rank below r (e.g. one FULLY_CONNECTED sample) refreshes only the
 * directions it has and keeps the rest of the old subspace.
 *
 * State block (tt_lowrank_state_bytes), 4-byte fields only, so host and
 * Cortex-M4 hold the same bytes: the header below, then float arrays
 * P (C x r), Y (C x r), R (r x D), R_prev (r x D), M (r x D), V (r x D),
 * all row-major. Everything is plain IEEE single-precision +, -, *, / and
 * tt_sqrtf, so both compute the same bits. */
#ifndef TFLM_TRAINING_TT_LOWRANK_H_
#define TFLM_TRAINING_TT_LOWRANK_H_

#include <stdbool.h>
#include <stdint.h>

typedef struct {
  int32_t rows;          /* C: output channels */
  int32_t cols;          /* D: weights per output channel */
  int32_t rank;          /* r, 1 <= r <= min(C, D) */
  int32_t refresh_steps; /* K >= 1 */
  uint32_t updates;      /* Adam steps taken */
  uint32_t seed;
  float beta1_power; /* beta1^updates (1 before the first) */
  float beta2_power;
} tt_lowrank_header;

#define TT_LOWRANK_HEADER_BYTES 32

/* The Adam settings of one update. */
typedef struct {
  float learning_rate; /* the plan's rate times the layer's lr_scale */
  float beta1;         /* in [0, 1) */
  float beta2;         /* in [0, 1) */
  float epsilon;       /* > 0 */
  float batch_scale;   /* 1 / batch_size */
} tt_lowrank_adam;

/* Bytes of a state block: 32 + 4 (2 C r + 4 r D); UINT64_MAX when a
 * dimension is out of range (rank 0, rank above min(C, D), ...). */
uint64_t tt_lowrank_state_bytes(int32_t rows, int32_t cols, int32_t rank);

/* The seed of a layer's projector: plan_seed + 0x9E3779B9 (operator_index
 * + 1), modulo 2^32, so layers of one plan start from different P. */
uint32_t tt_lowrank_seed(uint32_t plan_seed, int32_t operator_index);

/* Writes the header, zeroes every array and sets P from the seed. `state`
 * must be 4-byte aligned and hold tt_lowrank_state_bytes bytes. */
void tt_lowrank_init(void* state, int32_t rows, int32_t cols, int32_t rank,
                     int32_t refresh_steps, uint32_t seed);

/* Whether the update now being accumulated refreshes P (accumulates Y). */
bool tt_lowrank_refreshing(const void* state);

/* Adds output channel `row`'s real-valued weight gradient (cols floats) to
 * R, and to Y when refreshing, after converting it to the quantized domain
 * with the channel's weight scale (qas: divided by it, else multiplied).
 * False, adding nothing, when a value is NaN or infinite. */
bool tt_lowrank_accumulate(void* state, int32_t row, const float* grad,
                           float scale, bool qas);

/* The Adam step: moments, then every weight of row c (at weights + c *
 * row_step, contiguous) moves by the whole steps of residual - lr (P N)[c]
 * (residual: C x D floats, or NULL to round each update on its own), then
 * the refresh of P when due; R and Y start again from zero. False, changing
 * nothing, when a moment or step would be NaN or infinite (call
 * tt_lowrank_discard to drop the accumulated gradient). */
bool tt_lowrank_apply(void* state, const tt_lowrank_adam* adam, int8_t* weights,
                      int32_t row_step, float* residual);

/* Zeroes R and Y: drops what was accumulated since the last update. */
void tt_lowrank_discard(void* state);

/* Orthonormalises the columns of y (rows x rank, row-major) in place by
 * modified Gram-Schmidt, twice per column; a column that is (nearly)
 * dependent on the ones before it is replaced by column j of `fallback`
 * (rows x rank; NULL for none), then by unit vectors e_0, e_1, ... False
 * (y garbage) only when no replacement works. */
bool tt_lowrank_orthonormalize(float* y, int32_t rows, int32_t rank,
                               const float* fallback);

#endif /* TFLM_TRAINING_TT_LOWRANK_H_ */
