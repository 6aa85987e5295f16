/* The accessors kernels share at prepare and eval time (declared in
 * tt_kernel.h); what only prepare uses is in tt_kernel_prepare.c. */
#include <stddef.h>
#include <string.h>

#include "kernels/common/tt_kernel.h"
#include "memory/tt_arena.h"

static const int32_t* node_list(const tt_interpreter* it, int32_t offset) {
  return (const int32_t*)tt_arena_at(it, offset);
}

int32_t tt_node_input_index(const tt_interpreter* it, const tt_node* node,
                            int32_t index) {
  if (index < 0 || index >= node->num_inputs) return -1;
  return node_list(it, node->inputs_offset)[index];
}

tt_tensor* tt_node_input(tt_interpreter* it, const tt_node* node,
                         int32_t index) {
  const int32_t tensor = tt_node_input_index(it, node, index);
  return tensor < 0 ? NULL : &it->tensors[tensor];
}

tt_tensor* tt_node_output(tt_interpreter* it, const tt_node* node,
                          int32_t index) {
  if (index < 0 || index >= node->num_outputs) return NULL;
  return &it->tensors[node_list(it, node->outputs_offset)[index]];
}

void* tt_tensor_data(tt_interpreter* it, const tt_tensor* tensor) {
  switch (tensor->location) {
    case TT_DATA_MODEL:
      /* Constant data is only ever read; the cast drops the model's const. */
      return (void*)(uintptr_t)(it->model.data + tensor->data_offset);
    case TT_DATA_ARENA:
      return it->arena + tensor->data_offset;
    default:
      return NULL;
  }
}

float tt_tensor_channel_scale(const tt_interpreter* it, const tt_tensor* tensor,
                              int32_t channel) {
  if (channel <= 0 || channel >= tensor->num_scales) return tensor->scale;
  float value;
  memcpy(&value, it->model.data + tensor->scales_pos + 4 * channel, 4);
  return value;
}

int32_t tt_tensor_channel_zero_point(const tt_interpreter* it,
                                     const tt_tensor* tensor, int32_t channel) {
  if (channel <= 0 || channel >= tensor->num_zero_points)
    return tensor->zero_point;
  int64_t value;
  memcpy(&value, it->model.data + tensor->zero_points_pos + 8 * channel, 8);
  return (int32_t)value; /* range-checked by the model reader */
}

void* tt_node_op_data(tt_interpreter* it, const tt_node* node) {
  return node->op_data_offset < 0 ? NULL
                                  : tt_arena_at(it, node->op_data_offset);
}
