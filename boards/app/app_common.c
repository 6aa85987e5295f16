#include "app_common.h"

#include "board.h"
#include "exit_status.h"
#include "report.h"

/* From boards/common/cortex_m.ld. */
extern uint8_t __data_start[], __data_end[], __bss_start[], __bss_end[];

int app_report_failure(const char* stage, tt_status status,
                       const tt_error* error) {
  report_begin("error");
  report_string("stage", stage);
  report_i32("code", (int32_t)status);
  report_string("status", tt_status_name(status));
  report_string("message", error->message);
  report_end();
  return (int)status;
}

int app_report_bad_data(const char* message) {
  report_begin("error");
  report_string("stage", "embedded_data");
  report_string("message", message);
  report_end();
  return EXIT_STATUS_BAD_EMBEDDED_DATA;
}

int app_embedded_samples(const tt_interpreter* interpreter, uint32_t size,
                         uint32_t* input_bytes, uint32_t* count) {
  if (tt_interpreter_num_inputs(interpreter) != 1) {
    return app_report_bad_data(
        "the firmware app feeds models with exactly one input");
  }
  const tt_tensor* input = tt_interpreter_tensor(
      interpreter, tt_interpreter_input_tensor(interpreter, 0));
  *input_bytes = (uint32_t)input->num_bytes;
  if (*input_bytes == 0 || size % *input_bytes != 0) {
    return app_report_bad_data(
        "embedded inputs are not a whole number of model inputs");
  }
  *count = size / *input_bytes;
  return EXIT_STATUS_OK;
}

void app_report_count(int64_t count) {
  report_string("counter", board_counter_unit());
  if (count < 0) {
    report_null("count"); /* the counter overflowed */
  } else {
    report_i64("count", count);
  }
}

void app_add_count(int64_t* total, int64_t count) {
  if (*total < 0 || count < 0) {
    *total = -1;
  } else {
    *total += count;
  }
}

void app_report_stack(void) {
  report_begin("stack");
  report_u32("used", board_stack_high_water());
  report_u32("size", board_stack_size());
  report_end();
}

void app_report_ram(uint32_t arena_size, uint32_t arena_used) {
  const uint32_t data = (uint32_t)(__data_end - __data_start);
  const uint32_t bss = (uint32_t)(__bss_end - __bss_start);
  const uint32_t stack_used = board_stack_high_water();
  report_begin("ram");
  report_u32("static", data + bss);
  report_u32("arena_size", arena_size);
  report_u32("arena_used", arena_used);
  report_u32("stack_used", stack_used);
  report_u32("peak", data + bss + stack_used);
  report_end();
}
