/* TRANSPOSE: output dimension i is input dimension perm[i], perm a
 * constant int32 permutation. A pure data move (no rescaling), for the
 * element types TFLM's kernel takes: INT8, INT16 and FLOAT32. */
#include "kernels/common/tt_kernel.h"
#include "kernels/common/tt_kernel_checks.h"
#include "kernels/common/tt_strided_copy.h"
#include "model/tt_types.h"

#define MAX_TRANSPOSE_RANK 5 /* TFLM's limit */

typedef struct {
  int32_t element_size;
  tt_strided_copy_params copy;
} transpose_data;

static tt_status prepare(tt_interpreter* it, tt_node* node) {
  TT_RETURN_IF_ERROR(tt_expect_io_counts(it, node, 2, 2, 1));
  const tt_tensor* input = tt_node_input(it, node, 0);
  const tt_tensor* perm = tt_node_input(it, node, 1);
  const tt_tensor* output = tt_node_output(it, node, 0);
  TT_RETURN_IF_ERROR(tt_expect_movable_io(it, node, input, output));
  if (input->rank < 1 || input->rank > MAX_TRANSPOSE_RANK)
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "input has rank %d; 1 to %d is supported", input->rank,
                        MAX_TRANSPOSE_RANK);
  TT_RETURN_IF_ERROR(tt_expect_constant_i32(it, node, perm, "perm"));
  if (perm->rank != 1 || perm->num_elements != input->rank)
    return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                        "perm must list %d dimensions, it has %d elements",
                        input->rank, perm->num_elements);

  const int32_t rank = input->rank;
  const uint8_t* values = (const uint8_t*)tt_tensor_data(it, perm);
  int32_t input_strides[TT_MAX_RANK];
  input_strides[rank - 1] = 1;
  for (int32_t d = rank - 2; d >= 0; --d)
    input_strides[d] =
        input->num_elements > 0 ? input_strides[d + 1] * input->dims[d + 1] : 0;
  transpose_data* data;
  TT_RETURN_IF_ERROR(
      tt_node_alloc_op_data(it, node, sizeof *data, (void**)&data));
  bool used[TT_MAX_RANK] = {false};
  int32_t expected[TT_MAX_RANK];
  for (int32_t i = 0; i < rank; ++i) {
    const int32_t p = tt_load_i32(values + 4 * i);
    if (p < 0 || p >= rank || used[p])
      return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                          "perm is not a permutation of the %d input "
                          "dimensions (entry %d is %d)",
                          rank, i, p);
    used[p] = true;
    expected[i] = input->dims[p];
    data->copy.dims[i] = input->dims[p];
    data->copy.steps[i] = input_strides[p];
  }
  TT_RETURN_IF_ERROR(
      tt_expect_shape(it, node, output, "output", expected, rank));
  data->element_size = tt_type_size(input->type);
  data->copy.rank = rank;
  data->copy.num_elements = input->num_elements;
  data->copy.base = 0;
  return TT_OK;
}

static tt_status eval(tt_interpreter* it, const tt_node* node) {
  const transpose_data* d = (const transpose_data*)tt_node_op_data(it, node);
  tt_strided_copy(&d->copy, d->element_size,
                  tt_tensor_data(it, tt_node_input(it, node, 0)),
                  tt_tensor_data(it, tt_node_output(it, node, 0)));
  return TT_OK;
}

const tt_kernel tt_kernel_transpose = {
    TT_OP_TRANSPOSE, "TRANSPOSE", TT_OPTIONS_TRANSPOSE, prepare, eval,
};
