/* Feeds mutated .tflite models to the runtime, built with ASan + UBSan.
 *
 *   fuzz_models SECONDS MAX_ITERATIONS SEED model.tflite...
 *
 * Each iteration mutates one seed model (bit flips, interesting values,
 * truncation, copied spans), then runs init and, when init accepts it,
 * invoke on zeroed inputs. The sanitizers abort on any out-of-bounds access
 * or undefined behaviour; a hang is caught by the caller's timeout. Prints
 * how many models init accepted and rejected. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tt_interpreter.h"

#define MAX_MODEL_BYTES (4u << 20)
#define ARENA_BYTES (8u << 20)

static uint64_t rng_state;

static uint32_t next_random(void) { /* xorshift64* */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (uint32_t)((rng_state * 2685821657736338717ull) >> 32);
}

static void mutate(uint8_t* data, uint32_t* size, uint32_t capacity) {
  static const uint32_t kInteresting[] = {
      0u, 1u, 0x7fu, 0x80u, 0xffu, 0x7fffu, 0xffffu, 0x7fffffffu,
      0x80000000u, 0xffffffffu, 16u, 64u, 1024u};
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
          const uint32_t v = kInteresting[next_random() %
                                          (sizeof kInteresting / 4)];
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
  (void)capacity;
}

static uint8_t* read_file(const char* path, uint32_t* size) {
  FILE* f = fopen(path, "rb");
  if (!f) return NULL;
  uint8_t* data = malloc(MAX_MODEL_BYTES);
  *size = (uint32_t)fread(data, 1, MAX_MODEL_BYTES, f);
  fclose(f);
  return data;
}

int main(int argc, char** argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s SECONDS MAX_ITERATIONS SEED model.tflite...\n",
            argv[0]);
    return 2;
  }
  const double seconds = atof(argv[1]);
  const long max_iterations = atol(argv[2]);
  rng_state = (uint64_t)strtoull(argv[3], NULL, 10) * 0x9E3779B97F4A7C15ull + 1;
  const int num_seeds = argc - 4;
  uint8_t** seeds = calloc((size_t)num_seeds, sizeof *seeds);
  uint32_t* seed_sizes = calloc((size_t)num_seeds, sizeof *seed_sizes);
  for (int i = 0; i < num_seeds; ++i) {
    seeds[i] = read_file(argv[4 + i], &seed_sizes[i]);
    if (!seeds[i]) {
      fprintf(stderr, "cannot read %s\n", argv[4 + i]);
      return 2;
    }
  }
  uint8_t* model = malloc(MAX_MODEL_BYTES);
  uint8_t* arena = malloc(ARENA_BYTES);
  uint8_t* input = calloc(1, ARENA_BYTES);
  const clock_t start = clock();
  long iterations = 0, accepted = 0;
  while (iterations < max_iterations &&
         (double)(clock() - start) / CLOCKS_PER_SEC < seconds) {
    const int s = (int)(next_random() % (uint32_t)num_seeds);
    uint32_t size = seed_sizes[s];
    /* An exact-size heap copy lets ASan see any read past the model's end. */
    memcpy(model, seeds[s], size);
    mutate(model, &size, MAX_MODEL_BYTES);
    uint8_t* exact = malloc(size ? size : 1);
    memcpy(exact, model, size);
    tt_interpreter it;
    if (tt_interpreter_init(&it, exact, size, arena, ARENA_BYTES, NULL) ==
        TT_OK) {
      ++accepted;
      for (int32_t i = 0; tt_interpreter_input_tensor(&it, i) >= 0; ++i) {
        const tt_tensor* t =
            tt_interpreter_tensor(&it, tt_interpreter_input_tensor(&it, i));
        if ((uint32_t)t->num_bytes <= ARENA_BYTES)
          tt_interpreter_set_input(&it, i, input, (uint32_t)t->num_bytes,
                                   t->type);
      }
      tt_interpreter_invoke(&it);
    } else if (tt_interpreter_error(&it)->message[0] == '\0') {
      fprintf(stderr, "init failed without a message (iteration %ld)\n",
              iterations);
      return 1;
    }
    free(exact);
    ++iterations;
  }
  printf("iterations=%ld accepted=%ld rejected=%ld\n", iterations, accepted,
         iterations - accepted);
  for (int i = 0; i < num_seeds; ++i) free(seeds[i]);
  free(seeds);
  free(seed_sizes);
  free(model);
  free(arena);
  free(input);
  return 0;
}
