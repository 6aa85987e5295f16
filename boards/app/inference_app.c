/* Inference self-test: loads the embedded model into a static arena, runs
 * it on every embedded input and reports outputs, arena use, instructions
 * (or cycles) per inference and the stack high-water mark as event lines
 * (boards/README.md). APP_ARENA_BYTES comes from the build tool. */
#include <stdint.h>
#include <string.h>

#include "app_common.h"
#include "board.h"
#include "exit_status.h"
#include "model/tt_schema.h"
#include "report.h"
#include "tt_interpreter.h"

extern const uint8_t app_model_start[], app_model_end[];
extern const uint8_t app_inputs_start[], app_inputs_end[];

static uint8_t arena[APP_ARENA_BYTES]
    __attribute__((aligned(TT_ARENA_ALIGNMENT)));
static tt_interpreter interpreter;

static int report_failure(const char* stage, tt_status status) {
  return app_report_failure(stage, status, tt_interpreter_error(&interpreter));
}

typedef struct {
  tt_interpreter* interpreter;
  tt_status status;
} invoke_call;

static void invoke_once(void* context) {
  invoke_call* call = context;
  call->status = tt_interpreter_invoke(call->interpreter);
}

static const char* type_name(int32_t type) {
  switch (type) {
    case TT_TYPE_INT8:
      return "int8";
    case TT_TYPE_UINT8:
      return "uint8";
    case TT_TYPE_INT16:
      return "int16";
    case TT_TYPE_INT32:
      return "int32";
    case TT_TYPE_FLOAT32:
      return "float32";
    default:
      return "bytes";
  }
}

/* Integers as numbers; float32 as its IEEE-754 bit pattern, so values
 * round-trip exactly without a float formatter on the MCU; other types as
 * their raw bytes. */
static void report_values(const tt_tensor* tensor, const void* data) {
  const int32_t n = tensor->num_elements;
  report_array_begin("values");
  switch (tensor->type) {
    case TT_TYPE_INT8:
      for (int32_t i = 0; i < n; ++i)
        report_array_i32(((const int8_t*)data)[i]);
      break;
    case TT_TYPE_UINT8:
      for (int32_t i = 0; i < n; ++i)
        report_array_i32(((const uint8_t*)data)[i]);
      break;
    case TT_TYPE_INT16:
      for (int32_t i = 0; i < n; ++i)
        report_array_i32(((const int16_t*)data)[i]);
      break;
    case TT_TYPE_INT32:
      for (int32_t i = 0; i < n; ++i)
        report_array_i32(((const int32_t*)data)[i]);
      break;
    case TT_TYPE_FLOAT32:
      for (int32_t i = 0; i < n; ++i) {
        uint32_t bits;
        memcpy(&bits, (const uint8_t*)data + 4 * i, sizeof(bits));
        report_array_u32(bits);
      }
      break;
    default:
      for (int32_t i = 0; i < tensor->num_bytes; ++i) {
        report_array_i32(((const uint8_t*)data)[i]);
      }
      break;
  }
  report_array_end();
}

static void report_output(int32_t input_index, int32_t output_index) {
  const int32_t tensor_index =
      tt_interpreter_output_tensor(&interpreter, output_index);
  const tt_tensor* tensor = tt_interpreter_tensor(&interpreter, tensor_index);
  report_begin("output");
  report_i32("index", input_index);
  report_i32("output", output_index);
  report_string("type", type_name(tensor->type));
  report_array_begin("shape");
  for (int32_t d = 0; d < tensor->rank; ++d) report_array_i32(tensor->dims[d]);
  report_array_end();
  report_values(tensor, tt_interpreter_tensor_data(&interpreter, tensor_index));
  report_end();
}

static void report_invoke(int32_t input_index, int64_t count) {
  report_begin("invoke");
  report_i32("index", input_index);
  app_report_count(count);
  report_end();
}

int main(void) {
  board_console_init();
  board_counter_init();
  const uint32_t model_size = (uint32_t)(app_model_end - app_model_start);
  tt_status status = tt_interpreter_init(&interpreter, app_model_start,
                                         model_size, arena, sizeof(arena), 0);
  if (status != TT_OK) return report_failure("init", status);
  uint32_t input_bytes, num_inputs;
  const int checked = app_embedded_samples(
      &interpreter, (uint32_t)(app_inputs_end - app_inputs_start), &input_bytes,
      &num_inputs);
  if (checked != EXIT_STATUS_OK) return checked;
  const tt_tensor* input = tt_interpreter_tensor(
      &interpreter, tt_interpreter_input_tensor(&interpreter, 0));

  report_begin("init");
  report_u32("model_bytes", model_size);
  report_u32("arena_size", (uint32_t)sizeof(arena));
  report_u32("arena_used", tt_interpreter_arena_used(&interpreter));
  report_u32("inputs", num_inputs);
  report_i32("outputs", interpreter.num_outputs);
  report_end();

  for (uint32_t i = 0; i < num_inputs; ++i) {
    status = tt_interpreter_set_input(&interpreter, 0,
                                      app_inputs_start + i * input_bytes,
                                      input_bytes, input->type);
    if (status != TT_OK) return report_failure("set_input", status);
    invoke_call call = {&interpreter, TT_OK};
    const int64_t count = board_counter_measure(invoke_once, &call);
    if (call.status != TT_OK) return report_failure("invoke", call.status);
    for (int32_t j = 0; j < interpreter.num_outputs; ++j) {
      report_output((int32_t)i, j);
    }
    report_invoke((int32_t)i, count);
  }

  app_report_stack();
  app_report_ram((uint32_t)sizeof(arena),
                 tt_interpreter_arena_used(&interpreter));
  return EXIT_STATUS_OK;
}
