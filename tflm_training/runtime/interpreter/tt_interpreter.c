#include "tt_interpreter.h"

#include <stddef.h>
#include <string.h>

#include "interpreter/tt_model_reader.h"
#include "kernels/common/tt_kernel.h"
#include "memory/tt_activation_planner.h"
#include "memory/tt_arena.h"

static tt_status prepare_nodes(tt_interpreter* it) {
  for (int32_t i = 0; i < it->num_nodes; ++i) {
    tt_node* node = &it->nodes[i];
    const tt_kernel* kernel = tt_kernel_at(node->kernel_index);
    it->current_node = i;
    if (node->options_type != TT_OPTIONS_NONE &&
        node->options_type != kernel->options_type)
      return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                          "options table has type %d, expected %d",
                          node->options_type, kernel->options_type);
    TT_RETURN_IF_ERROR(kernel->prepare(it, node));
  }
  it->current_node = -1;
  return TT_OK;
}

tt_status tt_interpreter_load(tt_interpreter* it, const uint8_t* model,
                              uint32_t model_size, uint8_t* arena,
                              uint32_t arena_size) {
  if (it == NULL) return TT_ERR_INVALID_ARGUMENT;
  memset(it, 0, sizeof *it);
  it->current_node = -1;
  if (model == NULL || arena == NULL)
    return tt_error_set(&it->error, TT_ERR_INVALID_ARGUMENT,
                        "model and arena must not be NULL");
  if (model_size > 0x7fffffffu)
    return tt_error_set(&it->error, TT_ERR_INVALID_ARGUMENT,
                        "models over 2 GB are not supported");
  const uint32_t misalignment =
      (uint32_t)((uintptr_t)arena & (TT_ARENA_ALIGNMENT - 1));
  const uint32_t skip = misalignment ? TT_ARENA_ALIGNMENT - misalignment : 0;
  if (arena_size < skip) arena_size = skip;
  it->model.data = model;
  it->model.size = model_size;
  it->arena = arena + skip;
  it->arena_size = arena_size - skip;
  if (it->arena_size > 0x7fffffffu) it->arena_size = 0x7fffffffu;

  TT_RETURN_IF_ERROR(tt_model_read(it));
  TT_RETURN_IF_ERROR(tt_plan_lifetimes(it));
  return prepare_nodes(it);
}

tt_status tt_interpreter_init(tt_interpreter* it, const uint8_t* model,
                              uint32_t model_size, uint8_t* arena,
                              uint32_t arena_size,
                              const tt_interpreter_options* options) {
  TT_RETURN_IF_ERROR(
      tt_interpreter_load(it, model, model_size, arena, arena_size));
  const bool preserve = options != NULL && options->preserve_all_tensors;
  TT_RETURN_IF_ERROR(tt_plan_activations(it, preserve));
  it->ready = true;
  return TT_OK;
}

tt_status tt_interpreter_invoke(tt_interpreter* it) {
  if (it == NULL) return TT_ERR_INVALID_ARGUMENT;
  if (!it->ready)
    return tt_error_set(&it->error, TT_ERR_BAD_STATE,
                        "invoke() called on an interpreter that did not "
                        "initialise");
  for (int32_t i = 0; i < it->num_nodes; ++i) {
    const tt_node* node = &it->nodes[i];
    it->current_node = i;
    const tt_status status = tt_kernel_at(node->kernel_index)->eval(it, node);
    if (status != TT_OK) return status;
  }
  it->current_node = -1;
  return TT_OK;
}

static int32_t graph_tensor(const tt_interpreter* it, int32_t list_offset,
                            int32_t count, int32_t index) {
  if (it == NULL || !it->ready || index < 0 || index >= count) return -1;
  return ((const int32_t*)tt_arena_at(it, list_offset))[index];
}

int32_t tt_interpreter_num_inputs(const tt_interpreter* it) {
  return (it == NULL || !it->ready) ? 0 : it->num_inputs;
}

int32_t tt_interpreter_num_outputs(const tt_interpreter* it) {
  return (it == NULL || !it->ready) ? 0 : it->num_outputs;
}

int32_t tt_interpreter_input_tensor(const tt_interpreter* it, int32_t index) {
  return graph_tensor(it, it->inputs_offset, it->num_inputs, index);
}

int32_t tt_interpreter_output_tensor(const tt_interpreter* it, int32_t index) {
  return graph_tensor(it, it->outputs_offset, it->num_outputs, index);
}

tt_status tt_interpreter_set_input(tt_interpreter* it, int32_t index,
                                   const void* data, uint32_t num_bytes,
                                   int32_t type) {
  if (it == NULL) return TT_ERR_INVALID_ARGUMENT;
  const int32_t tensor_index = tt_interpreter_input_tensor(it, index);
  if (tensor_index < 0)
    return tt_error_set(&it->error, TT_ERR_INVALID_ARGUMENT,
                        "input %d does not exist; the model has %d inputs",
                        index, it->num_inputs);
  const tt_tensor* t = &it->tensors[tensor_index];
  if (type != t->type)
    return tt_error_set(&it->error, TT_ERR_INPUT_MISMATCH,
                        "input %d must be %s, got %s", index,
                        tt_type_name(t->type), tt_type_name(type));
  if (num_bytes != (uint32_t)t->num_bytes)
    return tt_error_set(&it->error, TT_ERR_INPUT_MISMATCH,
                        "input %d needs %d bytes, got %u", index, t->num_bytes,
                        num_bytes);
  if (data == NULL && num_bytes > 0)
    return tt_error_set(&it->error, TT_ERR_INVALID_ARGUMENT,
                        "input data must not be NULL");
  if (t->location == TT_DATA_ARENA && num_bytes > 0)
    memcpy(it->arena + t->data_offset, data, num_bytes);
  return TT_OK;
}

const tt_tensor* tt_interpreter_tensor(const tt_interpreter* it,
                                       int32_t tensor_index) {
  if (it == NULL || !it->ready || tensor_index < 0 ||
      tensor_index >= it->num_tensors)
    return NULL;
  return &it->tensors[tensor_index];
}

const void* tt_interpreter_tensor_data(const tt_interpreter* it,
                                       int32_t tensor_index) {
  const tt_tensor* t = tt_interpreter_tensor(it, tensor_index);
  if (t == NULL) return NULL;
  switch (t->location) {
    case TT_DATA_MODEL:
      return it->model.data + t->data_offset;
    case TT_DATA_ARENA:
      return it->arena + t->data_offset;
    default:
      return NULL;
  }
}

uint32_t tt_interpreter_arena_used(const tt_interpreter* it) {
  if (it == NULL || !it->ready) return 0;
  return it->activations_offset + it->activations_size;
}

int32_t tt_interpreter_num_tensors(const tt_interpreter* it) {
  return (it == NULL || !it->ready) ? 0 : it->num_tensors;
}

const tt_error* tt_interpreter_error(const tt_interpreter* it) {
  return it == NULL ? NULL : &it->error;
}

uint32_t tt_sizeof_interpreter(void) {
  return (uint32_t)sizeof(tt_interpreter);
}

uint32_t tt_sizeof_tensor(void) { return (uint32_t)sizeof(tt_tensor); }
