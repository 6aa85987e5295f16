#include "optimizer/tt_lowrank.h"

#include <stddef.h>
#include <string.h>

#include "math/tt_math.h"
#include "math/tt_quant.h"
#include "math/tt_sqrt.h"

#define DEFAULT_SEED 0x9E3779B9u
/* A column whose norm falls under this fraction of its own after
 * orthogonalisation is taken as dependent on the ones before it. */
#define DEPENDENT_RATIO 0.0009765625f /* 2^-10 */
/* |lr| * r * max|N| under this keeps every residual and step finite. */
#define STEP_LIMIT 1.2676506e30f /* 2^100 */

static tt_lowrank_header* header_of(void* state) {
  return (tt_lowrank_header*)state;
}

static float* arrays_of(void* state) {
  return (float*)(void*)((uint8_t*)state + TT_LOWRANK_HEADER_BYTES);
}

/* Offsets (in floats) of the arrays after the header. */
typedef struct {
  float* p;
  float* y;
  float* r;
  float* r_prev;
  float* m;
  float* v;
} lowrank_arrays;

static lowrank_arrays arrays(void* state) {
  const tt_lowrank_header* h = header_of(state);
  const size_t cr = (size_t)h->rows * (size_t)h->rank;
  const size_t rd = (size_t)h->rank * (size_t)h->cols;
  float* base = arrays_of(state);
  lowrank_arrays a;
  a.p = base;
  a.y = a.p + cr;
  a.r = a.y + cr;
  a.r_prev = a.r + rd;
  a.m = a.r_prev + rd;
  a.v = a.m + rd;
  return a;
}

uint64_t tt_lowrank_state_bytes(int32_t rows, int32_t cols, int32_t rank) {
  if (rows < 1 || cols < 1 || rank < 1 || rank > rows || rank > cols)
    return UINT64_MAX;
  const uint64_t cr = (uint64_t)rows * (uint64_t)rank;
  const uint64_t rd = (uint64_t)rank * (uint64_t)cols;
  return TT_LOWRANK_HEADER_BYTES + 4u * (2u * cr + 4u * rd);
}

static uint32_t xorshift32(uint32_t* x) {
  uint32_t v = *x;
  v ^= v << 13;
  v ^= v >> 17;
  v ^= v << 5;
  *x = v;
  return v;
}

/* Column j of a rows x rank row-major matrix, element i. */
static float* at(float* m, int32_t rank, int32_t i, int32_t j) {
  return m + (size_t)i * (size_t)rank + (size_t)j;
}

static float column_dot(float* a, int32_t ja, float* b, int32_t jb,
                        int32_t rows, int32_t rank) {
  float sum = 0.0f;
  for (int32_t i = 0; i < rows; ++i)
    sum += *at(a, rank, i, ja) * *at(b, rank, i, jb);
  return sum;
}

/* Orthonormalises column j of y against columns 0..j-1 (already
 * orthonormal). False when it is (nearly) dependent on them or zero. */
static bool orthonormalize_column(float* y, int32_t rows, int32_t rank,
                                  int32_t j) {
  float largest = 0.0f;
  for (int32_t i = 0; i < rows; ++i) {
    const float v = *at(y, rank, i, j);
    if (!tt_is_finite(v)) return false;
    const float a = v < 0.0f ? -v : v;
    if (a > largest) largest = a;
  }
  if (largest == 0.0f) return false;
  /* Scaled to a largest magnitude of 1, squares cannot overflow. */
  for (int32_t i = 0; i < rows; ++i) *at(y, rank, i, j) /= largest;
  const float before = tt_sqrtf(column_dot(y, j, y, j, rows, rank));
  for (int32_t pass = 0; pass < 2; ++pass) {
    for (int32_t k = 0; k < j; ++k) {
      const float d = column_dot(y, k, y, j, rows, rank);
      for (int32_t i = 0; i < rows; ++i)
        *at(y, rank, i, j) -= d * *at(y, rank, i, k);
    }
  }
  const float norm = tt_sqrtf(column_dot(y, j, y, j, rows, rank));
  if (!(norm > before * DEPENDENT_RATIO)) return false;
  for (int32_t i = 0; i < rows; ++i) *at(y, rank, i, j) /= norm;
  return true;
}

bool tt_lowrank_orthonormalize(float* y, int32_t rows, int32_t rank,
                               const float* fallback) {
  for (int32_t j = 0; j < rank; ++j) {
    if (orthonormalize_column(y, rows, rank, j)) continue;
    bool found = false;
    if (fallback != NULL) {
      for (int32_t i = 0; i < rows; ++i)
        *at(y, rank, i, j) = fallback[(size_t)i * (size_t)rank + (size_t)j];
      found = orthonormalize_column(y, rows, rank, j);
    }
    for (int32_t e = 0; e < rows && !found; ++e) {
      for (int32_t i = 0; i < rows; ++i)
        *at(y, rank, i, j) = i == e ? 1.0f : 0.0f;
      found = orthonormalize_column(y, rows, rank, j);
    }
    if (!found) return false;
  }
  return true;
}

uint32_t tt_lowrank_seed(uint32_t plan_seed, int32_t operator_index) {
  return plan_seed + DEFAULT_SEED * ((uint32_t)operator_index + 1u);
}

void tt_lowrank_init(void* state, int32_t rows, int32_t cols, int32_t rank,
                     int32_t refresh_steps, uint32_t seed) {
  tt_lowrank_header* h = header_of(state);
  h->rows = rows;
  h->cols = cols;
  h->rank = rank;
  h->refresh_steps = refresh_steps;
  h->updates = 0;
  h->seed = seed;
  h->beta1_power = 1.0f;
  h->beta2_power = 1.0f;
  const lowrank_arrays a = arrays(state);
  const size_t cr = (size_t)rows * (size_t)rank;
  const size_t rd = (size_t)rank * (size_t)cols;
  memset(a.p, 0, (2 * cr + 4 * rd) * sizeof(float));
  uint32_t x = seed != 0 ? seed : DEFAULT_SEED;
  for (size_t i = 0; i < cr; ++i) {
    const int32_t top = (int32_t)(xorshift32(&x) >> 8) - 8388608;
    a.y[i] = (float)top * 1.1920929e-7f; /* 2^-23 */
  }
  /* Random columns are independent in practice; unit vectors stand in
   * where they are not, so this cannot fail (rank <= rows). */
  tt_lowrank_orthonormalize(a.y, rows, rank, NULL);
  memcpy(a.p, a.y, cr * sizeof(float));
  memset(a.y, 0, cr * sizeof(float));
}

bool tt_lowrank_refreshing(const void* state) {
  const tt_lowrank_header* h = (const tt_lowrank_header*)state;
  return h->updates >= 1 && h->updates % (uint32_t)h->refresh_steps == 0;
}

bool tt_lowrank_accumulate(void* state, int32_t row, const float* grad,
                           float scale, bool qas) {
  const tt_lowrank_header* h = header_of(state);
  const int32_t cols = h->cols;
  const int32_t rank = h->rank;
  if (row < 0 || row >= h->rows) return false;
  for (int32_t j = 0; j < cols; ++j)
    if (!tt_is_finite(grad[j])) return false;
  const lowrank_arrays a = arrays(state);
  const float* p_row = a.p + (size_t)row * (size_t)rank;
  const bool refresh = tt_lowrank_refreshing(state);
  /* The quantized-domain factor, as tt_optimizer.c computes it. */
  const float factor = qas ? 1.0f / scale : scale;
  for (int32_t k = 0; k < rank; ++k) {
    const float pk = p_row[k];
    float* r_row = a.r + (size_t)k * (size_t)cols;
    const float* prev_row = a.r_prev + (size_t)k * (size_t)cols;
    float y = 0.0f;
    for (int32_t j = 0; j < cols; ++j) {
      const float g = grad[j] * factor;
      r_row[j] += pk * g;
      if (refresh) y += g * prev_row[j];
    }
    if (refresh) a.y[(size_t)row * (size_t)rank + (size_t)k] += y;
  }
  return true;
}

void tt_lowrank_discard(void* state) {
  const tt_lowrank_header* h = header_of(state);
  const lowrank_arrays a = arrays(state);
  memset(a.r, 0, (size_t)h->rank * (size_t)h->cols * sizeof(float));
  memset(a.y, 0, (size_t)h->rows * (size_t)h->rank * sizeof(float));
}

/* One element's Adam step; false when anything is NaN or infinite. */
typedef struct {
  float m, v, n;
} adam_step;

static bool adam_element(const tt_lowrank_adam* adam, float correction1,
                         float correction2, float compact, float m, float v,
                         adam_step* out) {
  const float g = compact * adam->batch_scale;
  out->m = adam->beta1 * m + (1.0f - adam->beta1) * g;
  out->v = adam->beta2 * v + (1.0f - adam->beta2) * (g * g);
  const float m_hat = out->m / correction1;
  const float v_hat = out->v / correction2;
  out->n = m_hat / (tt_sqrtf(v_hat) + adam->epsilon);
  return tt_is_finite(out->m) && tt_is_finite(out->v) && tt_is_finite(out->n);
}

static int8_t moved_weight(int8_t value, float steps) {
  if (steps == 0.0f) return value;
  /* 254 steps reach either end of [-127, 127] from anywhere in it. */
  const float k = steps > 254.0f ? 254.0f : (steps < -254.0f ? -254.0f : steps);
  return (int8_t)tt_clamp_i32((int32_t)value + (int32_t)k, -127, 127);
}

bool tt_lowrank_apply(void* state, const tt_lowrank_adam* adam, int8_t* weights,
                      int32_t row_step, float* residual) {
  tt_lowrank_header* h = header_of(state);
  const int32_t rows = h->rows, cols = h->cols, rank = h->rank;
  const size_t rd = (size_t)rank * (size_t)cols;
  const lowrank_arrays a = arrays(state);
  const float beta1_power = h->beta1_power * adam->beta1;
  const float beta2_power = h->beta2_power * adam->beta2;
  const float correction1 = 1.0f - beta1_power;
  const float correction2 = 1.0f - beta2_power;
  /* First pass: nothing is stored unless every step is finite and small
   * enough that no residual can overflow. */
  float largest = 0.0f;
  adam_step s;
  for (size_t i = 0; i < rd; ++i) {
    if (!adam_element(adam, correction1, correction2, a.r[i], a.m[i], a.v[i],
                      &s))
      return false;
    const float n = s.n < 0.0f ? -s.n : s.n;
    if (n > largest) largest = n;
  }
  const float bound = adam->learning_rate * (float)rank * largest;
  if (!(bound < STEP_LIMIT)) return false;
  /* Moments; R_prev keeps this update's compact gradient for the next
   * refresh; R becomes the step N. */
  for (size_t i = 0; i < rd; ++i) {
    adam_element(adam, correction1, correction2, a.r[i], a.m[i], a.v[i], &s);
    a.m[i] = s.m;
    a.v[i] = s.v;
    a.r_prev[i] = a.r[i];
    a.r[i] = s.n;
  }
  for (int32_t c = 0; c < rows; ++c) {
    const float* p_row = a.p + (size_t)c * (size_t)rank;
    int8_t* w = weights + (size_t)c * (size_t)row_step;
    float* res = residual != NULL ? residual + (size_t)c * (size_t)cols : NULL;
    for (int32_t j = 0; j < cols; ++j) {
      float dot = 0.0f;
      for (int32_t k = 0; k < rank; ++k)
        dot += p_row[k] * a.r[(size_t)k * (size_t)cols + (size_t)j];
      const float target =
          (res != NULL ? res[j] : 0.0f) - adam->learning_rate * dot;
      const float steps = tt_round_float(target);
      if (res != NULL) res[j] = target - steps;
      w[j] = moved_weight(w[j], steps);
    }
  }
  const bool refresh = tt_lowrank_refreshing(state);
  h->updates += 1u;
  h->beta1_power = beta1_power;
  h->beta2_power = beta2_power;
  if (refresh) {
    /* P <- orth(Y); the old columns stand in for directions Y lacks. If
     * even that fails (cannot happen with rank <= rows), P stays. */
    if (tt_lowrank_orthonormalize(a.y, rows, rank, a.p))
      memcpy(a.p, a.y, (size_t)rows * (size_t)rank * sizeof(float));
  }
  tt_lowrank_discard(state);
  return true;
}
