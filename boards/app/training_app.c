/* On-device training: trains the embedded model as the embedded plan says
 * on the embedded labelled samples, in a static arena, and reports it as
 * event lines (boards/README.md):
 *
 *   training_init           arena breakdown, sample counts, epochs
 *   evaluation "before"     test accuracy of the starting model
 *   selection               per epoch and sampled layer: the channels it
 *                           trains in that epoch (tt_trainer_begin_epoch)
 *   train_step              per step: loss (IEEE-754 bits), instructions
 *   prediction, evaluation "after"
 *   parameters              per trained weight / bias tensor: CRC-32 (and,
 *                           with APP_DUMP_PARAMETERS, its bytes in hex)
 *   stack, ram              stack high-water mark; static + stack peak
 *   operator_profile        with APP_PROFILE_OPERATORS: per operator, the
 *                           instructions of its forward and of its backward
 *                           work summed over the steps (the steps' own
 *                           counts are then the sums of their operators')
 *
 * Steps visit the training samples in their embedded order, APP_EPOCHS
 * times, each epoch begun with tt_trainer_begin_epoch, so the host replays
 * them exactly (tests/test_firmware_training.py).
 * With no test samples embedded, the training samples are evaluated.
 * APP_ARENA_BYTES, APP_EPOCHS and APP_DUMP_PARAMETERS come from the build
 * tool (tools/training_firmware.py). */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "app_common.h"
#include "board.h"
#include "exit_status.h"
#include "kernels/common/tt_kernel.h"
#include "math/tt_crc.h"
#include "report.h"
#include "training/tt_training_plan.h"
#include "tt_trainer.h"

#ifndef APP_EPOCHS
#define APP_EPOCHS 1
#endif
#ifndef APP_DUMP_PARAMETERS
#define APP_DUMP_PARAMETERS 0
#endif
#ifndef APP_PROFILE_OPERATORS
#define APP_PROFILE_OPERATORS 0
#endif
/* Operators a profile keeps apart; later ones are not reported. */
#define PROFILE_MAX_OPERATORS 256

/* training_app_data.S; labels are little-endian int32, one per sample. */
extern const uint8_t app_model_start[], app_model_end[];
extern const uint8_t app_plan_start[], app_plan_end[];
extern const uint8_t app_train_inputs_start[], app_train_inputs_end[];
extern const uint8_t app_train_labels_start[], app_train_labels_end[];
extern const uint8_t app_test_inputs_start[], app_test_inputs_end[];
extern const uint8_t app_test_labels_start[], app_test_labels_end[];

static uint8_t arena[APP_ARENA_BYTES]
    __attribute__((aligned(TT_ARENA_ALIGNMENT)));
static tt_trainer trainer;

/* One embedded set of labelled samples. */
typedef struct {
  const uint8_t* inputs;
  const uint8_t* labels;
  uint32_t count;
} sample_set;

/* The arguments and results of one measured trainer call, laid out as
 * the learner's (tt_learner.c): the measured wrapper then costs the same
 * instructions in both firmwares, which the learner benchmark compares
 * step for step. */
typedef struct {
  tt_trainer* trainer;
  const uint8_t* input;
  uint32_t input_bytes;
  int32_t label;
  float loss;
  tt_status status;
  int32_t predicted;
} trainer_call;

static uint32_t input_bytes;

static void step_once(void* context) {
  trainer_call* call = context;
  call->status = tt_trainer_step(call->trainer, call->input, call->input_bytes,
                                 call->label, &call->loss);
}

static void predict_once(void* context) {
  trainer_call* call = context;
  call->status = tt_trainer_predict(call->trainer, call->input,
                                    call->input_bytes, &call->predicted);
}

/* APP_PROFILE_OPERATORS: each operator's work measured on its own (the
 * counter cannot nest, so the step around it is not measured). */
static int64_t profile_counts[2][PROFILE_MAX_OPERATORS];
static int64_t profile_step_total;

typedef struct {
  tt_operator_run run;
  void* work;
  tt_status status;
} profiled_work;

static void run_profiled(void* context) {
  profiled_work* call = context;
  call->status = call->run(call->work);
}

static tt_status profile_operator(void* context, int32_t operator_index,
                                  int32_t phase, tt_operator_run run,
                                  void* work) {
  (void)context;
  profiled_work call = {run, work, TT_OK};
  const int64_t count = board_counter_measure(run_profiled, &call);
  if (operator_index < PROFILE_MAX_OPERATORS &&
      (phase == TT_PHASE_FORWARD || phase == TT_PHASE_BACKWARD)) {
    app_add_count(&profile_counts[phase][operator_index], count);
  }
  app_add_count(&profile_step_total, count);
  return call.status;
}

/* The step's instructions: measured whole, or with a profile the sum of
 * its operators' work. */
static int64_t measured_step(trainer_call* call) {
  if (!APP_PROFILE_OPERATORS) return board_counter_measure(step_once, call);
  profile_step_total = 0;
  step_once(call);
  return profile_step_total;
}

static void report_operator_count(const char* key, int64_t count) {
  if (count < 0) {
    report_null(key); /* the counter overflowed */
  } else {
    report_i64(key, count);
  }
}

static void report_profile(uint32_t steps) {
  const int32_t operators = tt_trainer_interpreter(&trainer)->num_nodes;
  for (int32_t n = 0; n < operators && n < PROFILE_MAX_OPERATORS; ++n) {
    if (profile_counts[0][n] == 0 && profile_counts[1][n] == 0) continue;
    report_begin("operator_profile");
    report_i32("operator", n);
    report_u32("steps", steps);
    report_string("counter", board_counter_unit());
    report_operator_count("forward", profile_counts[0][n]);
    report_operator_count("backward", profile_counts[1][n]);
    report_end();
  }
}

static int report_failure(const char* stage, tt_status status) {
  return app_report_failure(stage, status, tt_trainer_error(&trainer));
}

static int32_t label_at(const sample_set* set, uint32_t index) {
  int32_t label;
  memcpy(&label, set->labels + 4 * index, sizeof(label));
  return label;
}

static int load_set(const uint8_t* inputs, const uint8_t* inputs_end,
                    const uint8_t* labels, const uint8_t* labels_end,
                    sample_set* set) {
  set->inputs = inputs;
  set->labels = labels;
  const int checked = app_embedded_samples(tt_trainer_interpreter(&trainer),
                                           (uint32_t)(inputs_end - inputs),
                                           &input_bytes, &set->count);
  if (checked != EXIT_STATUS_OK) return checked;
  if ((uint32_t)(labels_end - labels) != 4 * set->count) {
    return app_report_bad_data("embedded labels are not one int32 per sample");
  }
  return EXIT_STATUS_OK;
}

static void report_init(const sample_set* train, const sample_set* test,
                        const char* test_set) {
  tt_training_memory memory;
  tt_trainer_memory(&trainer, &memory);
  report_begin("training_init");
  report_u32("model_bytes", (uint32_t)(app_model_end - app_model_start));
  report_u32("plan_bytes", (uint32_t)(app_plan_end - app_plan_start));
  report_u32("arena_size", (uint32_t)sizeof(arena));
  report_u32("arena_used", tt_trainer_arena_used(&trainer));
  report_u32("interpreter_tables", memory.interpreter_tables);
  report_u32("trainer_tables", memory.trainer_tables);
  report_u32("weight_copies", memory.weight_copies);
  report_u32("optimizer_state", memory.optimizer_state);
  report_u32("sampled_state", memory.sampled_state);
  report_u32("planned_region", memory.planned_region);
  report_u32("train_samples", train->count);
  report_u32("test_samples", test->count);
  report_string("test_set", test_set);
  report_u32("epochs", APP_EPOCHS);
  report_end();
}

/* Predicts every sample of `set`; "prediction" events only after
 * training (before it, the count of correct ones is enough to compare). */
static int evaluate(const sample_set* set, const char* phase,
                    bool report_predictions) {
  uint32_t correct = 0;
  int64_t total_count = 0;
  for (uint32_t i = 0; i < set->count; ++i) {
    trainer_call call = {
        &trainer, set->inputs + i * input_bytes, input_bytes, 0, 0.0f, TT_OK,
        -1};
    app_add_count(&total_count, board_counter_measure(predict_once, &call));
    if (call.status != TT_OK) return report_failure("predict", call.status);
    if (call.predicted == label_at(set, i)) correct++;
    if (report_predictions) {
      report_begin("prediction");
      report_u32("index", i);
      report_i32("class", call.predicted);
      report_end();
    }
  }
  report_begin("evaluation");
  report_string("phase", phase);
  report_u32("correct", correct);
  report_u32("total", set->count);
  app_report_count(total_count); /* all predictions together */
  report_end();
  return EXIT_STATUS_OK;
}

/* The channels each sampled layer trains in this epoch. */
static void report_selection(uint32_t epoch) {
  for (int32_t i = 0; i < trainer.num_layers; ++i) {
    tt_plan_layer layer;
    tt_plan_layer_at(app_plan_start, i, &layer);
    if (layer.update_kind != TT_UPDATE_SAMPLED) continue;
    int32_t count;
    const int32_t* channels = tt_trainer_layer_channels(&trainer, i, &count);
    report_begin("selection");
    report_u32("epoch", epoch);
    report_i32("operator", layer.operator_index);
    report_array_begin("channels");
    for (int32_t c = 0; c < count; ++c) report_array_i32(channels[c]);
    report_array_end();
    report_end();
  }
}

static int train(const sample_set* set) {
  uint32_t step = 0;
  for (uint32_t epoch = 0; epoch < APP_EPOCHS; ++epoch) {
    const tt_status begun = tt_trainer_begin_epoch(&trainer, epoch);
    if (begun != TT_OK) return report_failure("begin_epoch", begun);
    report_selection(epoch);
    for (uint32_t i = 0; i < set->count; ++i, ++step) {
      trainer_call call = {&trainer,    set->inputs + i * input_bytes,
                           input_bytes, label_at(set, i),
                           0.0f,        TT_OK,
                           -1};
      const int64_t count = measured_step(&call);
      if (call.status != TT_OK)
        return report_failure("train_step", call.status);
      uint32_t loss_bits;
      memcpy(&loss_bits, &call.loss, sizeof(loss_bits));
      report_begin("train_step");
      report_u32("index", step);
      report_u32("epoch", epoch);
      report_u32("sample", i);
      report_u32("loss_bits", loss_bits);
      app_report_count(count);
      report_end();
    }
  }
  return EXIT_STATUS_OK;
}

static void report_tensor(int32_t tensor_index, int32_t operator_index,
                          const char* kind) {
  const tt_interpreter* interpreter = tt_trainer_interpreter(&trainer);
  const tt_tensor* tensor = tt_interpreter_tensor(interpreter, tensor_index);
  const uint8_t* data = tt_interpreter_tensor_data(interpreter, tensor_index);
  const uint32_t size = (uint32_t)tensor->num_bytes;
  report_begin("parameters");
  report_i32("tensor", tensor_index);
  report_i32("operator", operator_index);
  report_string("kind", kind);
  report_u32("bytes", size);
  report_u32("crc32", tt_crc32(data, size));
  if (APP_DUMP_PARAMETERS) report_hex("hex", data, size);
  report_end();
}

/* The tensors the plan trains, layer by layer: weights (input 1) unless
 * the layer trains biases only, and the bias (input 2) if there is one.
 * (tt_param_layout_of() cannot be used here: after init the trained
 * tensors live in the arena, and it accepts only constant ones.) */
static void report_parameters(void) {
  const tt_interpreter* interpreter = tt_trainer_interpreter(&trainer);
  for (int32_t i = 0; i < trainer.num_layers; ++i) {
    tt_plan_layer layer;
    tt_plan_layer_at(app_plan_start, i, &layer);
    const tt_node* node = &interpreter->nodes[layer.operator_index];
    if (layer.update_kind == TT_UPDATE_WEIGHTS ||
        layer.update_kind == TT_UPDATE_SAMPLED ||
        layer.update_kind == TT_UPDATE_LOWRANK) {
      report_tensor(tt_node_input_index(interpreter, node, 1),
                    layer.operator_index, "weights");
    }
    const int32_t bias = tt_node_input_index(interpreter, node, 2);
    if (bias >= 0) report_tensor(bias, layer.operator_index, "bias");
  }
}

int main(void) {
  board_console_init();
  board_counter_init();
  tt_status status = tt_trainer_init(
      &trainer, app_model_start, (uint32_t)(app_model_end - app_model_start),
      app_plan_start, (uint32_t)(app_plan_end - app_plan_start), arena,
      sizeof(arena));
  if (status != TT_OK) return report_failure("init", status);
  if (APP_PROFILE_OPERATORS)
    tt_trainer_set_operator_hook(&trainer, profile_operator, NULL);

  sample_set train_set, test_set;
  int result =
      load_set(app_train_inputs_start, app_train_inputs_end,
               app_train_labels_start, app_train_labels_end, &train_set);
  if (result == EXIT_STATUS_OK && train_set.count == 0) {
    result = app_report_bad_data("no training samples are embedded");
  }
  if (result != EXIT_STATUS_OK) return result;
  result = load_set(app_test_inputs_start, app_test_inputs_end,
                    app_test_labels_start, app_test_labels_end, &test_set);
  if (result != EXIT_STATUS_OK) return result;
  const char* test_name = "test";
  if (test_set.count == 0) {
    test_set = train_set;
    test_name = "train";
  }
  report_init(&train_set, &test_set, test_name);

  result = evaluate(&test_set, "before", false);
  if (result == EXIT_STATUS_OK) result = train(&train_set);
  if (result == EXIT_STATUS_OK) result = evaluate(&test_set, "after", true);
  if (result != EXIT_STATUS_OK) return result;
  report_parameters();
  if (APP_PROFILE_OPERATORS) report_profile(APP_EPOCHS * train_set.count);

  app_report_stack();
  app_report_ram((uint32_t)sizeof(arena), tt_trainer_arena_used(&trainer));
  return EXIT_STATUS_OK;
}
