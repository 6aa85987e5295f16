/* Feeds mutated models, or mutated training plans, to the runtime, built
 * with ASan + UBSan.
 *
 *   fuzz_models models SECONDS MAX_ITERATIONS SEED model.tflite...
 *   fuzz_models plans  SECONDS MAX_ITERATIONS SEED model.tflite plan.bin...
 *
 * Each iteration mutates one seed (bit flips, interesting values,
 * truncation, copied spans). A mutated model runs init and, when init
 * accepts it, invoke on zeroed inputs. A mutated plan (whose checksum is
 * recomputed half the time, so mutations reach the deeper checks) runs
 * trainer init and, when accepted, a training step, a new epoch (channel
 * sampling, with a random epoch number), the gradient probe, a look at
 * every layer's selected channels, another step and a prediction. The
 * sanitizers abort on any out-of-bounds access or undefined behaviour; a
 * hang is caught by the caller's timeout. Prints how many inputs were
 * accepted and rejected. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "math/tt_crc.h"
#include "training/tt_training_plan.h"
#include "tt_interpreter.h"
#include "tt_trainer.h"

#define MAX_INPUT_BYTES (4u << 20)
#define ARENA_BYTES (8u << 20)

static uint64_t rng_state;

static uint32_t next_random(void) { /* xorshift64* */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (uint32_t)((rng_state * 2685821657736338717ull) >> 32);
}

static void mutate(uint8_t* data, uint32_t* size) {
  static const uint32_t kInteresting[] = {
      0u,          1u,          0x7fu,       0x80u, 0xffu, 0x7fffu, 0xffffu,
      0x7fffffffu, 0x80000000u, 0xffffffffu, 16u,   64u,   1024u};
  const uint32_t count = 1 + next_random() % 8;
  for (uint32_t m = 0; m < count && *size > 0; ++m) {
    const uint32_t pos = next_random() % *size;
    switch (next_random() % 6) {
      case 0:
        data[pos] ^= (uint8_t)(1u << (next_random() % 8));
        break;
      case 1:
        data[pos] = (uint8_t)next_random();
        break;
      case 2:
        if (pos + 4 <= *size) {
          const uint32_t v =
              kInteresting[next_random() % (sizeof kInteresting / 4)];
          memcpy(data + pos, &v, 4);
        }
        break;
      case 3:
        *size = pos + 1;
        break;
      case 4: {
        const uint32_t from = next_random() % *size;
        uint32_t len = 1 + next_random() % 64;
        if (from + len > *size) len = *size - from;
        if (pos + len > *size) len = *size - pos;
        memmove(data + pos, data + from, len);
        break;
      }
      default:
        if (pos + 2 <= *size) data[pos + 1] = data[pos] + 1;
        break;
    }
  }
}

static uint8_t* read_file(const char* path, uint32_t* size) {
  FILE* f = fopen(path, "rb");
  if (!f) return NULL;
  uint8_t* data = malloc(MAX_INPUT_BYTES);
  *size = (uint32_t)fread(data, 1, MAX_INPUT_BYTES, f);
  fclose(f);
  return data;
}

/* A mutated heap copy of exactly the mutated size, so ASan sees any read
 * past its end. */
static uint8_t* mutated_copy(const uint8_t* seed, uint32_t seed_size,
                             uint8_t* work, uint32_t* size) {
  memcpy(work, seed, seed_size);
  *size = seed_size;
  mutate(work, size);
  uint8_t* exact = malloc(*size ? *size : 1);
  memcpy(exact, work, *size);
  return exact;
}

static void fix_plan_checksum(uint8_t* plan, uint32_t size) {
  if (size < TT_PLAN_HEADER_SIZE) return;
  const uint32_t crc = tt_crc32(plan + 16, size - 16);
  memcpy(plan + 12, &crc, 4);
}

static int check_message(const tt_error* error, long iteration) {
  if (error->message[0] != '\0') return 0;
  fprintf(stderr, "a failure without a message (iteration %ld)\n", iteration);
  return 1;
}

static int run_model(const uint8_t* model, uint32_t size, uint8_t* arena,
                     const uint8_t* zeros, long iteration, long* accepted) {
  tt_interpreter it;
  if (tt_interpreter_init(&it, model, size, arena, ARENA_BYTES, NULL) != TT_OK)
    return check_message(tt_interpreter_error(&it), iteration);
  ++*accepted;
  for (int32_t i = 0; i < tt_interpreter_num_inputs(&it); ++i) {
    const tt_tensor* t =
        tt_interpreter_tensor(&it, tt_interpreter_input_tensor(&it, i));
    if ((uint32_t)t->num_bytes <= ARENA_BYTES)
      tt_interpreter_set_input(&it, i, zeros, (uint32_t)t->num_bytes, t->type);
  }
  tt_interpreter_invoke(&it);
  return 0;
}

static int run_plan(const uint8_t* model, uint32_t model_size,
                    const uint8_t* plan, uint32_t plan_size, uint8_t* arena,
                    const uint8_t* zeros, long iteration, long* accepted) {
  static tt_trainer trainer;
  if (tt_trainer_init(&trainer, model, model_size, plan, plan_size, arena,
                      ARENA_BYTES) != TT_OK)
    return check_message(tt_trainer_error(&trainer), iteration);
  ++*accepted;
  tt_interpreter* it = tt_trainer_interpreter(&trainer);
  const tt_tensor* input =
      tt_interpreter_tensor(it, tt_interpreter_input_tensor(it, 0));
  const uint32_t bytes = (uint32_t)input->num_bytes;
  float loss;
  int32_t predicted;
  tt_trainer_step(&trainer, zeros, bytes, (int32_t)(next_random() % 12), &loss);
  /* A new epoch (channel sampling), the gradient probe into arrays of
   * exactly the selected size, and every layer's selection. */
  if (tt_trainer_begin_epoch(&trainer, next_random()) != TT_OK)
    return check_message(tt_trainer_error(&trainer), iteration);
  const int32_t slots = tt_trainer_selected_slots(&trainer);
  float* norms = malloc(2 * sizeof(float) * (size_t)(slots > 0 ? slots : 1));
  memset(norms, 0, 2 * sizeof(float) * (size_t)(slots > 0 ? slots : 1));
  tt_trainer_gradient_norms(&trainer, zeros, bytes,
                            (int32_t)(next_random() % 12), norms,
                            norms + (slots > 0 ? slots : 1), &loss);
  free(norms);
  /* Every layer's selection: ascending, non-negative, adding up to the
   * selected slots. */
  int32_t selected = 0;
  bool ordered = true;
  for (int32_t l = 0; l < trainer.num_layers; ++l) {
    int32_t count;
    const int32_t* channels = tt_trainer_layer_channels(&trainer, l, &count);
    for (int32_t c = 0; c < count; ++c)
      ordered &= channels[c] >= 0 && (c == 0 || channels[c] > channels[c - 1]);
    selected += count;
  }
  if (selected != slots || !ordered) {
    fprintf(stderr,
            "selected channels are out of order or do not add up "
            "(iteration %ld)\n",
            iteration);
    return 1;
  }
  tt_trainer_step(&trainer, zeros, bytes, (int32_t)(next_random() % 12), &loss);
  tt_trainer_predict(&trainer, zeros, bytes, &predicted);
  return 0;
}

int main(int argc, char** argv) {
  const int plans = argc > 1 && strcmp(argv[1], "plans") == 0;
  if (argc < 6 || (!plans && strcmp(argv[1], "models") != 0) ||
      (plans && argc % 2 != 1)) {
    fprintf(stderr,
            "usage: %s models SECONDS MAX_ITERATIONS SEED model.tflite...\n"
            "       %s plans SECONDS MAX_ITERATIONS SEED model plan...\n",
            argv[0], argv[0]);
    return 2;
  }
  const double seconds = atof(argv[2]);
  const long max_iterations = atol(argv[3]);
  rng_state = (uint64_t)strtoull(argv[4], NULL, 10) * 0x9E3779B97F4A7C15ull + 1;
  const int num_files = argc - 5;
  uint8_t** files = calloc((size_t)num_files, sizeof *files);
  uint32_t* sizes = calloc((size_t)num_files, sizeof *sizes);
  for (int i = 0; i < num_files; ++i) {
    files[i] = read_file(argv[5 + i], &sizes[i]);
    if (!files[i]) {
      fprintf(stderr, "cannot read %s\n", argv[5 + i]);
      return 2;
    }
  }
  uint8_t* work = malloc(MAX_INPUT_BYTES);
  uint8_t* arena = malloc(ARENA_BYTES);
  uint8_t* zeros = calloc(1, ARENA_BYTES);
  const clock_t start = clock();
  long iterations = 0, accepted = 0;
  int failed = 0;
  while (!failed && iterations < max_iterations &&
         (double)(clock() - start) / CLOCKS_PER_SEC < seconds) {
    uint32_t size;
    if (plans) {
      const int pair = 2 * (int)(next_random() % (uint32_t)(num_files / 2));
      uint8_t* plan =
          mutated_copy(files[pair + 1], sizes[pair + 1], work, &size);
      if (next_random() % 2) fix_plan_checksum(plan, size);
      failed = run_plan(files[pair], sizes[pair], plan, size, arena, zeros,
                        iterations, &accepted);
      free(plan);
    } else {
      const int s = (int)(next_random() % (uint32_t)num_files);
      uint8_t* model = mutated_copy(files[s], sizes[s], work, &size);
      failed = run_model(model, size, arena, zeros, iterations, &accepted);
      free(model);
    }
    ++iterations;
  }
  printf("iterations=%ld accepted=%ld rejected=%ld\n", iterations, accepted,
         iterations - accepted);
  for (int i = 0; i < num_files; ++i) free(files[i]);
  free(files);
  free(sizes);
  free(work);
  free(arena);
  free(zeros);
  return failed;
}
