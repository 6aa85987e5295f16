/* Fuzzes the learner (tt_learner.h), its frames (tt_frame.h), the learned
 * state loader (tt_trainer_state.h) and the two-slot flash store
 * (tt_state_store.h), built with ASan + UBSan.
 *
 *   fuzz_learner MODE SEED ITERATIONS MODEL PLAN [MODEL PLAN]...
 *
 * frames: byte streams (noise, intact requests of every command with
 *   random and hostile payloads, mutated frames) through
 *   tt_learner_serve_one over a RAM flash, with reboots, power cuts and
 *   worn pages. Every answer must be one well-formed frame, the documented
 *   one where the request's answer is certain; after each, INFO must be
 *   consistent, a failed request must have changed nothing, and a reboot
 *   must restore the last saved state.
 * state: mutated learned states into tt_trainer_state_load; a refused one
 *   must leave the trainer's state byte for byte; an accepted one is
 *   trained on.
 * store: random flash images into tt_state_store_open, then saves,
 *   stages, commits and erases with power cuts and worn pages; hostile
 *   states with valid CRCs through the learner's boot restore.
 * all: the three in turn.
 *
 * frames gives most streams to the first pair (make it the fast one).
 * Saves after sequence 0xFFFFFFFF (which continue at 1) are counted
 * (sequence_wraps) and checked like the others.
 *
 * Deterministic for a seed. Prints name=count pairs; on a broken invariant
 * prints what and exits 1 (the sanitizers abort on their own). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "learner/tt_flash_ram.h"
#include "learner/tt_frame.h"
#include "learner/tt_state_store.h"
#include "math/tt_crc.h"
#include "training/tt_trainer_internal.h"
#include "training/tt_trainer_state.h"
#include "training/tt_training_plan.h"
#include "tt_learner.h"
#include "tt_trainer.h"

#define PROBE_ARENA_BYTES (8u << 20)
#define MAX_PAIRS 8
#define MAX_FILE_BYTES (4u << 20)
#define FIRMWARE_CRC 0x5EED1234u
#define MEASURED 4242

/* -- basics -----------------------------------------------------------------
 */

/* The sequence after `s` (0 is skipped), and whether a is newer than b,
 * counting around the wrap, as tt_state_store.h says. */
static uint32_t next_of(uint32_t s) { return s == UINT32_MAX ? 1 : s + 1; }
static bool newer(uint32_t a, uint32_t b) { return (int32_t)(a - b) > 0; }

static uint64_t rng_state;
static long iteration;
static const char* phase = "setup";

static uint32_t rnd(void) { /* xorshift64* */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (uint32_t)((rng_state * 2685821657736338717ull) >> 32);
}

static uint32_t below(uint32_t n) { return n == 0 ? 0 : rnd() % n; }
static bool one_in(uint32_t n) { return below(n) == 0; }

#define CHECK(cond, ...)                                                     \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "FAILED %s iteration %ld (%s:%d): ", phase, iteration, \
              __FILE__, __LINE__);                                           \
      fprintf(stderr, __VA_ARGS__);                                          \
      fputc('\n', stderr);                                                   \
      exit(1);                                                               \
    }                                                                        \
  } while (0)

static uint32_t get_u16(const uint8_t* in) {
  return (uint32_t)in[0] | (uint32_t)in[1] << 8;
}

static uint32_t get_u32(const uint8_t* in) {
  return get_u16(in) | (uint32_t)in[2] << 16 | (uint32_t)in[3] << 24;
}

static void put_u32(uint8_t* out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out[i] = (uint8_t)(value >> (8 * i));
}

/* Bitwise CRC-32 (zlib's), independent of the runtime's. */
static uint32_t crc32_ref(const uint8_t* data, uint32_t size) {
  uint32_t c = 0xFFFFFFFFu;
  for (uint32_t i = 0; i < size; ++i) {
    c ^= data[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return ~c;
}

static void* xmalloc(size_t size) {
  void* p = malloc(size ? size : 1);
  if (p == NULL) {
    fprintf(stderr, "out of memory\n");
    exit(2);
  }
  return p;
}

static void fill_random(uint8_t* data, uint32_t size) {
  for (uint32_t i = 0; i < size; ++i) data[i] = (uint8_t)rnd();
}

static const uint32_t kInteresting[] = {
    0u,          1u,          2u,      3u,          0x7Fu,
    0x80u,       0xFFu,       0xFFFFu, 0x7FFFFFFFu, 0x80000000u,
    0xFFFFFFFEu, 0xFFFFFFFFu, 16u,     1024u,       65536u};
#define NUM_INTERESTING (sizeof kInteresting / sizeof kInteresting[0])

static uint32_t interesting(void) {
  return kInteresting[below(NUM_INTERESTING)];
}

/* Float bit patterns a state must not carry, and hostile finite ones. */
static const uint32_t kNotFinite[] = {0x7FC00000u, 0xFFC00000u, 0x7F800000u,
                                      0xFF800000u, 0x7F800001u, 0x7FFFFFFFu};
static const uint32_t kHostileFinite[] = {0x7F7FFFFFu, 0xFF7FFFFFu,
                                          0x00000001u, 0x80000000u,
                                          0x4B800000u, 0x3F800000u};

/* -- counts -----------------------------------------------------------------
 */

#define NUM_COMMANDS 11 /* 1 to 10 */
static const char* const kCommandNames[NUM_COMMANDS] = {
    "",     "info", "train",         "predict", "evaluate",  "begin_epoch",
    "save", "pull", "factory_reset", "holdout", "pull_state"};
static const char* const kErrorNames[12] = {
    "",           "bad_frame",    "unknown_command", "bad_request",
    "bad_sample", "bad_label",    "nothing_trained", "flash",
    "runtime",    "heldout_full", "diverged",        "no_flash"};

static long ok_count[NUM_COMMANDS], error_count[12];
static long streams, frames_served, expected_checked, saved, rolled_back,
    reboots, restored_boots, power_cuts, worn_sessions, sessions;
static long state_loads, state_accepted, state_refused, state_steps;
static long store_images, store_opened, store_refused, store_newest,
    store_saves, store_save_failures, store_stages, store_erases,
    store_recoveries, sequence_wraps, boot_restored, boot_refused;

static void print_counts(void) {
  for (int c = 1; c < NUM_COMMANDS; ++c)
    printf("ok_%s=%ld ", kCommandNames[c], ok_count[c]);
  for (int e = 1; e < 12; ++e)
    printf("error_%s=%ld ", kErrorNames[e], error_count[e]);
  printf(
      "\nstreams=%ld frames_served=%ld expected_checked=%ld saved=%ld "
      "rolled_back=%ld reboots=%ld restored_boots=%ld power_cuts=%ld "
      "worn_sessions=%ld sessions=%ld\n",
      streams, frames_served, expected_checked, saved, rolled_back, reboots,
      restored_boots, power_cuts, worn_sessions, sessions);
  printf(
      "state_loads=%ld state_accepted=%ld state_refused=%ld state_steps=%ld\n",
      state_loads, state_accepted, state_refused, state_steps);
  printf(
      "store_images=%ld store_opened=%ld store_refused=%ld store_newest=%ld "
      "store_saves=%ld store_save_failures=%ld store_stages=%ld "
      "store_erases=%ld store_recoveries=%ld sequence_wraps=%ld "
      "boot_restored=%ld boot_refused=%ld\n",
      store_images, store_opened, store_refused, store_newest, store_saves,
      store_save_failures, store_stages, store_erases, store_recoveries,
      sequence_wraps, boot_restored, boot_refused);
}

/* -- seeds: a model and a plan -----------------------------------------------
 */

typedef struct {
  uint8_t* model;
  uint32_t model_size;
  uint8_t* plan;
  uint32_t plan_size;
  uint32_t model_crc32, plan_crc32;
  uint32_t arena_bytes; /* what the trainer uses: arenas are exactly this */
  uint32_t input_bytes;
  int32_t input_type;
  int32_t num_classes;
  int32_t num_layers;
  int32_t batch_size;
  uint32_t state_bytes;
  uint32_t trained_bytes;
  uint32_t fresh_crc; /* INFO's state CRC for the model's own weights */
  /* state mode: a trainer after some steps, and its state */
  tt_trainer* trainer;
  uint8_t* arena;
  uint8_t* good_state;
} seed_pair;

static uint8_t* read_file(const char* path, uint32_t* size) {
  FILE* f = fopen(path, "rb");
  if (!f) return NULL;
  uint8_t* data = xmalloc(MAX_FILE_BYTES);
  *size = (uint32_t)fread(data, 1, MAX_FILE_BYTES, f);
  fclose(f);
  uint8_t* exact = xmalloc(*size);
  memcpy(exact, data, *size);
  free(data);
  return exact;
}

static uint32_t trained_bytes(const tt_trainer* t) {
  uint32_t total = 0;
  for (int32_t k = 0, index; (index = tt_trainer_trained_tensor(t, k)) >= 0;
       ++k)
    total += (uint32_t)t->interpreter.tensors[index].num_bytes;
  return total;
}

static int setup_pair(seed_pair* p, const char* model_path,
                      const char* plan_path) {
  memset(p, 0, sizeof *p);
  p->model = read_file(model_path, &p->model_size);
  p->plan = read_file(plan_path, &p->plan_size);
  if (!p->model || !p->plan) {
    fprintf(stderr, "cannot read %s or %s\n", model_path, plan_path);
    return 2;
  }
  p->model_crc32 = crc32_ref(p->model, p->model_size);
  p->plan_crc32 = crc32_ref(p->plan, p->plan_size);
  tt_trainer* t = xmalloc(sizeof *t);
  uint8_t* arena = xmalloc(PROBE_ARENA_BYTES);
  if (tt_trainer_init(t, p->model, p->model_size, p->plan, p->plan_size, arena,
                      PROBE_ARENA_BYTES) != TT_OK) {
    fprintf(stderr, "%s with %s: %s\n", model_path, plan_path,
            tt_trainer_error(t)->message);
    return 2;
  }
  p->arena_bytes = tt_trainer_arena_used(t);
  const tt_interpreter* it = tt_trainer_interpreter(t);
  const tt_tensor* input = &it->tensors[tt_interpreter_input_tensor(it, 0)];
  p->input_bytes = (uint32_t)input->num_bytes;
  p->input_type = input->type;
  p->num_classes = t->num_classes;
  p->num_layers = t->num_layers;
  p->batch_size = t->batch_size;
  p->state_bytes = tt_trainer_state_bytes(t);
  p->trained_bytes = trained_bytes(t);
  free(arena);
  free(t);
  return 0;
}

static void free_pair(seed_pair* p) {
  free(p->model);
  free(p->plan);
  free(p->trainer);
  free(p->arena);
  free(p->good_state);
}

/* A sample's input: a pattern of the label plus noise. */
static void fill_input(uint8_t* data, uint32_t size, int32_t label) {
  const uint32_t noise = below(64);
  for (uint32_t i = 0; i < size; ++i)
    data[i] = (uint8_t)((int32_t)(((i * 7u + (uint32_t)label * 13u) % 96u)) -
                        48 + (int32_t)below(noise + 1));
}

/* -- frames -----------------------------------------------------------------
 */

typedef struct {
  bool error;
  uint8_t command; /* of a non-error answer, without 0x80 */
  uint16_t sequence;
  uint32_t code; /* of an error */
  const uint8_t* payload;
  uint32_t payload_bytes;
} response;

/* Checks a frame as tt_frame.h describes it; fills *r. */
static void check_response(const uint8_t* f, uint32_t size, uint32_t capacity,
                           response* r) {
  CHECK(size >= TT_FRAME_OVERHEAD && size <= capacity,
        "a response of %u bytes (capacity %u)", size, capacity);
  CHECK(f[0] == 'T' && f[1] == 'L' && f[2] == TT_FRAME_VERSION,
        "a response without 'TL' and version 1");
  CHECK(f[6] == 0 && f[7] == 0, "a response with reserved bytes set");
  const uint32_t payload = get_u32(f + 8);
  CHECK(payload == size - TT_FRAME_OVERHEAD,
        "a response declaring %u payload bytes in %u", payload, size);
  CHECK(crc32_ref(f, size - 4) == get_u32(f + size - 4),
        "a response CRC is wrong");
  memset(r, 0, sizeof *r);
  r->sequence = (uint16_t)get_u16(f + 4);
  r->payload = f + TT_FRAME_HEADER_BYTES;
  r->payload_bytes = payload;
  if (f[3] == TT_FRAME_ERROR) {
    r->error = true;
    CHECK(payload >= 4, "an error answer of %u bytes", payload);
    r->code = get_u16(r->payload);
    CHECK(r->code >= 1 && r->code <= 11, "error code %u", r->code);
    CHECK(get_u16(r->payload + 2) == 0, "an error answer's reserved u16 set");
    for (uint32_t i = 4; i < payload; ++i)
      CHECK(r->payload[i] >= 0x20 && r->payload[i] < 0x7F,
            "error message byte %u is 0x%02x", i, r->payload[i]);
    error_count[r->code]++;
  } else {
    CHECK(f[3] >= 0x81 && f[3] < 0x80 + NUM_COMMANDS,
          "a response of command 0x%02x", f[3]);
    r->command = (uint8_t)(f[3] & 0x7F);
    ok_count[r->command]++;
  }
}

static bool message_starts(const response* r, const char* prefix) {
  const uint32_t n = (uint32_t)strlen(prefix);
  return r->error && r->payload_bytes >= 4 + n &&
         memcmp(r->payload + 4, prefix, n) == 0;
}

/* -- a learner over a RAM flash
 * ------------------------------------------------ */

typedef struct {
  uint32_t state_crc, steps, epoch, in_batch, since_save, sequence;
  uint32_t heldout, heldout_capacity;
  uint8_t restored;
} info_view;

typedef struct {
  seed_pair* pair;
  tt_learner* learner;
  tt_flash_ram ram;
  tt_flash flash;
  uint8_t* flash_memory;
  uint32_t flash_bytes, page_bytes;
  uint8_t *arena, *heldout, *buffer, *info_buffer;
  uint32_t heldout_bytes, capacity;
  bool measured;
  uint32_t link_rx_buffer;
  uint8_t* undo; /* NULL: a diverged step restores the saved state */
  uint32_t undo_bytes;
  int persisted; /* 1: persisted_crc is the newest saved state; 0: none; -1
                    unknown */
  uint32_t persisted_crc;
  /* States of SAVEs that failed since: a cut in the header's last word
   * may still leave one whole (when the CRC's high half is all ones). */
  uint32_t failed_saves[8];
  int num_failed_saves;
  info_view last;
} session;

static int64_t measure(void (*fn)(void* context), void* context) {
  fn(context);
  return MEASURED;
}

static info_view query_info(session* s) {
  const seed_pair* p = s->pair;
  uint8_t* b = s->info_buffer;
  const uint16_t sequence = (uint16_t)rnd();
  tt_frame request = {TT_CMD_INFO, sequence, 0, b + TT_FRAME_HEADER_BYTES};
  const uint32_t size = tt_learner_handle(s->learner, &request, b, s->capacity);
  response r;
  check_response(b, size, s->capacity, &r);
  ok_count[TT_CMD_INFO]--; /* not the stream's */
  CHECK(!r.error && r.command == TT_CMD_INFO && r.sequence == sequence,
        "INFO answered %s %u", r.error ? "error" : "command",
        r.error ? r.code : r.command);
  const uint8_t* q = r.payload;
  CHECK(r.payload_bytes == TT_LEARNER_INFO_BYTES + 8u * (uint32_t)p->num_layers,
        "INFO of %u bytes", r.payload_bytes);
  CHECK(get_u16(q) == TT_FRAME_VERSION &&
            get_u16(q + 2) == TT_STATE_FORMAT_VERSION,
        "INFO versions");
  CHECK(get_u32(q + 4) == FIRMWARE_CRC && get_u32(q + 8) == p->model_crc32 &&
            get_u32(q + 12) == p->plan_crc32,
        "INFO firmware, model or plan CRC");
  CHECK(get_u32(q + 16) == p->arena_bytes && get_u32(q + 20) <= p->arena_bytes,
        "INFO arena");
  CHECK(get_u32(q + 24) == p->input_bytes && q[28] == (uint8_t)p->input_type,
        "INFO input");
  CHECK(q[29] <= 1 && get_u16(q + 30) == (uint32_t)p->num_classes,
        "INFO classes");
  CHECK(get_u32(q + 32) == s->capacity - TT_FRAME_OVERHEAD, "INFO max_payload");
  CHECK(get_u32(q + 36) == p->state_bytes, "INFO state_bytes");
  CHECK(get_u32(q + 40) == tt_state_slot_bytes(p->state_bytes, s->page_bytes),
        "INFO slot_bytes");
  info_view v;
  v.sequence = get_u32(q + 44);
  v.state_crc = get_u32(q + 48);
  v.steps = get_u32(q + 52);
  v.epoch = get_u32(q + 56);
  v.in_batch = get_u32(q + 60);
  v.since_save = get_u32(q + 64);
  v.heldout = get_u16(q + 68);
  v.heldout_capacity = get_u16(q + 70);
  v.restored = q[29];
  uint32_t capacity = s->heldout_bytes / (p->input_bytes + 4);
  if (capacity > 0xFFFF) capacity = 0xFFFF;
  CHECK(v.heldout_capacity == capacity && v.heldout <= capacity,
        "INFO held-out %u of %u", v.heldout, v.heldout_capacity);
  CHECK(v.in_batch < (uint32_t)p->batch_size, "INFO samples_in_batch %u",
        v.in_batch);
  CHECK(q[72] <= TT_SLOT_OTHER_FORMAT && q[73] <= TT_SLOT_OTHER_FORMAT,
        "INFO slot status");
  CHECK(get_u16(q + 74) == (uint32_t)p->num_layers &&
            get_u32(q + 76) == p->trained_bytes,
        "INFO layers or trained bytes");
  int64_t count;
  memcpy(&count, q + 80, 8); /* the host is little-endian */
  CHECK(count == (v.restored ? (s->measured ? MEASURED : -1) : 0) ||
            (!v.restored && count == (s->measured ? MEASURED : -1)),
        "INFO restore_count %lld", (long long)count);
  CHECK(get_u32(q + 88) == s->link_rx_buffer, "INFO link_rx_buffer");
  for (int32_t l = 0; l < p->num_layers; ++l)
    CHECK(q[TT_LEARNER_INFO_BYTES + 8 * l + 5] == 0,
          "INFO layer %d reserved byte", l);
  /* The CRC is the learned state's. */
  const tt_trainer* t = &s->learner->trainer;
  uint8_t counters[TT_STATE_COUNTERS_BYTES];
  put_u32(counters, t->steps);
  put_u32(counters + 4, t->epoch);
  put_u32(counters + 8, (uint32_t)t->samples_in_batch);
  put_u32(counters + 12, 0);
  uint32_t bytes;
  const uint8_t* block = tt_trainer_learned_block(t, &bytes);
  CHECK(v.state_crc == tt_crc32_update(tt_crc32(counters, 16), block, bytes) &&
            v.steps == t->steps && v.epoch == t->epoch,
        "INFO state CRC or counters are not the trainer's");
  return v;
}

static tt_learner_config session_config(const session* s,
                                        const tt_flash* flash) {
  const seed_pair* p = s->pair;
  return (tt_learner_config){.model = p->model,
                             .model_size = p->model_size,
                             .plan = p->plan,
                             .plan_size = p->plan_size,
                             .arena = s->arena,
                             .arena_size = p->arena_bytes,
                             .flash = flash,
                             .heldout = s->heldout,
                             .heldout_bytes = s->heldout_bytes,
                             .firmware_crc32 = FIRMWARE_CRC,
                             .measure = s->measured ? measure : NULL,
                             .link_rx_buffer = s->link_rx_buffer,
                             .undo = s->undo,
                             .undo_bytes = s->undo_bytes};
}

static void boot(session* s) {
  tt_flash_ram_power_on(&s->ram);
  const tt_learner_config config = session_config(s, &s->flash);
  const tt_status status = tt_learner_init(s->learner, &config);
  CHECK(status == TT_OK, "learner init: %s", s->learner->error.message);
  const info_view v = query_info(s);
  reboots++;
  restored_boots += v.restored;
  CHECK(v.since_save == 0 && v.heldout == 0, "a boot with %u steps unsaved",
        v.since_save);
  bool failed_save = false;
  for (int i = 0; i < s->num_failed_saves; ++i)
    failed_save |= v.restored && v.state_crc == s->failed_saves[i];
  if (s->persisted == 1)
    CHECK((v.restored && v.state_crc == s->persisted_crc) || failed_save,
          "the boot did not restore the last saved state (restored %u)",
          v.restored);
  if (s->persisted == 0)
    CHECK((!v.restored && v.state_crc == s->pair->fresh_crc) || failed_save,
          "the boot restored a state where none was saved");
  s->num_failed_saves = 0;
  s->persisted = v.restored ? 1 : 0;
  s->persisted_crc = v.state_crc;
  s->last = v;
}

/* A learner for `p`; flash_image (flash_bytes of it) or an erased flash. */
static void open_session(session* s, seed_pair* p, uint32_t page_bytes,
                         const uint8_t* flash_image, uint32_t flash_bytes) {
  memset(s, 0, sizeof *s);
  s->pair = p;
  s->learner = xmalloc(sizeof *s->learner);
  s->arena = xmalloc(p->arena_bytes);
  s->page_bytes = page_bytes;
  s->flash_bytes = flash_bytes;
  s->flash_memory = xmalloc(flash_bytes);
  if (flash_image != NULL) {
    memcpy(s->flash_memory, flash_image, flash_bytes);
  } else if (one_in(4)) {
    fill_random(s->flash_memory, flash_bytes); /* never a valid state */
  } else {
    memset(s->flash_memory, 0xFF, flash_bytes);
  }
  tt_flash_ram_init(&s->ram, s->flash_memory, flash_bytes, page_bytes,
                    &s->flash);
  if (flash_image == NULL && one_in(8)) {
    s->ram.worn_page = (int32_t)below(flash_bytes / page_bytes);
    worn_sessions++;
  }
  const uint32_t minimum = 256u + 8u * (uint32_t)p->num_layers;
  s->capacity = (p->input_bytes + 8 > minimum ? p->input_bytes + 8 : minimum) +
                TT_FRAME_OVERHEAD + (one_in(4) ? below(2048) : 0);
  s->buffer = xmalloc(s->capacity);
  s->info_buffer = xmalloc(s->capacity);
  s->heldout_bytes =
      (1 + below(4)) * (p->input_bytes + 4) + below(p->input_bytes);
  s->heldout = xmalloc(s->heldout_bytes);
  s->measured = one_in(2);
  s->link_rx_buffer = one_in(2) ? 0 : rnd();
  s->undo_bytes = one_in(2) ? p->state_bytes - TT_STATE_COUNTERS_BYTES : 0;
  s->undo = s->undo_bytes ? xmalloc(s->undo_bytes) : NULL;
  s->persisted = flash_image != NULL ? -1 : 0;
  sessions++;
}

static void close_session(session* s) {
  free(s->learner);
  free(s->arena);
  free(s->flash_memory);
  free(s->buffer);
  free(s->info_buffer);
  free(s->heldout);
  free(s->undo);
}

/* The model's own state CRC: a learner without flash. */
static void find_fresh_crc(seed_pair* p) {
  session s;
  open_session(&s, p, 4096, NULL, 4096);
  const tt_learner_config config = session_config(&s, NULL);
  CHECK(tt_learner_init(s.learner, &config) == TT_OK, "learner init: %s",
        s.learner->error.message);
  uint32_t bytes;
  const tt_trainer* t = &s.learner->trainer;
  uint8_t counters[TT_STATE_COUNTERS_BYTES];
  tt_trainer_state_counters(t, counters);
  const uint8_t* block = tt_trainer_learned_block(t, &bytes);
  p->fresh_crc = tt_crc32_update(tt_crc32(counters, 16), block, bytes);
  close_session(&s);
  sessions--;
}

static uint32_t region_bytes(const seed_pair* p, uint32_t page_bytes) {
  return 2 * tt_state_slot_bytes(p->state_bytes, page_bytes);
}

/* -- the line: bursts of bytes with quiet gaps between them
 * -------------------- */

typedef struct {
  uint8_t* data;
  uint8_t* quiet; /* quiet[i]: the line is quiet before byte i */
  uint32_t size, pos, room;
  uint32_t idle_ms;
  uint32_t first; /* the first byte the current serve_one read */
  uint8_t* answer;
  uint32_t answer_bytes, capacity;
  int writes;
} line;

static bool read_byte(void* context, uint8_t* byte, uint32_t timeout_ms) {
  line* l = context;
  CHECK(timeout_ms == TT_LINK_FOREVER || timeout_ms == l->idle_ms,
        "read_byte with timeout %u", timeout_ms);
  if (l->pos >= l->size) {
    CHECK(timeout_ms != TT_LINK_FOREVER,
          "serve_one waits forever on a quiet line");
    return false;
  }
  if (l->quiet[l->pos] && timeout_ms != TT_LINK_FOREVER) return false;
  if (l->first == UINT32_MAX) l->first = l->pos;
  *byte = l->data[l->pos++];
  return true;
}

static void write_answer(void* context, const uint8_t* data, uint32_t size) {
  line* l = context;
  CHECK(size <= l->capacity, "an answer of %u bytes, buffer %u", size,
        l->capacity);
  memcpy(l->answer, data, size);
  l->answer_bytes = size;
  l->writes++;
}

/* Appends a burst: the line is quiet before it. */
static void append(line* l, const uint8_t* bytes, uint32_t size, bool gap) {
  CHECK(l->size + size <= l->room, "the line is full");
  memcpy(l->data + l->size, bytes, size);
  memset(l->quiet + l->size, 0, size);
  if (gap && size > 0) l->quiet[l->size] = 1;
  l->size += size;
}

/* What the answer to bytes starting at `start` must be. */
typedef enum { EXPECT_REQUEST, EXPECT_BAD_FRAME } expect_kind;

typedef struct {
  uint32_t start;    /* first byte of the burst */
  uint32_t frame_at; /* EXPECT_REQUEST: the intact frame's offset */
  expect_kind kind;
  const char* problem; /* EXPECT_BAD_FRAME: the message's start */
  int sequence;        /* EXPECT_BAD_FRAME: the sequence echoed, -1 any */
} expectation;

#define MAX_EXPECT 16

/* -- requests
 * ------------------------------------------------------------------ */

/* A set of answers: bit 0 OK, bit k error k. */
#define ANSWER_OK 1u
#define ANSWER_ERROR(code) (1u << (code))

/* take_sample's checks: 0 when the sample passes, else its error. */
static uint32_t sample_answer(const seed_pair* p, const uint8_t* payload,
                              uint32_t n, bool labelled) {
  if (n < 8) return ANSWER_ERROR(TT_WIRE_BAD_REQUEST);
  if (payload[0] != (uint8_t)p->input_type)
    return ANSWER_ERROR(TT_WIRE_BAD_SAMPLE);
  if (n - 8 != p->input_bytes) return ANSWER_ERROR(TT_WIRE_BAD_SAMPLE);
  const int32_t label = (int32_t)get_u32(payload + 4);
  if (labelled && (label < 0 || label >= p->num_classes))
    return ANSWER_ERROR(TT_WIRE_BAD_LABEL);
  return 0;
}

/* A PULL range of `total` bytes: 0 when it is fine. */
static uint32_t range_answer(const session* s, const uint8_t* payload,
                             uint32_t n, uint32_t total) {
  if (n != 8) return ANSWER_ERROR(TT_WIRE_BAD_REQUEST);
  const uint32_t offset = get_u32(payload), length = get_u32(payload + 4);
  if (offset > total || length > total - offset ||
      length > s->capacity - TT_FRAME_OVERHEAD)
    return ANSWER_ERROR(TT_WIRE_BAD_REQUEST);
  return 0;
}

/* The answers tt_learner.h allows an intact request, from the learner's
 * state before it (where it leaves the order of checks open, either). */
static uint32_t expected_answer(const session* s, const info_view* before,
                                uint8_t command, const uint8_t* payload,
                                uint32_t n) {
  const seed_pair* p = s->pair;
  uint32_t bad;
  switch (command) {
    case TT_CMD_INFO:
      return n ? ANSWER_ERROR(TT_WIRE_BAD_REQUEST) : ANSWER_OK;
    case TT_CMD_TRAIN:
      return (bad = sample_answer(p, payload, n, true))
                 ? bad
                 : ANSWER_OK | ANSWER_ERROR(TT_WIRE_DIVERGED);
    case TT_CMD_PREDICT:
      return (bad = sample_answer(p, payload, n, false)) ? bad : ANSWER_OK;
    case TT_CMD_EVALUATE:
      if (n == 0) return ANSWER_OK;
      return (bad = sample_answer(p, payload, n, true)) ? bad : ANSWER_OK;
    case TT_CMD_BEGIN_EPOCH:
      if (n != 4) return ANSWER_ERROR(TT_WIRE_BAD_REQUEST);
      return before->in_batch != 0 && s->learner->trainer.sample_budget > 0
                 ? ANSWER_ERROR(TT_WIRE_RUNTIME)
                 : ANSWER_OK;
    case TT_CMD_SAVE:
      if (n != 4 || (payload[0] & ~3u) != 0 || payload[1] != 0 ||
          (payload[0] != 0 && before->heldout == 0))
        return ANSWER_ERROR(TT_WIRE_BAD_REQUEST);
      if (before->since_save == 0) return ANSWER_ERROR(TT_WIRE_NOTHING_TRAINED);
      return ANSWER_OK | ANSWER_ERROR(TT_WIRE_FLASH);
    case TT_CMD_PULL:
      bad = range_answer(s, payload, n, p->trained_bytes);
      if (before->steps == 0)
        return n != 8 ? bad : bad | ANSWER_ERROR(TT_WIRE_NOTHING_TRAINED);
      return bad ? bad : ANSWER_OK;
    case TT_CMD_PULL_STATE:
      bad = range_answer(s, payload, n, p->state_bytes);
      if (bad) return bad;
      return before->steps == 0
                 ? ANSWER_OK | ANSWER_ERROR(TT_WIRE_NOTHING_TRAINED)
                 : ANSWER_OK;
    case TT_CMD_FACTORY_RESET:
      return n ? ANSWER_ERROR(TT_WIRE_BAD_REQUEST)
               : ANSWER_OK | ANSWER_ERROR(TT_WIRE_FLASH);
    case TT_CMD_HOLDOUT:
      if (n == 0) return ANSWER_OK;
      if ((bad = sample_answer(p, payload, n, true)) != 0) return bad;
      return before->heldout >= before->heldout_capacity
                 ? ANSWER_ERROR(TT_WIRE_HELDOUT_FULL)
                 : ANSWER_OK;
    default:
      return ANSWER_ERROR(TT_WIRE_UNKNOWN_COMMAND);
  }
}

/* A sample payload; hostile: one field wrong. Returns its length. */
static uint32_t put_sample(const session* s, uint8_t* payload, uint32_t room,
                           bool hostile) {
  const seed_pair* p = s->pair;
  int32_t label = (int32_t)below((uint32_t)p->num_classes);
  uint8_t dtype = (uint8_t)p->input_type;
  uint32_t n = 8 + p->input_bytes;
  if (hostile) {
    switch (below(5)) {
      case 0: {
        static const uint8_t kTypes[] = {0, 1, 2, 3, 7, 9, 10, 255};
        dtype = kTypes[below(sizeof kTypes)];
        if (one_in(3)) dtype = (uint8_t)rnd();
        break;
      }
      case 1: {
        static const int32_t kLabels[] = {-1,  -2,  10,        11,
                                          127, 128, INT32_MAX, INT32_MIN};
        label = one_in(4) ? (int32_t)rnd() : kLabels[below(8)];
        if (one_in(3)) label = p->num_classes + (int32_t)below(3);
        break;
      }
      case 2:
        n = 8 + p->input_bytes + 1 + below(16);
        break;
      case 3:
        n = 8 + (p->input_bytes > 16 ? p->input_bytes - 1 - below(16) : 0);
        break;
      default:
        n = below(8);
        break;
    }
  }
  if (n > room) n = room;
  uint8_t header[8] = {dtype, 0, 0, 0, 0, 0, 0, 0};
  put_u32(header + 4, (uint32_t)label);
  if (hostile && one_in(8)) header[1 + below(3)] = (uint8_t)rnd();
  memcpy(payload, header, n < 8 ? n : 8);
  if (n > 8) fill_input(payload + 8, n - 8, label);
  return n;
}

/* An intact request frame into f; returns its length. */
static uint32_t make_request(const session* s, uint8_t* f) {
  uint8_t* payload = f + TT_FRAME_HEADER_BYTES;
  const uint32_t room = s->capacity - TT_FRAME_OVERHEAD;
  uint8_t command = TT_CMD_TRAIN;
  uint32_t n = 0;
  switch (below(20)) {
    case 0:
    case 1:
    case 2:
    case 3:
    case 4:
    case 5:
      n = put_sample(s, payload, room, false);
      break;
    case 6:
    case 7: {
      static const uint8_t kSampled[] = {TT_CMD_TRAIN, TT_CMD_PREDICT,
                                         TT_CMD_EVALUATE, TT_CMD_HOLDOUT};
      command = kSampled[below(4)];
      n = put_sample(s, payload, room, true);
      break;
    }
    case 8:
      command = one_in(2) ? TT_CMD_PREDICT : TT_CMD_EVALUATE;
      n = one_in(4) && command == TT_CMD_EVALUATE
              ? 0
              : put_sample(s, payload, room, false);
      break;
    case 9:
      command = TT_CMD_HOLDOUT;
      n = one_in(5) ? 0 : put_sample(s, payload, room, false);
      break;
    case 10:
    case 11:
    case 12:
      command = TT_CMD_SAVE;
      n = 4;
      payload[0] = one_in(3) ? (uint8_t)(1 + below(3)) : 0;
      payload[1] = 0;
      payload[2] = (uint8_t)below(3);
      payload[3] = 0;
      if (one_in(8)) fill_random(payload, 4);
      if (one_in(10)) n = below(9);
      break;
    case 13: {
      command = one_in(3) ? TT_CMD_PULL_STATE : TT_CMD_PULL;
      n = 8;
      const uint32_t total = command == TT_CMD_PULL ? s->pair->trained_bytes
                                                    : s->pair->state_bytes;
      uint32_t offset = below(total + 1);
      uint32_t length = below(total - offset + 1);
      if (one_in(4)) offset = one_in(2) ? interesting() : total - below(4);
      if (one_in(4)) length = one_in(2) ? interesting() : total - offset + 1;
      put_u32(payload, offset);
      put_u32(payload + 4, length);
      if (one_in(10)) n = below(13);
      break;
    }
    case 14:
      command = TT_CMD_BEGIN_EPOCH;
      n = one_in(8) ? below(9) : 4;
      put_u32(payload, one_in(2) ? below(8) : interesting());
      break;
    case 15:
      command = TT_CMD_INFO;
      n = one_in(3) ? 1 + below(8) : 0;
      fill_random(payload, n);
      break;
    case 16:
      command = TT_CMD_FACTORY_RESET;
      n = one_in(2) ? 1 + below(4) : 0; /* an empty one wipes everything */
      if (n == 0 && !one_in(8)) n = 1;
      fill_random(payload, n);
      break;
    case 17:
      command = (uint8_t)rnd();
      n = one_in(2) ? below(16) : below(room + 1);
      fill_random(payload, n);
      break;
    default:
      command = (uint8_t)(1 + below(NUM_COMMANDS - 1));
      n = one_in(2) ? below(16) : below(room + 1);
      fill_random(payload, n);
      break;
  }
  return tt_frame_finish(f, command, (uint16_t)rnd(), n);
}

static void fix_crc(uint8_t* f, uint32_t size) {
  put_u32(f + size - 4, tt_crc32(f, size - 4));
}

/* Noise without a 'T': certainly not a frame. */
static uint32_t make_noise(uint8_t* out, uint32_t max) {
  const uint32_t n = 1 + below(max);
  for (uint32_t i = 0; i < n; ++i) {
    out[i] = (uint8_t)rnd();
    if (out[i] == 'T') out[i] = 'X';
  }
  return n;
}

typedef struct {
  line* l;
  expectation* ex;
  int count;
} plan_out;

static void expect(plan_out* o, expectation e) {
  if (o->count < MAX_EXPECT) o->ex[o->count++] = e;
}

/* One burst onto the line, with what its first answer must be when that
 * is certain. */
static void make_burst(const session* s, plan_out* o, uint8_t* f, uint8_t* g) {
  line* l = o->l;
  const uint32_t start = l->size;
  uint32_t n = make_request(s, f);
  const uint32_t choice = below(32);
  if (choice < 16) { /* one intact request */
    expect(o, (expectation){start, start, EXPECT_REQUEST, NULL, -1});
    append(l, f, n, true);
  } else if (choice < 18) { /* two back to back */
    expect(o, (expectation){start, start, EXPECT_REQUEST, NULL, -1});
    append(l, f, n, true);
    const uint32_t second = l->size;
    n = make_request(s, f);
    expect(o, (expectation){second, second, EXPECT_REQUEST, NULL, -1});
    append(l, f, n, false);
  } else if (choice < 20) { /* noise alone */
    n = make_noise(g, 64);
    expect(o,
           (expectation){start, 0, EXPECT_BAD_FRAME, "bytes that are not", 0});
    append(l, g, n, true);
  } else if (choice == 20) { /* truncated */
    const uint32_t cut = 1 + below(n - 1);
    expect(o, (expectation){start, 0, EXPECT_BAD_FRAME, "truncated",
                            cut >= 6 ? (int)get_u16(f + 4) : 0});
    append(l, f, cut, true);
  } else if (choice == 21) { /* one bit flipped after the header */
    const uint32_t at =
        TT_FRAME_HEADER_BYTES + below(n - TT_FRAME_HEADER_BYTES);
    f[at] ^= (uint8_t)(1u << below(8));
    expect(o, (expectation){start, 0, EXPECT_BAD_FRAME, "corrupt",
                            (int)get_u16(f + 4)});
    append(l, f, n, true);
  } else if (choice == 22) { /* declares more than fits */
    const uint32_t room = s->capacity - TT_FRAME_OVERHEAD;
    const uint32_t declared = one_in(2)
                                  ? room + 1 + below(64)
                                  : room + 1 + rnd() % (UINT32_MAX - room);
    put_u32(f + 8, declared);
    if (one_in(2)) fix_crc(f, n);
    expect(o, (expectation){start, 0, EXPECT_BAD_FRAME, "oversized",
                            (int)get_u16(f + 4)});
    append(l, f, n < 12 + 8 ? n : 12 + below(n - 11), true);
  } else if (choice == 23) { /* another version */
    f[2] = (uint8_t)(2 + below(254));
    if (one_in(3)) f[2] = 0;
    expect(o,
           (expectation){start, 0, EXPECT_BAD_FRAME, "frame of an unknown", 0});
    append(l, f, n, true);
  } else if (choice == 24) { /* noise, or a lone 'T', then an intact frame */
    uint32_t k = 1;
    g[0] = 'T';
    if (one_in(2)) k = make_noise(g, 48);
    expect(o, (expectation){start, start + k, EXPECT_REQUEST, NULL, -1});
    append(l, g, k, true);
    append(l, f, n, false);
  } else if (choice == 25) { /* header or payload bits flipped, CRC right */
    for (uint32_t m = 1 + below(3); m > 0; --m) {
      uint32_t at = 3 + below(n - 7);
      if (at >= 8 && at < 12) at -= 4; /* keep the length */
      f[at] ^= (uint8_t)(1u << below(8));
    }
    fix_crc(f, n);
    expect(o, (expectation){start, start, EXPECT_REQUEST, NULL, -1});
    append(l, f, n, true);
  } else if (choice == 26 &&
             n > TT_FRAME_OVERHEAD) { /* shorter, then its tail */
    const uint32_t payload = below(n - TT_FRAME_OVERHEAD);
    put_u32(f + 8, payload);
    fix_crc(f, TT_FRAME_OVERHEAD + payload);
    expect(o, (expectation){start, start, EXPECT_REQUEST, NULL, -1});
    append(l, f, n, true);
  } else if (choice == 27) { /* split by a gap */
    const uint32_t cut = 1 + below(n - 1);
    expect(o, (expectation){start, 0, EXPECT_BAD_FRAME, "truncated",
                            cut >= 6 ? (int)get_u16(f + 4) : 0});
    append(l, f, cut, true);
    append(l, f + cut, n - cut, true);
  } else if (choice == 28) { /* raw noise, with frame starts in it */
    const uint32_t k = 1 + below(300);
    fill_random(g, k);
    for (uint32_t i = 0; i + 3 < k; i += 1 + below(32)) {
      g[i] = 'T';
      if (one_in(2)) g[i + 1] = 'L';
      if (one_in(2)) g[i + 2] = TT_FRAME_VERSION;
    }
    append(l, g, k, true);
  } else { /* random damage */
    for (uint32_t m = 1 + below(6); m > 0; --m) {
      const uint32_t at = below(n);
      switch (below(4)) {
        case 0:
          f[at] ^= (uint8_t)(1u << below(8));
          break;
        case 1:
          f[at] = (uint8_t)rnd();
          break;
        case 2:
          if (at + 4 <= n) put_u32(f + at, interesting());
          break;
        default:
          n = at + 1;
          break;
      }
    }
    if (one_in(2)) {
      const uint32_t k = make_noise(g, 16);
      append(l, g, k, true);
      append(l, f, n, false);
    } else {
      append(l, f, n, true);
    }
  }
}

/* TRAIN samples then a SAVE, so the store really is exercised. */
static void make_train_then_save(const session* s, plan_out* o, uint8_t* f) {
  line* l = o->l;
  for (uint32_t k = 1 + below(4); k > 0; --k) {
    const uint32_t n = put_sample(s, f + TT_FRAME_HEADER_BYTES,
                                  s->capacity - TT_FRAME_OVERHEAD, false);
    const uint32_t size = tt_frame_finish(f, TT_CMD_TRAIN, (uint16_t)rnd(), n);
    expect(o, (expectation){l->size, l->size, EXPECT_REQUEST, NULL, -1});
    append(l, f, size, one_in(2));
  }
  uint8_t* payload = f + TT_FRAME_HEADER_BYTES;
  payload[0] = one_in(4) ? (uint8_t)(1 + below(3)) : 0;
  payload[1] = 0;
  payload[2] = (uint8_t)below(2);
  payload[3] = 0;
  const uint32_t size = tt_frame_finish(f, TT_CMD_SAVE, (uint16_t)rnd(), 4);
  expect(o, (expectation){l->size, l->size, EXPECT_REQUEST, NULL, -1});
  append(l, f, size, true);
}

/* -- answers against the state before and after
 * -------------------------------- */

static bool same_state(const info_view* a, const info_view* b) {
  return a->state_crc == b->state_crc && a->steps == b->steps &&
         a->epoch == b->epoch && a->in_batch == b->in_batch &&
         a->since_save == b->since_save && a->heldout == b->heldout &&
         a->restored == b->restored;
}

static void check_pull(const session* s, const uint8_t* request,
                       const response* r) {
  const tt_trainer* t = &s->learner->trainer;
  const uint32_t offset = get_u32(request), length = get_u32(request + 4);
  CHECK(r->payload_bytes == length, "PULL of %u bytes answered %u", length,
        r->payload_bytes);
  uint32_t position = 0, matched = 0;
  for (int32_t k = 0, index; (index = tt_trainer_trained_tensor(t, k)) >= 0;
       ++k) {
    const tt_tensor* tensor = &t->interpreter.tensors[index];
    const uint8_t* data = tt_arena_at(&t->interpreter, tensor->data_offset);
    for (uint32_t i = 0; i < (uint32_t)tensor->num_bytes; ++i, ++position)
      if (position >= offset && position - offset < length) {
        CHECK(r->payload[position - offset] == data[i],
              "PULL byte %u is not the trained parameter's", position);
        matched++;
      }
  }
  CHECK(matched == length, "PULL gave %u of %u bytes", matched, length);
}

static void check_pull_state(const session* s, const uint8_t* request,
                             const response* r) {
  const tt_trainer* t = &s->learner->trainer;
  const uint32_t offset = get_u32(request), length = get_u32(request + 4);
  CHECK(r->payload_bytes == length, "PULL_STATE of %u bytes answered %u",
        length, r->payload_bytes);
  uint8_t* state = xmalloc(s->pair->state_bytes);
  CHECK(tt_trainer_state_write(t, state, s->pair->state_bytes) == TT_OK,
        "state write");
  CHECK(memcmp(state + offset, r->payload, length) == 0,
        "PULL_STATE bytes are not the learned state's");
  free(state);
}

/* A diverged step changes nothing with an undo buffer; without one the
 * learner is back at its saved state (the model's own without one). */
static void check_diverged(const session* s, const info_view* before,
                           const info_view* after) {
  if (s->undo != NULL) {
    CHECK(same_state(before, after),
          "a diverged step changed the state despite the undo");
    return;
  }
  CHECK(after->since_save == 0 && after->sequence == before->sequence,
        "a diverged step left %u unsaved steps", after->since_save);
  if (s->persisted == 1)
    CHECK(after->state_crc == s->persisted_crc,
          "a diverged step did not restore the save");
  if (s->persisted == 0)
    CHECK(after->state_crc == s->pair->fresh_crc && after->steps == 0,
          "a diverged step did not go back to the model's own weights");
}

/* The learner's state went from `before` to `after` with answer r; the
 * request is known when `request` is not NULL. */
static void check_transition(session* s, const response* r,
                             const uint8_t* request, const info_view* before,
                             const info_view* after) {
  const seed_pair* p = s->pair;
  if (r->error) {
    if (r->code != TT_WIRE_DIVERGED)
      CHECK(same_state(before, after),
            "error %s changed the learner's state (steps %u -> %u, crc %08x -> "
            "%08x)",
            kErrorNames[r->code], before->steps, after->steps,
            before->state_crc, after->state_crc);
    if (r->code == TT_WIRE_FLASH &&
        (request == NULL || request[3] != TT_CMD_SAVE))
      s->persisted = -1; /* a FACTORY_RESET may have erased one slot */
    else if (r->code == TT_WIRE_FLASH && s->num_failed_saves < 8)
      s->failed_saves[s->num_failed_saves++] = before->state_crc;
    else if (r->code == TT_WIRE_FLASH)
      s->persisted = -1;
    if (r->code == TT_WIRE_DIVERGED) check_diverged(s, before, after);
    return;
  }
  const uint8_t* q = r->payload;
  switch (r->command) {
    case TT_CMD_INFO:
      CHECK(same_state(before, after), "INFO changed the state");
      break;
    case TT_CMD_TRAIN:
      CHECK(r->payload_bytes == 16, "TRAIN answer of %u bytes",
            r->payload_bytes);
      CHECK(after->steps == before->steps + 1 && get_u32(q + 4) == after->steps,
            "TRAIN took steps %u -> %u (answered %u)", before->steps,
            after->steps, get_u32(q + 4));
      {
        float loss;
        memcpy(&loss, q, 4);
        CHECK(loss >= 0.0f && loss < 1e30f, "TRAIN loss %g", (double)loss);
        int64_t count;
        memcpy(&count, q + 8, 8);
        CHECK(count == (s->measured ? MEASURED : -1), "TRAIN count %lld",
              (long long)count);
      }
      break;
    case TT_CMD_PREDICT:
      CHECK(r->payload_bytes == 4u + (uint32_t)p->num_classes &&
                get_u32(q) < (uint32_t)p->num_classes,
            "PREDICT answer");
      CHECK(same_state(before, after), "PREDICT changed the state");
      break;
    case TT_CMD_EVALUATE:
      if (r->payload_bytes == 12)
        CHECK(get_u32(q) <= get_u32(q + 4) && get_u32(q + 4) == after->heldout,
              "EVALUATE of the held-out samples: %u of %u", get_u32(q),
              get_u32(q + 4));
      else
        CHECK(r->payload_bytes == 8 && get_u32(q) < (uint32_t)p->num_classes,
              "EVALUATE answer");
      CHECK(same_state(before, after), "EVALUATE changed the state");
      break;
    case TT_CMD_BEGIN_EPOCH:
      CHECK(r->payload_bytes == 4 && get_u32(q) == after->epoch &&
                after->steps == before->steps,
            "BEGIN_EPOCH answer");
      if (request != NULL)
        CHECK(get_u32(q) == get_u32(request + TT_FRAME_HEADER_BYTES),
              "BEGIN_EPOCH echoed another epoch");
      break;
    case TT_CMD_SAVE: {
      CHECK(r->payload_bytes == TT_LEARNER_SAVE_BYTES,
            "SAVE answer of %u bytes", r->payload_bytes);
      const uint8_t outcome = q[0], reason = q[1];
      CHECK(get_u32(q + 4) == after->sequence && after->since_save == 0,
            "SAVE answered sequence %u, INFO says %u", get_u32(q + 4),
            after->sequence);
      if (outcome == TT_SAVE_SAVED) {
        saved++;
        CHECK(reason == TT_SAVE_REASON_NONE &&
                  after->sequence == next_of(before->sequence) &&
                  after->state_crc == before->state_crc,
              "SAVED: sequence %u -> %u", before->sequence, after->sequence);
        s->persisted = 1;
        s->persisted_crc = after->state_crc;
        s->num_failed_saves = 0;
      } else {
        rolled_back++;
        CHECK(outcome == TT_SAVE_ROLLED_BACK &&
                  (reason == TT_SAVE_REASON_ACCURACY ||
                   reason == TT_SAVE_REASON_LOSS ||
                   reason == TT_SAVE_REASON_NOT_FINITE) &&
                  after->sequence == before->sequence,
              "SAVE outcome %u reason %u", outcome, reason);
        if (s->persisted >= 0)
          CHECK(after->state_crc ==
                    (s->persisted ? s->persisted_crc : p->fresh_crc),
                "a roll-back to something other than the saved state");
      }
      break;
    }
    case TT_CMD_PULL:
      CHECK(same_state(before, after), "PULL changed the state");
      if (request != NULL) check_pull(s, request + TT_FRAME_HEADER_BYTES, r);
      break;
    case TT_CMD_PULL_STATE:
      CHECK(same_state(before, after), "PULL_STATE changed the state");
      if (request != NULL)
        check_pull_state(s, request + TT_FRAME_HEADER_BYTES, r);
      break;
    case TT_CMD_FACTORY_RESET:
      CHECK(r->payload_bytes == 4 && after->state_crc == p->fresh_crc &&
                after->steps == 0 && after->sequence == 0 && !after->restored,
            "FACTORY_RESET left a state behind");
      s->persisted = 0;
      s->num_failed_saves = 0;
      break;
    case TT_CMD_HOLDOUT:
      CHECK(r->payload_bytes == 4 && get_u16(q) == after->heldout &&
                get_u16(q + 2) == after->heldout_capacity,
            "HOLDOUT answer");
      CHECK(after->state_crc == before->state_crc &&
                after->steps == before->steps,
            "HOLDOUT changed the learned state");
      break;
    default:
      CHECK(false, "answer to command %u", r->command);
  }
}

static void check_expected(const session* s, const expectation* e,
                           const line* l, const response* r,
                           const info_view* before) {
  expected_checked++;
  if (e->kind == EXPECT_BAD_FRAME) {
    CHECK(r->error && r->code == TT_WIRE_BAD_FRAME &&
              message_starts(r, e->problem),
          "a broken frame answered %s %u, not \"%s...\"",
          r->error ? "error" : "command", r->error ? r->code : r->command,
          e->problem);
    CHECK(e->sequence < 0 || r->sequence == (uint16_t)e->sequence,
          "a broken frame answered sequence %u, not %d", r->sequence,
          e->sequence);
    return;
  }
  const uint8_t* f = l->data + e->frame_at;
  const uint8_t command = f[3];
  const uint32_t n = get_u32(f + 8);
  const uint32_t allowed =
      expected_answer(s, before, command, f + TT_FRAME_HEADER_BYTES, n);
  CHECK(r->sequence == get_u16(f + 4), "sequence %u answered as %u",
        get_u16(f + 4), r->sequence);
  CHECK(r->error || r->command == command, "command %u answered command %u",
        command, r->command);
  CHECK(allowed & (r->error ? ANSWER_ERROR(r->code) : ANSWER_OK),
        "command %u (%u bytes) answered %s%s (\"%.*s\"); allowed: 0x%x",
        command, n, r->error ? "error " : "OK",
        r->error ? kErrorNames[r->code] : "",
        r->error ? (int)r->payload_bytes - 4 : 0,
        r->error ? (const char*)r->payload + 4 : "", allowed);
}

static void serve_line(session* s, line* l, const expectation* ex, int count) {
  const tt_link link = {read_byte, write_answer, l, l->idle_ms};
  while (l->pos < l->size) {
    l->first = UINT32_MAX;
    l->writes = 0;
    const info_view before = s->last;
    tt_learner_serve_one(s->learner, &link, s->buffer, s->capacity);
    CHECK(l->writes == 1, "serve_one wrote %d answers", l->writes);
    frames_served++;
    response r;
    check_response(l->answer, l->answer_bytes, s->capacity, &r);
    const expectation* e = NULL;
    for (int i = 0; i < count; ++i)
      if (ex[i].start == l->first) e = &ex[i];
    if (e != NULL) check_expected(s, e, l, &r, &before);
    const info_view after = query_info(s);
    const uint8_t* request =
        e != NULL && e->kind == EXPECT_REQUEST ? l->data + e->frame_at : NULL;
    check_transition(s, &r, request, &before, &after);
    s->last = after;
  }
}

static void run_frames(seed_pair* pairs, int num_pairs, long iterations) {
  phase = "frames";
  static const uint32_t kPages[] = {256, 1024, 4096};
  session s;
  bool open = false;
  line l;
  memset(&l, 0, sizeof l);
  uint32_t max_capacity = 0;
  for (int i = 0; i < num_pairs; ++i) {
    const uint32_t c =
        pairs[i].input_bytes + 8 + 256 + 8u * (uint32_t)pairs[i].num_layers;
    if (c > max_capacity) max_capacity = c;
  }
  max_capacity += TT_FRAME_OVERHEAD + 2048;
  l.room = 24 * max_capacity;
  l.data = xmalloc(l.room);
  l.quiet = xmalloc(l.room);
  l.answer = xmalloc(max_capacity);
  uint8_t* f = xmalloc(max_capacity);
  uint8_t* g = xmalloc(max_capacity);
  expectation ex[MAX_EXPECT];
  /* Each pair after the first (slower ones) gets a 40th of the streams. */
  const long share = iterations / 40 > 0 ? iterations / 40 : 1;
  long first_share = iterations - share * (num_pairs - 1);
  if (first_share < 0) first_share = 0;
  int pair = 0;
  long pair_end = first_share;
  for (iteration = 0; iteration < iterations; ++iteration) {
    bool switched = false;
    while (iteration >= pair_end && pair + 1 < num_pairs) {
      pair++;
      pair_end += share;
      switched = true;
    }
    if (!open || switched || one_in(150)) {
      if (open) close_session(&s);
      seed_pair* p = &pairs[pair];
      const uint32_t page = kPages[below(3)];
      open_session(&s, p, page, NULL,
                   region_bytes(p, page) + (one_in(4) ? page : 0));
      boot(&s);
      open = true;
    }
    if (s.ram.powered_off ? one_in(3) : one_in(60)) boot(&s);
    if (!s.ram.powered_off && s.ram.cut_at < 0 && one_in(30)) {
      s.ram.cut_at = s.ram.events + (int64_t)below(64);
      power_cuts++;
    }
    l.size = l.pos = 0;
    l.idle_ms = 1 + below(100);
    l.capacity = s.capacity;
    plan_out o = {&l, ex, 0};
    if (one_in(4)) make_train_then_save(&s, &o, f);
    for (uint32_t b = 1 + below(4); b > 0; --b) make_burst(&s, &o, f, g);
    streams++;
    serve_line(&s, &l, ex, o.count);
  }
  if (open) close_session(&s);
  free(l.data);
  free(l.quiet);
  free(l.answer);
  free(f);
  free(g);
}

/* -- learned states ----------------------------------------------------------
 */

typedef struct {
  uint32_t at;    /* payload offset */
  uint32_t count; /* floats */
} float_range;

#define MAX_RANGES 64

static uint32_t block_start(const tt_trainer* t) {
  return t->interpreter_tables_bytes + t->trainer_tables_bytes;
}

/* Where the payload holds optimizer floats (and low-rank headers). */
static int float_ranges(const tt_trainer* t, float_range* out,
                        uint32_t* lowrank, int* num_lowrank) {
  const uint32_t start = block_start(t);
  const uint32_t base = TT_STATE_COUNTERS_BYTES;
  int n = 0;
  *num_lowrank = 0;
  if (t->sample_pool_offset >= 0)
    out[n++] = (float_range){base + (uint32_t)t->sample_pool_offset - start,
                             (uint32_t)t->sample_budget / 4};
  for (int32_t l = 0; l < t->num_layers && n < MAX_RANGES - 8; ++l) {
    const tt_train_layer* layer = &tt_train_layers(t)[l];
    for (int32_t k = 0; k < TT_STATE_COUNT; ++k) {
      if (layer->state[k] < 0 || layer->kind == TT_UPDATE_SAMPLED) continue;
      const uint32_t per = k <= TT_STATE_WEIGHT_ACCUMULATOR
                               ? (uint32_t)layer->weights_per_channel
                               : 1u;
      out[n++] = (float_range){base + (uint32_t)layer->state[k] - start,
                               (uint32_t)layer->num_channels * per};
    }
    if (layer->lowrank_offset >= 0) {
      const uint32_t at = base + (uint32_t)layer->lowrank_offset - start;
      lowrank[(*num_lowrank)++] = at;
      out[n++] = (float_range){at + 24, 2};
      const uint32_t rows = (uint32_t)layer->num_channels;
      const uint32_t cols = (uint32_t)layer->weights_per_channel;
      const uint32_t rank = (uint32_t)layer->rank;
      out[n++] = (float_range){at + 32, 2 * rows * rank + 4 * rank * cols};
    }
  }
  return n;
}

/* A trainer for the pair, some steps into training, and its state. */
static void train_seed(seed_pair* p) {
  p->trainer = xmalloc(sizeof *p->trainer);
  p->arena = xmalloc(p->arena_bytes);
  CHECK(tt_trainer_init(p->trainer, p->model, p->model_size, p->plan,
                        p->plan_size, p->arena, p->arena_bytes) == TT_OK,
        "trainer init: %s", tt_trainer_error(p->trainer)->message);
  uint8_t* input = xmalloc(p->input_bytes);
  const uint32_t steps = 2u * (uint32_t)p->batch_size + 1;
  for (uint32_t k = 0; k < steps; ++k) {
    if (k == 2u * (uint32_t)p->batch_size)
      CHECK(tt_trainer_begin_epoch(p->trainer, 1) == TT_OK, "begin_epoch");
    const int32_t label = (int32_t)below((uint32_t)p->num_classes);
    fill_input(input, p->input_bytes, label);
    float loss;
    const tt_status status =
        tt_trainer_step(p->trainer, input, p->input_bytes, label, &loss);
    CHECK(status == TT_OK || status == TT_ERR_DIVERGED, "step: %s",
          tt_trainer_error(p->trainer)->message);
  }
  free(input);
  p->good_state = xmalloc(p->state_bytes);
  CHECK(tt_trainer_state_write(p->trainer, p->good_state, p->state_bytes) ==
            TT_OK,
        "state write");
}

/* Mutates a state payload in place (its size fixed). */
static void mutate_state(const tt_trainer* t, uint8_t* s, uint32_t size) {
  float_range ranges[MAX_RANGES];
  uint32_t lowrank[MAX_RANGES];
  int num_lowrank;
  const int num_ranges = float_ranges(t, ranges, lowrank, &num_lowrank);
  for (uint32_t m = 1 + below(3); m > 0; --m) {
    switch (below(9)) {
      case 0:
        s[below(size)] ^= (uint8_t)(1u << below(8));
        break;
      case 1:
        s[below(size)] = (uint8_t)rnd();
        break;
      case 2:
      case 3: { /* a float of the optimizer state */
        if (num_ranges == 0) break;
        const float_range* r = &ranges[below((uint32_t)num_ranges)];
        if (r->count == 0) break;
        const uint32_t at = r->at + 4 * below(r->count);
        CHECK(at + 4 <= size, "float range past the state");
        put_u32(s + at,
                one_in(3) ? kHostileFinite[below(6)] : kNotFinite[below(6)]);
        break;
      }
      case 4: { /* any aligned word */
        const uint32_t at = 4 * below(size / 4);
        put_u32(s + at, one_in(2) ? kNotFinite[below(6)] : interesting());
        break;
      }
      case 5:
        put_u32(s, interesting());
        break; /* steps */
      case 6:
        put_u32(s + 4, interesting());
        break;  /* epoch */
      case 7: { /* samples in batch, reserved */
        static const uint32_t kBatch[] = {0xFFFFFFFFu, 1u,         2u, 3u,
                                          0x7FFFFFFFu, 0x80000000u};
        put_u32(s + (one_in(4) ? 12 : 8), kBatch[below(6)]);
        break;
      }
      default: /* a low-rank header field */
        if (num_lowrank > 0)
          put_u32(s + lowrank[below((uint32_t)num_lowrank)] + 4 * below(8),
                  one_in(2) ? interesting() : rnd());
        break;
    }
  }
}

/* Every optimizer float of the payload finite, by the ranges above. */
static bool optimizer_finite(const tt_trainer* t, const uint8_t* payload) {
  float_range ranges[MAX_RANGES];
  uint32_t lowrank[MAX_RANGES];
  int num_lowrank;
  const int n = float_ranges(t, ranges, lowrank, &num_lowrank);
  for (int r = 0; r < n; ++r)
    for (uint32_t i = 0; i < ranges[r].count; ++i)
      if ((get_u32(payload + ranges[r].at + 4 * i) & 0x7F800000u) ==
          0x7F800000u)
        return false;
  return true;
}

typedef struct {
  uint32_t steps, epoch;
  int32_t in_batch;
  uint8_t* block;
  uint32_t block_bytes;
  int32_t* channels;
  uint32_t num_channels;
} trainer_snapshot;

static void snapshot(const tt_trainer* t, trainer_snapshot* s) {
  s->steps = t->steps;
  s->epoch = t->epoch;
  s->in_batch = t->samples_in_batch;
  const uint8_t* block = tt_trainer_learned_block(t, &s->block_bytes);
  s->block = xmalloc(s->block_bytes);
  memcpy(s->block, block, s->block_bytes);
  s->num_channels = (uint32_t)tt_trainer_selected_slots(t);
  s->channels = xmalloc(sizeof(int32_t) * s->num_channels);
  uint32_t at = 0;
  for (int32_t l = 0; l < t->num_layers; ++l) {
    int32_t count;
    const int32_t* channels = tt_trainer_layer_channels(t, l, &count);
    memcpy(s->channels + at, channels, sizeof(int32_t) * (uint32_t)count);
    at += (uint32_t)count;
  }
}

static bool snapshot_matches(const tt_trainer* t, const trainer_snapshot* s) {
  uint32_t bytes;
  const uint8_t* block = tt_trainer_learned_block(t, &bytes);
  if (t->steps != s->steps || t->epoch != s->epoch ||
      t->samples_in_batch != s->in_batch || bytes != s->block_bytes ||
      memcmp(block, s->block, bytes) != 0 ||
      (uint32_t)tt_trainer_selected_slots(t) != s->num_channels)
    return false;
  uint32_t at = 0;
  for (int32_t l = 0; l < t->num_layers; ++l) {
    int32_t count;
    const int32_t* channels = tt_trainer_layer_channels(t, l, &count);
    if (memcmp(s->channels + at, channels, sizeof(int32_t) * (uint32_t)count) !=
        0)
      return false;
    at += (uint32_t)count;
  }
  return true;
}

static void free_snapshot(trainer_snapshot* s) {
  free(s->block);
  free(s->channels);
}

/* Trains on from an accepted state: nothing may go out of bounds. */
static void exercise(seed_pair* p) {
  tt_trainer* t = p->trainer;
  uint8_t* input = xmalloc(p->input_bytes);
  const int32_t label = (int32_t)below((uint32_t)p->num_classes);
  fill_input(input, p->input_bytes, label);
  float loss;
  int32_t predicted;
  for (int k = 0; k < 2; ++k) {
    const tt_status status =
        tt_trainer_step(t, input, p->input_bytes, label, &loss);
    CHECK(status == TT_OK || status == TT_ERR_DIVERGED, "step after a load: %s",
          tt_trainer_error(t)->message);
    state_steps++;
  }
  CHECK(tt_trainer_predict(t, input, p->input_bytes, &predicted) == TT_OK &&
            predicted >= 0 && predicted < p->num_classes,
        "predict after a load");
  if (one_in(4)) tt_trainer_begin_epoch(t, rnd());
  uint32_t bytes;
  tt_trainer_state_is_finite(t, tt_trainer_learned_block(t, &bytes));
  free(input);
}

static void run_state(seed_pair* pairs, int num_pairs, long iterations) {
  phase = "state";
  for (int i = 0; i < num_pairs; ++i)
    if (pairs[i].trainer == NULL) train_seed(&pairs[i]);
  for (iteration = 0; iteration < iterations; ++iteration) {
    seed_pair* p = &pairs[below((uint32_t)num_pairs)];
    tt_trainer* t = p->trainer;
    uint32_t size = p->state_bytes;
    if (one_in(10)) { /* a wrong size */
      static const int32_t kDelta[] = {-1, 1, -4, 4, -16, 16, 4096};
      size =
          one_in(4) ? below(64) : (uint32_t)((int32_t)size + kDelta[below(7)]);
    }
    uint8_t* payload = xmalloc(size);
    memset(payload, 0, size);
    memcpy(payload, p->good_state,
           size < p->state_bytes ? size : p->state_bytes);
    if (size == p->state_bytes && !one_in(8)) mutate_state(t, payload, size);
    trainer_snapshot before;
    snapshot(t, &before);
    const tt_status status = tt_trainer_state_load(t, payload, size);
    state_loads++;
    if (status != TT_OK) {
      state_refused++;
      CHECK(
          status == TT_ERR_BAD_STATE && tt_trainer_error(t)->message[0] != '\0',
          "a refused state: status %d, message \"%s\"", (int)status,
          tt_trainer_error(t)->message);
      CHECK(snapshot_matches(t, &before),
            "a refused state changed the trainer");
    } else {
      state_accepted++;
      CHECK(size == p->state_bytes, "a state of %u bytes accepted", size);
      uint32_t bytes;
      const uint8_t* block = tt_trainer_learned_block(t, &bytes);
      CHECK(memcmp(block, payload + TT_STATE_COUNTERS_BYTES, bytes) == 0 &&
                t->steps == get_u32(payload) &&
                t->epoch == get_u32(payload + 4) &&
                (uint32_t)t->samples_in_batch == get_u32(payload + 8),
            "an accepted state is not what the trainer holds");
      CHECK(optimizer_finite(t, payload),
            "a state with a NaN or infinity accepted");
      exercise(p);
      CHECK(tt_trainer_state_load(t, p->good_state, p->state_bytes) == TT_OK,
            "the good state no longer loads: %s", tt_trainer_error(t)->message);
    }
    free_snapshot(&before);
    free(payload);
  }
}

/* -- the store
 * ------------------------------------------------------------------ */

typedef struct {
  bool present;
  uint32_t sequence;
  uint8_t* bytes;
} saved_state;

static void remember(saved_state* s, const tt_state_store* store) {
  free(s->bytes);
  s->bytes = NULL;
  const uint8_t* newest = tt_state_store_newest(store);
  s->present = newest != NULL;
  s->sequence = store->sequence;
  if (s->present) {
    s->bytes = xmalloc(store->payload_bytes);
    memcpy(s->bytes, newest, store->payload_bytes);
  }
}

static bool newest_is(const tt_state_store* store, const saved_state* s) {
  const uint8_t* newest = tt_state_store_newest(store);
  if (!s->present) return newest == NULL;
  return newest != NULL && memcmp(newest, s->bytes, store->payload_bytes) == 0;
}

/* What tt_state_store.h says a slot is. */
static tt_slot_status slot_oracle(const uint8_t* h, uint32_t model,
                                  uint32_t plan, uint32_t payload_bytes,
                                  uint32_t* sequence) {
  bool blank = true;
  for (uint32_t i = 0; i < TT_STATE_HEADER_BYTES; ++i) blank &= h[i] == 0xFF;
  if (blank) return TT_SLOT_EMPTY;
  if (memcmp(h, "TTLS", 4) != 0 || crc32_ref(h, 28) != get_u32(h + 28))
    return TT_SLOT_CORRUPT;
  if (get_u16(h + 4) != TT_STATE_FORMAT_VERSION || get_u16(h + 6) != 32)
    return TT_SLOT_OTHER_FORMAT;
  if (get_u32(h + 8) != model || get_u32(h + 12) != plan)
    return TT_SLOT_OTHER_MODEL;
  if (get_u32(h + 20) != payload_bytes) return TT_SLOT_OTHER_FORMAT;
  if (tt_crc32(h + 32, payload_bytes) != get_u32(h + 24))
    return TT_SLOT_CORRUPT;
  *sequence = get_u32(h + 16);
  return *sequence == 0 ? TT_SLOT_OTHER_FORMAT : TT_SLOT_VALID;
}

/* A header (and payload) that looks valid, each field right most of the
 * time. */
static void write_slot(uint8_t* slot, uint32_t model, uint32_t plan,
                       uint32_t payload_bytes, const uint8_t* payload) {
  static const uint32_t kSequences[] = {
      0, 1, 2, 3, 7, 0x7FFFFFFFu, 0xFFFFFFFEu, 0xFFFFFFFFu};
  uint8_t* h = slot;
  uint8_t* data = slot + TT_STATE_HEADER_BYTES;
  if (payload != NULL)
    memcpy(data, payload, payload_bytes);
  else
    fill_random(data, payload_bytes);
  memcpy(h, one_in(10) ? "TTLs" : "TTLS", 4);
  put_u32(h + 4, one_in(10) ? rnd() : (TT_STATE_FORMAT_VERSION | 32u << 16));
  put_u32(h + 8, one_in(8) ? rnd() : model);
  put_u32(h + 12, one_in(8) ? rnd() : plan);
  put_u32(h + 16, one_in(2) ? kSequences[below(8)] : rnd());
  put_u32(h + 20, one_in(8) ? interesting() : payload_bytes);
  put_u32(h + 24, one_in(8) ? rnd() : tt_crc32(data, payload_bytes));
  put_u32(h + 28, one_in(10) ? rnd() : tt_crc32(h, 28));
}

static void check_open_store(const tt_state_store* store, const uint8_t* base,
                             uint32_t size) {
  const uint8_t* newest = tt_state_store_newest(store);
  CHECK((newest == NULL) == (store->newest < 0),
        "newest and its slot disagree");
  uint32_t best = 0;
  int32_t best_slot = -1;
  for (int32_t k = 0; k < TT_STATE_SLOTS; ++k) {
    uint32_t sequence = 0;
    const tt_slot_status want =
        slot_oracle(base + (uint32_t)k * store->slot_bytes, store->model_crc32,
                    store->plan_crc32, store->payload_bytes, &sequence);
    CHECK(store->slots[k] == want, "slot %d is %d, its header says %d", k,
          (int)store->slots[k], (int)want);
    if (want == TT_SLOT_VALID && (best_slot < 0 || newer(sequence, best))) {
      best = sequence;
      best_slot = k;
    }
  }
  CHECK(store->newest == best_slot && store->sequence == best,
        "newest slot %d (sequence %u), the headers say %d (%u)", store->newest,
        store->sequence, best_slot, best);
  if (newest != NULL) {
    store_newest++;
    CHECK(newest >= base + TT_STATE_HEADER_BYTES &&
              (uint64_t)(newest - base) + store->payload_bytes <= size,
          "newest points outside the region");
    CHECK(tt_crc32(newest, store->payload_bytes) ==
              get_u32(newest - TT_STATE_HEADER_BYTES + 24),
          "newest payload CRC");
  }
}

/* Reopens after an operation; a cut powers the flash on first. */
static void reopen(tt_state_store* store, tt_flash_ram* ram,
                   const tt_flash* flash) {
  const tt_state_store old = *store;
  if (ram->powered_off) {
    tt_flash_ram_power_on(ram);
    store_recoveries++;
  }
  CHECK(tt_state_store_open(store, flash, old.model_crc32, old.plan_crc32,
                            old.payload_bytes) == TT_OK,
        "reopen: %s", store->error.message);
  check_open_store(store, flash->base, flash->size);
}

/* Saves, stages, commits and erases over the image, with cuts. */
static void store_operations(tt_state_store* store, uint8_t* memory,
                             uint32_t size, uint32_t page_bytes) {
  tt_flash_ram ram;
  tt_flash flash;
  tt_flash_ram_init(&ram, memory, size, page_bytes, &flash);
  if (one_in(8)) ram.worn_page = (int32_t)below(size / page_bytes);
  reopen(store, &ram, &flash);
  const uint32_t payload_bytes = store->payload_bytes;
  uint8_t* payload = xmalloc(payload_bytes);
  saved_state old = {false, 0, NULL};
  for (uint32_t op = 1 + below(4); op > 0; --op) {
    remember(&old, store);
    if (one_in(3)) ram.cut_at = ram.events + (int64_t)below(2 * (size / 4) + 8);
    fill_random(payload, payload_bytes);
    const uint32_t split = below(payload_bytes + 1);
    tt_state_piece pieces[2] = {{payload, split},
                                {payload + split, payload_bytes - split}};
    const uint32_t kind = below(8);
    tt_save_stats stats;
    if (kind < 4) {
      const bool wrong = one_in(16) && payload_bytes > 0;
      if (wrong) pieces[pieces[1].size > 0 ? 1 : 0].size--;
      const tt_status status = tt_state_store_save(store, pieces, 2, &stats);
      store_saves++;
      if (status == TT_OK) {
        CHECK(!wrong, "a save of the wrong size succeeded");
        if (old.present && old.sequence == UINT32_MAX) sequence_wraps++;
        CHECK(
            store->sequence == next_of(old.present ? old.sequence : 0) &&
                tt_state_store_newest(store) != NULL &&
                memcmp(tt_state_store_newest(store), payload, payload_bytes) ==
                    0,
            "a save succeeded but is not the newest state (sequence %u -> %u)",
            old.sequence, store->sequence);
        saved_state now = {false, 0, NULL};
        remember(&now, store);
        reopen(store, &ram, &flash);
        CHECK(newest_is(store, &now),
              "a successful save did not survive a reopen");
        free(now.bytes);
      } else {
        store_save_failures++;
        CHECK(store->error.message[0] != '\0' || wrong,
              "a failed save without a message");
        reopen(store, &ram, &flash);
        saved_state mine = {true, 0, payload};
        CHECK(newest_is(store, &old) || (!wrong && newest_is(store, &mine)),
              "a failed save lost the previous state");
      }
    } else if (kind < 6) {
      const tt_status status = tt_state_store_stage(store, pieces, 2, &stats);
      store_stages++;
      if (status == TT_OK) {
        CHECK(tt_state_store_staged(store) != NULL &&
                  memcmp(tt_state_store_staged(store), payload,
                         payload_bytes) == 0,
              "the staged state is not what was staged");
        CHECK(newest_is(store, &old), "staging changed the newest state");
        if (one_in(2)) {
          const tt_status committed = tt_state_store_commit(store, &stats);
          if (committed == TT_OK)
            CHECK(memcmp(tt_state_store_newest(store), payload,
                         payload_bytes) == 0,
                  "a commit is not the newest state");
        }
      }
      reopen(store, &ram, &flash);
      saved_state mine = {true, 0, payload};
      CHECK(newest_is(store, &old) || newest_is(store, &mine),
            "a stage or commit lost the previous state");
    } else {
      const tt_status status = tt_state_store_erase(store, &stats);
      store_erases++;
      if (status == TT_OK)
        CHECK(tt_state_store_newest(store) == NULL &&
                  store->slots[0] == TT_SLOT_EMPTY &&
                  store->slots[1] == TT_SLOT_EMPTY,
              "an erase left a state");
      reopen(store, &ram, &flash);
      saved_state none = {false, 0, NULL};
      CHECK(status == TT_OK ? newest_is(store, &none)
                            : newest_is(store, &old) || newest_is(store, &none),
            "an erase left something else");
    }
  }
  free(old.bytes);
  free(payload);
}

/* A hostile state with valid CRCs, restored by the learner at boot. */
static void boot_hostile(seed_pair* p) {
  const uint32_t page = 4096;
  const uint32_t slot_bytes = tt_state_slot_bytes(p->state_bytes, page);
  const uint32_t size = 2 * slot_bytes;
  uint8_t* image = xmalloc(size);
  memset(image, 0xFF, size);
  uint8_t* payload = xmalloc(p->state_bytes);
  memcpy(payload, p->good_state, p->state_bytes);
  if (!one_in(8)) mutate_state(p->trainer, payload, p->state_bytes);
  uint8_t* h = image + (one_in(2) ? slot_bytes : 0);
  memcpy(h, "TTLS", 4);
  put_u32(h + 4, TT_STATE_FORMAT_VERSION | 32u << 16);
  put_u32(h + 8, p->model_crc32);
  put_u32(h + 12, p->plan_crc32);
  put_u32(h + 16, 1 + below(1000));
  put_u32(h + 20, p->state_bytes);
  memcpy(h + TT_STATE_HEADER_BYTES, payload, p->state_bytes);
  put_u32(h + 24, tt_crc32(payload, p->state_bytes));
  put_u32(h + 28, tt_crc32(h, 28));
  session s;
  open_session(&s, p, page, image, size);
  const tt_learner_config config = session_config(&s, &s.flash);
  const tt_status status = tt_learner_init(s.learner, &config);
  if (status != TT_OK) {
    boot_refused++;
    CHECK(s.learner->error.message[0] != '\0',
          "a refused boot without a message");
  } else {
    boot_restored++;
    s.last = query_info(&s);
    CHECK(s.last.restored, "a valid slot was not restored");
    /* Train and save on from it. */
    line l;
    memset(&l, 0, sizeof l);
    l.room = 8 * s.capacity;
    l.data = xmalloc(l.room);
    l.quiet = xmalloc(l.room);
    l.answer = xmalloc(s.capacity);
    l.capacity = s.capacity;
    l.idle_ms = 5;
    uint8_t* f = xmalloc(s.capacity);
    expectation ex[MAX_EXPECT];
    plan_out o = {&l, ex, 0};
    make_train_then_save(&s, &o, f);
    s.persisted = 1;
    s.persisted_crc = s.last.state_crc;
    serve_line(&s, &l, ex, o.count);
    free(l.data);
    free(l.quiet);
    free(l.answer);
    free(f);
  }
  close_session(&s);
  sessions--;
  free(payload);
  free(image);
}

static void run_store(seed_pair* pairs, int num_pairs, long iterations) {
  phase = "store";
  static const uint32_t kPages[] = {4,    8, 16, 64, 256, 1024,
                                    4096, 0, 3,  6,  4097};
  for (int i = 0; i < num_pairs; ++i)
    if (pairs[i].trainer == NULL) train_seed(&pairs[i]);
  for (iteration = 0; iteration < iterations; ++iteration) {
    if (one_in(4)) {
      boot_hostile(&pairs[below((uint32_t)num_pairs)]);
      continue;
    }
    store_images++;
    const uint32_t page = one_in(12) ? kPages[7 + below(4)] : kPages[below(7)];
    const bool valid_page = page >= 4 && page % 4 == 0;
    uint32_t payload_bytes = one_in(3)
                                 ? pairs[below((uint32_t)num_pairs)].state_bytes
                                 : (one_in(2) ? below(64) : below(20000));
    if (one_in(32)) payload_bytes = 0xFFFFFFFFu - below(64);
    const uint32_t slot =
        valid_page ? tt_state_slot_bytes(payload_bytes, page) : 0;
    uint32_t size;
    if (valid_page && slot <= (1u << 20) && !one_in(6)) {
      size = 2 * slot + page * (one_in(3) ? below(3) : 0);
      if (one_in(10)) size -= page;
    } else {
      size = below(1u << 16);
    }
    uint8_t* memory = xmalloc(size);
    const uint32_t model = rnd(), plan = rnd();
    switch (below(4)) {
      case 0:
        fill_random(memory, size);
        break;
      case 1:
        memset(memory, 0xFF, size);
        break;
      case 2:
        memset(memory, 0, size);
        break;
      default:
        memset(memory, 0xFF, size);
        for (uint32_t k = 0; k < 2 && slot > 0; ++k) {
          if ((uint64_t)(k + 1) * slot > size || one_in(4)) continue;
          if (one_in(8)) {
            fill_random(memory + k * slot, slot);
            continue;
          }
          write_slot(memory + k * slot, model, plan, payload_bytes, NULL);
        }
        break;
    }
    tt_flash flash = {memory, size, page, NULL, NULL, NULL};
    tt_state_store store;
    const tt_status status =
        tt_state_store_open(&store, &flash, model, plan, payload_bytes);
    if (status != TT_OK) {
      store_refused++;
      CHECK(store.error.message[0] != '\0' &&
                tt_state_store_newest(&store) == NULL,
            "a refused open");
      CHECK(!valid_page || size % page != 0 || (uint64_t)slot * 2 > size,
            "a region of %u bytes (slot %u) refused", size, slot);
    } else {
      store_opened++;
      CHECK(valid_page && size % page == 0 && (uint64_t)slot * 2 <= size,
            "a region of %u bytes, pages of %u, accepted for a slot of %u",
            size, page, slot);
      check_open_store(&store, memory, size);
      if (payload_bytes <= (1u << 16))
        store_operations(&store, memory, size, page);
    }
    free(memory);
  }
}

int main(int argc, char** argv) {
  if (argc < 6 || argc % 2 != 0) {
    fprintf(stderr,
            "usage: %s frames|state|store|all SEED ITERATIONS MODEL PLAN "
            "[MODEL PLAN]...\n",
            argv[0]);
    return 2;
  }
  const char* mode = argv[1];
  const bool all = strcmp(mode, "all") == 0;
  if (!all && strcmp(mode, "frames") != 0 && strcmp(mode, "state") != 0 &&
      strcmp(mode, "store") != 0) {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }
  rng_state = (uint64_t)strtoull(argv[2], NULL, 10) * 0x9E3779B97F4A7C15ull + 1;
  const long iterations = atol(argv[3]);
  static const uint8_t kCheck[] = "123456789";
  if (tt_crc32(kCheck, 9) != 0xCBF43926u ||
      crc32_ref(kCheck, 9) != 0xCBF43926u) {
    fprintf(stderr, "CRC-32 is not zlib's\n");
    return 1;
  }
  seed_pair pairs[MAX_PAIRS];
  int num_pairs = 0;
  int status = 0;
  for (int i = 4; i + 1 < argc && num_pairs < MAX_PAIRS; i += 2) {
    status = setup_pair(&pairs[num_pairs++], argv[i], argv[i + 1]);
    if (status != 0) break;
    find_fresh_crc(&pairs[num_pairs - 1]);
  }
  if (status == 0) {
    if (all || strcmp(mode, "frames") == 0)
      run_frames(pairs, num_pairs, iterations);
    if (all || strcmp(mode, "state") == 0)
      run_state(pairs, num_pairs, iterations);
    if (all || strcmp(mode, "store") == 0)
      run_store(pairs, num_pairs, iterations);
    print_counts();
  }
  for (int i = 0; i < num_pairs; ++i) free_pair(&pairs[i]);
  return status;
}
