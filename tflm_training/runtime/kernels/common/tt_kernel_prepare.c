/* What kernels' prepare() uses (declared in tt_kernel.h): op data
 * allocation, option readers, and the checks of their tensors with the
 * errors that name the operator. It runs once per model, so the firmware
 * builds it for size (tools/firmware_build.py RUN_ONCE_RUNTIME_SOURCES). */
#include <stdarg.h>
#include <stddef.h>

#include "kernels/common/tt_kernel.h"
#include "memory/tt_arena.h"

tt_status tt_node_alloc_op_data(tt_interpreter* it, tt_node* node,
                                uint32_t num_bytes, void** data) {
  TT_RETURN_IF_ERROR(tt_arena_alloc_persistent(it, num_bytes, "operator data",
                                               &node->op_data_offset));
  *data = tt_arena_at(it, node->op_data_offset);
  return TT_OK;
}

static tt_status bad_option(tt_interpreter* it, const tt_node* node,
                            uint32_t field) {
  return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                      "option field %u is out of bounds", field);
}

tt_status tt_option_i32(tt_interpreter* it, const tt_node* node, uint32_t field,
                        int32_t default_value, int32_t* out) {
  *out = default_value;
  if (node->options_type == TT_OPTIONS_NONE) return TT_OK;
  if (!tt_fb_get_i32(&it->model, &node->options, field, default_value, out))
    return bad_option(it, node, field);
  return TT_OK;
}

tt_status tt_option_bool(tt_interpreter* it, const tt_node* node,
                         uint32_t field, bool default_value, bool* out) {
  uint8_t value = default_value ? 1 : 0;
  *out = default_value;
  if (node->options_type == TT_OPTIONS_NONE) return TT_OK;
  if (!tt_fb_get_u8(&it->model, &node->options, field, value, &value))
    return bad_option(it, node, field);
  *out = value != 0;
  return TT_OK;
}

tt_status tt_option_f32(tt_interpreter* it, const tt_node* node, uint32_t field,
                        float default_value, float* out) {
  *out = default_value;
  if (node->options_type == TT_OPTIONS_NONE) return TT_OK;
  if (!tt_fb_get_f32(&it->model, &node->options, field, default_value, out))
    return bad_option(it, node, field);
  return TT_OK;
}

tt_status tt_option_i32_vector(tt_interpreter* it, const tt_node* node,
                               uint32_t field, tt_fb_vector* out) {
  out->pos = 0;
  out->count = 0;
  if (node->options_type == TT_OPTIONS_NONE) return TT_OK;
  if (!tt_fb_get_vector(&it->model, &node->options, field, 4, out))
    return bad_option(it, node, field);
  return TT_OK;
}

tt_status tt_node_fail(tt_interpreter* it, const tt_node* node, tt_status code,
                       const char* format, ...) {
  tt_error detail;
  va_list args;
  va_start(args, format);
  tt_error_vset(&detail, code, format, args);
  va_end(args);
  const int32_t index = (int32_t)(node - it->nodes);
  return tt_error_set(&it->error, code, "operator %d (%s): %s", index,
                      tt_builtin_name(node->builtin_code), detail.message);
}

tt_status tt_expect_io_counts(tt_interpreter* it, const tt_node* node,
                              int32_t min_inputs, int32_t max_inputs,
                              int32_t num_outputs) {
  if (node->num_inputs < min_inputs || node->num_inputs > max_inputs)
    return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                        "has %d inputs, expected %d to %d", node->num_inputs,
                        min_inputs, max_inputs);
  if (node->num_outputs != num_outputs)
    return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                        "has %d outputs, expected %d", node->num_outputs,
                        num_outputs);
  for (int32_t i = 0; i < min_inputs; ++i)
    if (tt_node_input(it, node, i) == NULL)
      return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                          "required input %d is missing", i);
  return TT_OK;
}

tt_status tt_expect_type(tt_interpreter* it, const tt_node* node,
                         const tt_tensor* tensor, const char* role,
                         int32_t type) {
  if (tensor->type == type) return TT_OK;
  /* Name the feature for the two common cases: TFLM's 16x8 quantization
   * (int16 activations) and float kernels. */
  const char* why = "";
  if (type == TT_TYPE_INT8 && tensor->type == TT_TYPE_INT16)
    why = " (int16 activations are not supported, only int8)";
  else if (type == TT_TYPE_INT8 && tensor->type == TT_TYPE_FLOAT32)
    why = " (float kernels are not supported, only int8)";
  return tt_node_fail(it, node, TT_ERR_UNSUPPORTED, "%s must be %s, got %s%s",
                      role, tt_type_name(type), tt_type_name(tensor->type),
                      why);
}

tt_status tt_expect_rank(tt_interpreter* it, const tt_node* node,
                         const tt_tensor* tensor, const char* role,
                         int32_t rank) {
  if (tensor->rank == rank) return TT_OK;
  return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                      "%s must have rank %d, got %d", role, rank, tensor->rank);
}

tt_status tt_expect_quantized(tt_interpreter* it, const tt_node* node,
                              const tt_tensor* tensor, const char* role) {
  if (tensor->num_scales == 0)
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "%s has no quantization parameters; only fully "
                        "int8-quantized models are supported",
                        role);
  for (int32_t c = 0; c < tensor->num_scales; ++c) {
    const float scale = tt_tensor_channel_scale(it, tensor, c);
    if (!(scale > 0.0f && scale < 3.0e38f))
      /* TFLM divides by such a scale and runs; we do not. */
      return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                          "%s has a scale that is not a positive finite "
                          "number (channel %d); such scales are not "
                          "supported",
                          role, c);
  }
  return TT_OK;
}

tt_status tt_expect_constant(tt_interpreter* it, const tt_node* node,
                             const tt_tensor* tensor, const char* role) {
  if (tensor->location == TT_DATA_MODEL) return TT_OK;
  return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                      "%s must be a constant stored in the model", role);
}
