#include "kernels/common/tt_kernel_checks.h"

static char* append_unsigned(char* out, uint32_t value) {
  char digits[10];
  int32_t n = 0;
  do {
    digits[n++] = (char)('0' + value % 10u);
    value /= 10u;
  } while (value != 0);
  while (n > 0) *out++ = digits[--n];
  return out;
}

const char* tt_shape_text(const int32_t* dims, int32_t rank, char* text) {
  char* out = text;
  *out++ = '[';
  for (int32_t d = 0; d < rank && d < TT_MAX_RANK; ++d) {
    if (d > 0) *out++ = ',';
    if (dims[d] < 0) {
      *out++ = '-';
      out = append_unsigned(out, 0u - (uint32_t)dims[d]);
    } else {
      out = append_unsigned(out, (uint32_t)dims[d]);
    }
  }
  *out++ = ']';
  *out = '\0';
  return text;
}

const char* tt_role_text(const char* prefix, int32_t index, char* text) {
  char* out = text;
  for (int32_t i = 0; prefix[i] != '\0' && i < 20; ++i) *out++ = prefix[i];
  *out++ = ' ';
  if (index < 0) {
    *out++ = '-';
    out = append_unsigned(out, 0u - (uint32_t)index);
  } else {
    out = append_unsigned(out, (uint32_t)index);
  }
  *out = '\0';
  return text;
}

tt_status tt_expect_int8_per_tensor(tt_interpreter* it, const tt_node* node,
                                    const tt_tensor* tensor, const char* role) {
  TT_RETURN_IF_ERROR(tt_expect_type(it, node, tensor, role, TT_TYPE_INT8));
  TT_RETURN_IF_ERROR(tt_expect_quantized(it, node, tensor, role));
  if (tensor->num_scales != 1)
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "%s has %d quantization scales; only per-tensor "
                        "quantization is supported here",
                        role, tensor->num_scales);
  if (tensor->zero_point < -128 || tensor->zero_point > 127)
    /* TFLM copies the zero point unchecked and runs (micro_allocator.cc);
     * our int8 kernels keep offsets narrow, so this is a feature we lack. */
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "%s has zero point %d, outside the int8 range; such "
                        "zero points are not supported",
                        role, tensor->zero_point);
  return TT_OK;
}

tt_status tt_expect_shape(tt_interpreter* it, const tt_node* node,
                          const tt_tensor* tensor, const char* role,
                          const int32_t* dims, int32_t rank) {
  bool same = tensor->rank == rank;
  for (int32_t d = 0; same && d < rank; ++d) same = tensor->dims[d] == dims[d];
  if (same) return TT_OK;
  char want[TT_SHAPE_TEXT_SIZE], got[TT_SHAPE_TEXT_SIZE];
  return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                      "%s shape should be %s, the model says %s", role,
                      tt_shape_text(dims, rank, want),
                      tt_shape_text(tensor->dims, tensor->rank, got));
}

tt_status tt_expect_movable_io(tt_interpreter* it, const tt_node* node,
                               const tt_tensor* input,
                               const tt_tensor* output) {
  if (input->type != TT_TYPE_INT8 && input->type != TT_TYPE_INT16 &&
      input->type != TT_TYPE_FLOAT32)
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "input type %s is not supported (INT8, INT16 or "
                        "FLOAT32)",
                        tt_type_name(input->type));
  return tt_expect_type(it, node, output, "output", input->type);
}

tt_status tt_expect_constant_i32(tt_interpreter* it, const tt_node* node,
                                 const tt_tensor* tensor, const char* role) {
  TT_RETURN_IF_ERROR(tt_expect_type(it, node, tensor, role, TT_TYPE_INT32));
  return tt_expect_constant(it, node, tensor, role);
}

tt_status tt_option_i8(tt_interpreter* it, const tt_node* node, uint32_t field,
                       int8_t default_value, int32_t* out) {
  int8_t value = default_value;
  *out = default_value;
  if (node->options_type == TT_OPTIONS_NONE) return TT_OK;
  if (!tt_fb_get_i8(&it->model, &node->options, field, default_value, &value))
    return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                        "option field %u is out of bounds", field);
  *out = value;
  return TT_OK;
}
