#include "interpreter/tt_model_reader.h"

#include <string.h>

#include "kernels/common/tt_kernel.h"
#include "memory/tt_arena.h"
#include "model/tt_schema.h"

#define BUILTIN_CUSTOM 32
#define TYPE_INT4 17 /* TensorType INT4: two weights packed per byte */
#define MAX_TENSOR_BYTES 0x7fffffff

typedef struct {
  tt_interpreter* it;
  const tt_fb_buffer* fb;
  tt_fb_vector opcodes;
  tt_fb_vector buffers;
  tt_fb_vector tensors;
  tt_fb_table subgraph;
} reader;

static tt_status corrupt(reader* r, const char* what) {
  return tt_error_set(
      &r->it->error, TT_ERR_CORRUPT_MODEL,
      "corrupt model: %s; the file may be truncated or damaged, "
      "re-export it",
      what);
}

static tt_status corrupt_tensor(reader* r, int32_t tensor, const char* what) {
  return tt_error_set(&r->it->error, TT_ERR_CORRUPT_MODEL,
                      "corrupt model: tensor %d %s", tensor, what);
}

static tt_status read_header(reader* r, tt_fb_table* root) {
  const tt_fb_buffer* fb = r->fb;
  if (fb->size < 8 || !tt_fb_root(fb, root))
    return corrupt(r,
                   "no valid flatbuffer root (file truncated or not a "
                   ".tflite model)");
  if (memcmp(fb->data + 4, TT_TFLITE_FILE_IDENTIFIER, 4) != 0)
    return corrupt(r,
                   "missing the TFL3 file identifier (not a .tflite "
                   "model)");
  uint32_t version;
  if (!tt_fb_get_u32(fb, root, TT_MODEL_VERSION, 0, &version))
    return corrupt(r, "unreadable schema version");
  if (version != TT_TFLITE_SCHEMA_VERSION)
    return tt_error_set(&r->it->error, TT_ERR_UNSUPPORTED,
                        "model has schema version %u; only version %d is "
                        "supported",
                        version, TT_TFLITE_SCHEMA_VERSION);
  tt_fb_vector subgraphs;
  if (!tt_fb_get_vector(fb, root, TT_MODEL_OPERATOR_CODES, 4, &r->opcodes) ||
      !tt_fb_get_vector(fb, root, TT_MODEL_BUFFERS, 4, &r->buffers) ||
      !tt_fb_get_vector(fb, root, TT_MODEL_SUBGRAPHS, 4, &subgraphs))
    return corrupt(r, "operator code, buffer or subgraph list out of bounds");
  if (subgraphs.count == 0) return corrupt(r, "the model has no subgraph");
  if (subgraphs.count > 1)
    return tt_error_set(&r->it->error, TT_ERR_UNSUPPORTED,
                        "model has %u subgraphs; only single-subgraph models "
                        "(no control flow) are supported",
                        subgraphs.count);
  if (!tt_fb_vector_table(fb, &subgraphs, 0, &r->subgraph))
    return corrupt(r, "subgraph 0 out of bounds");
  return TT_OK;
}

static tt_status read_shape(reader* r, int32_t index, const tt_fb_table* t,
                            tt_tensor* tensor) {
  tt_fb_vector shape;
  if (!tt_fb_get_vector(r->fb, t, TT_TENSOR_SHAPE, 4, &shape))
    return corrupt_tensor(r, index, "has a shape out of bounds");
  if (shape.count > TT_MAX_RANK)
    return tt_error_set(&r->it->error, TT_ERR_UNSUPPORTED,
                        "tensor %d has rank %u; at most %d is supported", index,
                        shape.count, TT_MAX_RANK);
  int8_t type;
  if (!tt_fb_get_i8(r->fb, t, TT_TENSOR_TYPE, TT_TYPE_FLOAT32, &type))
    return corrupt_tensor(r, index, "has an unreadable type");
  tensor->type = type;
  tensor->rank = (int32_t)shape.count;
  int64_t elements = 1;
  for (uint32_t d = 0; d < shape.count; ++d) {
    const int32_t dim = tt_fb_vector_i32(r->fb, &shape, d);
    if (dim < 0) return corrupt_tensor(r, index, "has a negative dimension");
    tensor->dims[d] = dim;
    elements *= dim;
    if (elements > MAX_TENSOR_BYTES)
      return corrupt_tensor(r, index, "is larger than 2 GB");
  }
  const int64_t bytes = elements * tt_type_size(type);
  if (bytes > MAX_TENSOR_BYTES)
    return corrupt_tensor(r, index, "is larger than 2 GB");
  tensor->num_elements = (int32_t)elements;
  tensor->num_bytes = (int32_t)bytes;
  return TT_OK;
}

static tt_status read_quantization(reader* r, int32_t index,
                                   const tt_fb_table* t, tt_tensor* tensor) {
  tt_fb_table quant;
  bool present;
  if (!tt_fb_get_table(r->fb, t, TT_TENSOR_QUANTIZATION, &quant, &present))
    return corrupt_tensor(r, index,
                          "has quantization parameters out of "
                          "bounds");
  if (!present) return TT_OK;
  tt_fb_vector scales, zero_points;
  int32_t dimension;
  uint8_t details_type;
  if (!tt_fb_get_vector(r->fb, &quant, TT_QUANT_SCALE, 4, &scales) ||
      !tt_fb_get_vector(r->fb, &quant, TT_QUANT_ZERO_POINT, 8, &zero_points) ||
      !tt_fb_get_i32(r->fb, &quant, TT_QUANT_QUANTIZED_DIMENSION, 0,
                     &dimension) ||
      !tt_fb_get_u8(r->fb, &quant, TT_QUANT_DETAILS_TYPE, 0, &details_type))
    return corrupt_tensor(r, index,
                          "has quantization parameters out of "
                          "bounds");
  if (details_type != 0)
    return tt_error_set(&r->it->error, TT_ERR_UNSUPPORTED,
                        "tensor %d uses custom quantization details, which "
                        "are not supported",
                        index);
  if (scales.count == 0) return TT_OK; /* min/max only: not quantized */
  /* TFLM (micro_allocator.cc) gives channel i zero point i when the
   * counts match and the first zero point to every channel otherwise
   * (weights may store a single one for all channels). Keep only the
   * first then: tt_tensor_channel_zero_point broadcasts it. */
  if (zero_points.count > 1 && zero_points.count != scales.count)
    zero_points.count = 1;
  for (uint32_t i = 0; i < zero_points.count; ++i) {
    const int64_t zp = tt_fb_vector_i64(r->fb, &zero_points, i);
    if (zp < INT32_MIN || zp > INT32_MAX)
      return corrupt_tensor(r, index, "has a zero point outside int32");
  }
  /* The quantized dimension is kept as written, even outside the rank:
   * TFLM copies it unchecked (micro_allocator.cc) and only a per-channel
   * filter's is ever used, and TFLM's own models carry such values (the
   * bias tensors of models/person_detect.tflite: rank 1, dimension 3).
   * Nothing here indexes with it: the kernels compare a filter's against
   * the dimension they expect (tt_conv_multiplier_count). */
  tensor->num_scales = (int32_t)scales.count;
  tensor->scales_pos = (int32_t)scales.pos;
  tensor->num_zero_points = (int32_t)zero_points.count;
  tensor->zero_points_pos = (int32_t)zero_points.pos;
  tensor->quantized_dimension = dimension;
  tensor->scale = tt_fb_vector_f32(r->fb, &scales, 0);
  tensor->zero_point =
      zero_points.count ? (int32_t)tt_fb_vector_i64(r->fb, &zero_points, 0) : 0;
  return TT_OK;
}

static tt_status read_buffer(reader* r, int32_t index, const tt_fb_table* t,
                             tt_tensor* tensor) {
  uint32_t buffer_index;
  if (!tt_fb_get_u32(r->fb, t, TT_TENSOR_BUFFER, 0, &buffer_index))
    return corrupt_tensor(r, index, "has an unreadable buffer index");
  if (buffer_index == 0) return TT_OK; /* buffer 0 is the empty sentinel */
  if (buffer_index >= r->buffers.count)
    return corrupt_tensor(r, index, "refers to a buffer that does not exist");
  tt_fb_table buffer;
  tt_fb_vector data;
  uint64_t external_offset;
  if (!tt_fb_vector_table(r->fb, &r->buffers, buffer_index, &buffer) ||
      !tt_fb_get_vector(r->fb, &buffer, TT_BUFFER_DATA, 1, &data) ||
      !tt_fb_get_i64(r->fb, &buffer, TT_BUFFER_OFFSET, 0,
                     (int64_t*)&external_offset))
    return corrupt_tensor(r, index, "has a buffer out of bounds");
  if (external_offset > 1)
    return tt_error_set(&r->it->error, TT_ERR_UNSUPPORTED,
                        "tensor %d keeps its data outside the flatbuffer "
                        "(models over 2 GB); this is not supported",
                        index);
  if (data.count == 0) {
    /* A zero-element constant (e.g. an empty axis list) has an empty
     * buffer, like every activation; only its size tells them apart. */
    if (tensor->num_bytes == 0) {
      tensor->location = TT_DATA_MODEL;
      tensor->data_offset = (int32_t)data.pos;
    }
    return TT_OK;
  }
  if (tt_type_size(tensor->type) == 0) {
    /* A constant of a type this runtime has no size for (TFLM's packed
     * INT4 weights, UINT32, STRING, ...): a feature, not corruption. */
    return tt_error_set(&r->it->error, TT_ERR_UNSUPPORTED,
                        "tensor %d is a constant of type %s, which is not "
                        "supported%s",
                        index, tt_type_name(tensor->type),
                        tensor->type == TYPE_INT4 ? " (4-bit weights)" : "");
  }
  if (data.count != (uint32_t)tensor->num_bytes)
    return corrupt_tensor(r, index,
                          "has a data buffer whose size does not "
                          "match its shape and type");
  tensor->location = TT_DATA_MODEL;
  tensor->data_offset = (int32_t)data.pos;
  return TT_OK;
}

static tt_status read_tensor(reader* r, int32_t index, tt_tensor* tensor) {
  tt_fb_table t;
  tt_fb_vector name;
  tt_fb_table sparsity;
  bool sparse;
  uint8_t is_variable;
  if (!tt_fb_vector_table(r->fb, &r->tensors, (uint32_t)index, &t) ||
      !tt_fb_get_vector(r->fb, &t, TT_TENSOR_NAME, 1, &name) ||
      !tt_fb_get_table(r->fb, &t, TT_TENSOR_SPARSITY, &sparsity, &sparse) ||
      !tt_fb_get_u8(r->fb, &t, TT_TENSOR_IS_VARIABLE, 0, &is_variable))
    return corrupt_tensor(r, index, "is out of bounds");
  tensor->name_pos = (int32_t)name.pos;
  tensor->name_length = (int32_t)name.count;
  tensor->first_op = -1;
  tensor->last_op = -1;
  if (sparse)
    return tt_error_set(&r->it->error, TT_ERR_UNSUPPORTED,
                        "tensor %d is sparse; sparse tensors are not "
                        "supported",
                        index);
  if (is_variable) {
    /* TFLM keeps such tensors (the state of LSTM and SVDF operators)
     * across invocations; this runtime plans every activation afresh. */
    return tt_error_set(&r->it->error, TT_ERR_UNSUPPORTED,
                        "tensor %d is a variable tensor (an operator's state "
                        "kept between invocations, as LSTM and SVDF keep "
                        "theirs); stateful models are not supported",
                        index);
  }
  TT_RETURN_IF_ERROR(read_shape(r, index, &t, tensor));
  TT_RETURN_IF_ERROR(read_quantization(r, index, &t, tensor));
  return read_buffer(r, index, &t, tensor);
}

static tt_status read_index_list(reader* r, const tt_fb_table* table,
                                 uint32_t field, bool allow_optional,
                                 const char* what, int32_t* offset,
                                 int32_t* count) {
  tt_fb_vector list;
  if (!tt_fb_get_vector(r->fb, table, field, 4, &list)) return corrupt(r, what);
  TT_RETURN_IF_ERROR(
      tt_arena_alloc_persistent(r->it, (uint64_t)list.count * 4, what, offset));
  int32_t* out = (int32_t*)tt_arena_at(r->it, *offset);
  for (uint32_t i = 0; i < list.count; ++i) {
    const int32_t tensor = tt_fb_vector_i32(r->fb, &list, i);
    if (tensor >= r->it->num_tensors || tensor < (allow_optional ? -1 : 0))
      return tt_error_set(&r->it->error, TT_ERR_CORRUPT_MODEL,
                          "corrupt model: %s name tensor %d, but the model "
                          "has %d tensors",
                          what, tensor, r->it->num_tensors);
    out[i] = tensor;
  }
  *count = (int32_t)list.count;
  return TT_OK;
}

/* A custom operator's custom_code, as printable ASCII ('?' for any other
 * byte), cut to fit `size` bytes with its NUL; "" when absent. */
static void custom_code_name(reader* r, const tt_fb_table* opcode, char* out,
                             uint32_t size) {
  tt_fb_vector name;
  uint32_t n = 0;
  if (tt_fb_get_vector(r->fb, opcode, TT_OPCODE_CUSTOM_CODE, 1, &name)) {
    for (uint32_t i = 0; i < name.count && n + 1 < size; ++i) {
      const uint8_t c = r->fb->data[name.pos + i];
      out[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
  }
  out[n] = '\0';
}

static tt_status read_operator(reader* r, const tt_fb_vector* operators,
                               int32_t index, tt_node* node) {
  r->it->current_node = index;
  tt_fb_table op, opcode;
  uint32_t opcode_index;
  if (!tt_fb_vector_table(r->fb, operators, (uint32_t)index, &op) ||
      !tt_fb_get_u32(r->fb, &op, TT_OPERATOR_OPCODE_INDEX, 0, &opcode_index))
    return corrupt(r, "an operator is out of bounds");
  if (opcode_index >= r->opcodes.count)
    return corrupt(r,
                   "an operator refers to an operator code that does not "
                   "exist");
  int8_t deprecated_code;
  int32_t code, version;
  if (!tt_fb_vector_table(r->fb, &r->opcodes, opcode_index, &opcode) ||
      !tt_fb_get_i8(r->fb, &opcode, TT_OPCODE_DEPRECATED_BUILTIN_CODE, 0,
                    &deprecated_code) ||
      !tt_fb_get_i32(r->fb, &opcode, TT_OPCODE_BUILTIN_CODE, 0, &code) ||
      !tt_fb_get_i32(r->fb, &opcode, TT_OPCODE_VERSION, 1, &version))
    return corrupt(r, "an operator code is out of bounds");
  /* Old writers fill only the deprecated int8 field; new ones both. */
  if (deprecated_code > code) code = deprecated_code;
  node->builtin_code = code;
  node->version = version;
  if (code == BUILTIN_CUSTOM) {
    char name[48];
    custom_code_name(r, &opcode, name, sizeof name);
    return tt_error_set(&r->it->error, TT_ERR_UNSUPPORTED,
                        "operator %d is the custom operator '%s'; custom "
                        "operators are not supported",
                        index, name);
  }
  if (tt_kernel_find(code, &node->kernel_index) == NULL)
    return tt_error_set(&r->it->error, TT_ERR_UNSUPPORTED,
                        "operator %d is %s (builtin code %d), which "
                        "tflm_training does not support yet",
                        index, tt_builtin_name(code), code);
  uint8_t options_type;
  bool has_options;
  if (!tt_fb_get_u8(r->fb, &op, TT_OPERATOR_BUILTIN_OPTIONS_TYPE, 0,
                    &options_type) ||
      !tt_fb_get_table(r->fb, &op, TT_OPERATOR_BUILTIN_OPTIONS, &node->options,
                       &has_options))
    return corrupt(r, "operator options out of bounds");
  node->options_type = has_options ? options_type : TT_OPTIONS_NONE;
  node->op_data_offset = -1;
  TT_RETURN_IF_ERROR(read_index_list(r, &op, TT_OPERATOR_INPUTS, true,
                                     "operator inputs", &node->inputs_offset,
                                     &node->num_inputs));
  return read_index_list(r, &op, TT_OPERATOR_OUTPUTS, false, "operator outputs",
                         &node->outputs_offset, &node->num_outputs);
}

tt_status tt_model_read(tt_interpreter* it) {
  reader r;
  memset(&r, 0, sizeof r);
  r.it = it;
  r.fb = &it->model;
  tt_fb_table root;
  TT_RETURN_IF_ERROR(read_header(&r, &root));

  tt_fb_vector operators;
  if (!tt_fb_get_vector(r.fb, &r.subgraph, TT_SUBGRAPH_TENSORS, 4,
                        &r.tensors) ||
      !tt_fb_get_vector(r.fb, &r.subgraph, TT_SUBGRAPH_OPERATORS, 4,
                        &operators))
    return corrupt(&r, "tensor or operator list out of bounds");
  it->num_tensors = (int32_t)r.tensors.count;
  it->num_nodes = (int32_t)operators.count;

  int32_t offset;
  TT_RETURN_IF_ERROR(tt_arena_alloc_persistent(
      it, (uint64_t)r.tensors.count * sizeof(tt_tensor), "the tensor table",
      &offset));
  it->tensors = (tt_tensor*)tt_arena_at(it, offset);
  for (int32_t i = 0; i < it->num_tensors; ++i)
    TT_RETURN_IF_ERROR(read_tensor(&r, i, &it->tensors[i]));

  TT_RETURN_IF_ERROR(
      tt_arena_alloc_persistent(it, (uint64_t)operators.count * sizeof(tt_node),
                                "the operator table", &offset));
  it->nodes = (tt_node*)tt_arena_at(it, offset);
  for (int32_t i = 0; i < it->num_nodes; ++i)
    TT_RETURN_IF_ERROR(read_operator(&r, &operators, i, &it->nodes[i]));
  it->current_node = -1;

  TT_RETURN_IF_ERROR(read_index_list(&r, &r.subgraph, TT_SUBGRAPH_INPUTS, false,
                                     "graph inputs", &it->inputs_offset,
                                     &it->num_inputs));
  return read_index_list(&r, &r.subgraph, TT_SUBGRAPH_OUTPUTS, false,
                         "graph outputs", &it->outputs_offset,
                         &it->num_outputs);
}
