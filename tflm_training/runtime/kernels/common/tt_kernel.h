/* What a kernel implements and the helpers it uses to reach its tensors.
 *
 * Each builtin operator has one kernel file in kernels/ defining a
 * `const tt_kernel tt_kernel_<name>` that tt_kernel_registry.c lists.
 * prepare() runs once at init: it checks types and shapes (failing with a
 * message that says what is wrong), reads options, and precomputes what
 * eval() needs into persistent op data (tt_node_alloc_op_data). eval()
 * runs the arithmetic. Neither may allocate anything else. */
#ifndef TFLM_TRAINING_TT_KERNEL_H_
#define TFLM_TRAINING_TT_KERNEL_H_

#include "model/tt_builtin_names.h"
#include "model/tt_flatbuffer.h"
#include "model/tt_schema.h"
#include "model/tt_types.h"
#include "tt_records.h"
#include "tt_status.h"

typedef struct {
  int32_t builtin_code;
  const char* name;
  int32_t options_type; /* expected BuiltinOptions tag; 0 accepts none */
  tt_status (*prepare)(tt_interpreter* interpreter, tt_node* node);
  tt_status (*eval)(tt_interpreter* interpreter, const tt_node* node);
} tt_kernel;

/* The registries refer to kernels weakly: a firmware links only the
 * kernels its model uses (tools/firmware_build.py pulls them by name from
 * an archive) and the others read as NULL, so they are neither found nor
 * linked. */
#define TT_KERNEL_IF_LINKED __attribute__((weak))

/* Registry (tt_kernel_registry.c). */
const tt_kernel* tt_kernel_find(int32_t builtin_code, int32_t* index);
const tt_kernel* tt_kernel_at(int32_t index);

/* Tensors of a node. NULL for an optional input given as -1 or an index
 * past the node's list. */
tt_tensor* tt_node_input(tt_interpreter* interpreter, const tt_node* node,
                         int32_t index);
tt_tensor* tt_node_output(tt_interpreter* interpreter, const tt_node* node,
                          int32_t index);
int32_t tt_node_input_index(const tt_interpreter* interpreter,
                            const tt_node* node, int32_t index);

void* tt_tensor_data(tt_interpreter* interpreter, const tt_tensor* tensor);
float tt_tensor_channel_scale(const tt_interpreter* interpreter,
                              const tt_tensor* tensor, int32_t channel);
int32_t tt_tensor_channel_zero_point(const tt_interpreter* interpreter,
                                     const tt_tensor* tensor, int32_t channel);

/* Persistent data for this node, zero-filled. */
tt_status tt_node_alloc_op_data(tt_interpreter* interpreter, tt_node* node,
                                uint32_t num_bytes, void** data);
void* tt_node_op_data(tt_interpreter* interpreter, const tt_node* node);

/* Option readers: the default is returned when the node has no options
 * table or the field is absent. */
tt_status tt_option_i32(tt_interpreter* interpreter, const tt_node* node,
                        uint32_t field, int32_t default_value, int32_t* out);
tt_status tt_option_bool(tt_interpreter* interpreter, const tt_node* node,
                         uint32_t field, bool default_value, bool* out);
tt_status tt_option_f32(tt_interpreter* interpreter, const tt_node* node,
                        uint32_t field, float default_value, float* out);
tt_status tt_option_i32_vector(tt_interpreter* interpreter, const tt_node* node,
                               uint32_t field, tt_fb_vector* out);

/* Records "operator <i> (<NAME>): <message>" and returns code. */
tt_status tt_node_fail(tt_interpreter* interpreter, const tt_node* node,
                       tt_status code, const char* format, ...);

/* Common prepare checks, each failing with a precise message. */
tt_status tt_expect_io_counts(tt_interpreter* interpreter, const tt_node* node,
                              int32_t min_inputs, int32_t max_inputs,
                              int32_t num_outputs);
tt_status tt_expect_type(tt_interpreter* interpreter, const tt_node* node,
                         const tt_tensor* tensor, const char* role,
                         int32_t type);
tt_status tt_expect_rank(tt_interpreter* interpreter, const tt_node* node,
                         const tt_tensor* tensor, const char* role,
                         int32_t rank);
/* Per-tensor (or per-channel, num_scales channels) quantization present. */
tt_status tt_expect_quantized(tt_interpreter* interpreter, const tt_node* node,
                              const tt_tensor* tensor, const char* role);
tt_status tt_expect_constant(tt_interpreter* interpreter, const tt_node* node,
                             const tt_tensor* tensor, const char* role);

#endif /* TFLM_TRAINING_TT_KERNEL_H_ */
