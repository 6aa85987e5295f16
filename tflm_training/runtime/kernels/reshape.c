/* RESHAPE and SQUEEZE: the bytes are unchanged, only the shape differs.
 * Like TFLM, RESHAPE takes the output shape from the output tensor; a
 * constant new-shape (second input, else the options) is checked against
 * it. SQUEEZE's output must be its input without the squeezed size-1
 * dimensions. */
#include <string.h>

#include "kernels/common/tt_kernel.h"
#include "kernels/common/tt_kernel_checks.h"
#include "model/tt_types.h"

#define MAX_SQUEEZE_DIMS 8 /* TFLM's limit on listed squeeze dimensions */

typedef struct {
  int32_t num_bytes;
} reshape_data;

static tt_status check_copy(tt_interpreter* it, const tt_node* node,
                            const tt_tensor* input, const tt_tensor* output) {
  if (tt_type_size(input->type) == 0)
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "input type %s is not supported",
                        tt_type_name(input->type));
  if (output->type != input->type)
    return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                        "output type %s differs from input type %s",
                        tt_type_name(output->type), tt_type_name(input->type));
  if (output->num_elements != input->num_elements)
    return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                        "output has %d elements, input has %d",
                        output->num_elements, input->num_elements);
  return TT_OK;
}

static tt_status alloc_copy(tt_interpreter* it, tt_node* node,
                            const tt_tensor* input) {
  reshape_data* data;
  TT_RETURN_IF_ERROR(
      tt_node_alloc_op_data(it, node, sizeof *data, (void**)&data));
  data->num_bytes = input->num_bytes;
  return TT_OK;
}

/* A requested shape agrees with the output when it has the output's rank
 * and each entry is the output's size or -1 (at most once). [0] is the
 * legacy spelling of a scalar. */
static tt_status check_new_shape(tt_interpreter* it, const tt_node* node,
                                 const uint8_t* values, int32_t count,
                                 const tt_tensor* output) {
  if (count == 1 && tt_load_i32(values) == 0 && output->rank == 0) return TT_OK;
  bool agrees = count == output->rank;
  int32_t wildcards = 0;
  for (int32_t d = 0; agrees && d < count; ++d) {
    const int32_t size = tt_load_i32(values + 4 * d);
    if (size == -1) {
      agrees = ++wildcards == 1;
    } else {
      agrees = size == output->dims[d];
    }
  }
  if (agrees) return TT_OK;
  char shape[TT_SHAPE_TEXT_SIZE];
  return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                      "the requested shape (%d values) does not match the "
                      "output shape %s",
                      count, tt_shape_text(output->dims, output->rank, shape));
}

static tt_status prepare_reshape(tt_interpreter* it, tt_node* node) {
  TT_RETURN_IF_ERROR(tt_expect_io_counts(it, node, 1, 2, 1));
  const tt_tensor* input = tt_node_input(it, node, 0);
  const tt_tensor* shape = tt_node_input(it, node, 1);
  const tt_tensor* output = tt_node_output(it, node, 0);
  TT_RETURN_IF_ERROR(check_copy(it, node, input, output));
  /* TFLM ignores the requested shape; a non-constant one cannot be checked
   * here either. */
  if (shape != NULL) {
    if (shape->type == TT_TYPE_INT32 && shape->location == TT_DATA_MODEL &&
        shape->rank <= 1) {
      TT_RETURN_IF_ERROR(
          check_new_shape(it, node, (const uint8_t*)tt_tensor_data(it, shape),
                          shape->num_elements, output));
    }
  } else {
    tt_fb_vector new_shape;
    TT_RETURN_IF_ERROR(
        tt_option_i32_vector(it, node, TT_RESHAPE_NEW_SHAPE, &new_shape));
    if (new_shape.pos != 0)
      TT_RETURN_IF_ERROR(check_new_shape(it, node,
                                         it->model.data + new_shape.pos,
                                         (int32_t)new_shape.count, output));
  }
  return alloc_copy(it, node, input);
}

static tt_status prepare_squeeze(tt_interpreter* it, tt_node* node) {
  TT_RETURN_IF_ERROR(tt_expect_io_counts(it, node, 1, 1, 1));
  const tt_tensor* input = tt_node_input(it, node, 0);
  const tt_tensor* output = tt_node_output(it, node, 0);
  TT_RETURN_IF_ERROR(check_copy(it, node, input, output));
  tt_fb_vector dims;
  TT_RETURN_IF_ERROR(tt_option_i32_vector(it, node, TT_SQUEEZE_DIMS, &dims));
  if (dims.count > MAX_SQUEEZE_DIMS)
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "%u squeeze dimensions listed; at most %d are "
                        "supported",
                        dims.count, MAX_SQUEEZE_DIMS);
  bool squeeze[TT_MAX_RANK];
  for (int32_t d = 0; d < input->rank; ++d)
    squeeze[d] = dims.count == 0 && input->dims[d] == 1;
  for (uint32_t i = 0; i < dims.count; ++i) {
    const int32_t value = tt_fb_vector_i32(&it->model, &dims, i);
    const int32_t d = value < 0 ? value + input->rank : value;
    if (d < 0 || d >= input->rank || input->dims[d] != 1)
      return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                          "cannot squeeze dimension %d of an input of rank "
                          "%d (only size-1 dimensions can be squeezed)",
                          value, input->rank);
    squeeze[d] = true;
  }
  int32_t expected[TT_MAX_RANK];
  int32_t rank = 0;
  for (int32_t d = 0; d < input->rank; ++d)
    if (!squeeze[d]) expected[rank++] = input->dims[d];
  TT_RETURN_IF_ERROR(
      tt_expect_shape(it, node, output, "output", expected, rank));
  return alloc_copy(it, node, input);
}

static tt_status eval(tt_interpreter* it, const tt_node* node) {
  const reshape_data* d = (const reshape_data*)tt_node_op_data(it, node);
  if (d->num_bytes == 0) return TT_OK;
  const void* in = tt_tensor_data(it, tt_node_input(it, node, 0));
  void* out = tt_tensor_data(it, tt_node_output(it, node, 0));
  if (in != out) memcpy(out, in, (size_t)d->num_bytes);
  return TT_OK;
}

const tt_kernel tt_kernel_reshape = {
    TT_OP_RESHAPE, "RESHAPE", TT_OPTIONS_RESHAPE, prepare_reshape, eval,
};

const tt_kernel tt_kernel_squeeze = {
    TT_OP_SQUEEZE, "SQUEEZE", TT_OPTIONS_SQUEEZE, prepare_squeeze, eval,
};
