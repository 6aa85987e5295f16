/* STRIDED_SLICE with constant int32 begin, end and strides (one entry per
 * input dimension, rank <= 4), as TFLM computes it: negative indices count
 * from the end, indices are clamped to the dimension, begin_mask /
 * end_mask bits take the whole dimension, shrink_axis_mask bits take the
 * single element at begin and drop the dimension. Like TFLM, the
 * ellipsis_mask, new_axis_mask and offset options are ignored (the
 * converter expands an ellipsis into explicit entries). Unlike TFLM, a
 * shrunk dimension whose begin is past its end, or that steps backward, is
 * rejected: TFLM writes nothing to the output then. A pure data move for
 * the element types TFLM's kernel takes: INT8, INT16, INT32, FLOAT32,
 * BOOL. */
#include "kernels/common/tt_kernel.h"
#include "kernels/common/tt_kernel_checks.h"
#include "kernels/common/tt_strided_copy.h"
#include "model/tt_types.h"

#define MAX_STRIDED_SLICE_RANK 4 /* TFLM's limit */

typedef struct {
  int32_t element_size;
  tt_strided_copy_params copy;
} strided_slice_data;

static int32_t clamp(int32_t v, int32_t lo, int32_t hi) {
  return v > hi ? hi : (v < lo ? lo : v);
}

static bool mask_bit(int32_t mask, int32_t d) {
  return (((uint32_t)mask >> d) & 1u) != 0;
}

/* TFLM reads one entry per input dimension (and ignores any more). */
static tt_status check_index_tensor(tt_interpreter* it, const tt_node* node,
                                    const tt_tensor* t, const char* role,
                                    int32_t rank) {
  TT_RETURN_IF_ERROR(tt_expect_constant_i32(it, node, t, role));
  if (t->num_elements < rank)
    return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                        "%s must have one entry per input dimension (%d), "
                        "it has %d",
                        role, rank, t->num_elements);
  return TT_OK;
}

static tt_status prepare(tt_interpreter* it, tt_node* node) {
  TT_RETURN_IF_ERROR(tt_expect_io_counts(it, node, 4, 4, 1));
  const tt_tensor* input = tt_node_input(it, node, 0);
  const tt_tensor* output = tt_node_output(it, node, 0);
  const int32_t type = input->type;
  if (type != TT_TYPE_INT8 && type != TT_TYPE_INT16 && type != TT_TYPE_INT32 &&
      type != TT_TYPE_FLOAT32 && type != TT_TYPE_BOOL)
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "input type %s is not supported (INT8, INT16, INT32, "
                        "FLOAT32 or BOOL)",
                        tt_type_name(type));
  TT_RETURN_IF_ERROR(tt_expect_type(it, node, output, "output", type));
  const int32_t rank = input->rank;
  if (rank > MAX_STRIDED_SLICE_RANK)
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "input has rank %d; at most %d is supported (as in "
                        "TFLM)",
                        rank, MAX_STRIDED_SLICE_RANK);
  static const char* const kRoles[3] = {"begin", "end", "strides"};
  const uint8_t* values[3];
  for (int32_t i = 0; i < 3; ++i) {
    const tt_tensor* t = tt_node_input(it, node, i + 1);
    TT_RETURN_IF_ERROR(check_index_tensor(it, node, t, kRoles[i], rank));
    values[i] = (const uint8_t*)tt_tensor_data(it, t);
  }
  int32_t begin_mask, end_mask, shrink_mask;
  TT_RETURN_IF_ERROR(
      tt_option_i32(it, node, TT_STRIDED_SLICE_BEGIN_MASK, 0, &begin_mask));
  TT_RETURN_IF_ERROR(
      tt_option_i32(it, node, TT_STRIDED_SLICE_END_MASK, 0, &end_mask));
  TT_RETURN_IF_ERROR(tt_option_i32(it, node, TT_STRIDED_SLICE_SHRINK_AXIS_MASK,
                                   0, &shrink_mask));
  strided_slice_data* data;
  TT_RETURN_IF_ERROR(
      tt_node_alloc_op_data(it, node, sizeof *data, (void**)&data));

  int32_t input_stride = 1;
  int32_t out_dims[TT_MAX_RANK];
  int32_t out_rank = 0;
  int64_t base = 0, num_elements = 1;
  for (int32_t d = rank - 1; d >= 0; --d) {
    const int32_t size = input->dims[d];
    int32_t start = tt_load_i32(values[0] + 4 * d);
    int32_t stop = tt_load_i32(values[1] + 4 * d);
    const int32_t stride = tt_load_i32(values[2] + 4 * d);
    const bool shrink = mask_bit(shrink_mask, d);
    if (stride == 0)
      return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                          "the stride of dimension %d is 0", d);
    /* Start and stop resolved as TFLM's eval does: counted from the end
     * when negative, then clamped to [0, size] going forward or
     * [-1, size - 1] going backward. */
    if (start < 0) start += size;
    start = stride > 0 ? clamp(start, 0, size) : clamp(start, -1, size - 1);
    if (mask_bit(begin_mask, d)) start = stride > 0 ? 0 : size - 1;
    int32_t count;
    if (shrink) {
      /* TFLM writes nothing for a shrunk dimension whose begin lies
       * outside it or that steps backward, leaving the output undefined. */
      if (stride < 0 || start >= size)
        return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                            "dimension %d is shrunk, but its begin is out of "
                            "range or its stride is negative",
                            d);
      count = 1;
    } else {
      if (stop < 0) stop += size;
      stop = stride > 0 ? clamp(stop, 0, size) : clamp(stop, -1, size - 1);
      if (mask_bit(end_mask, d)) stop = stride > 0 ? size : -1;
      /* ceil((stop - start) / stride), at least 0, in exact integers. */
      const int64_t span = (int64_t)stop - start;
      const int64_t s = stride;
      count = (int32_t)(s > 0 ? (span > 0 ? (span + s - 1) / s : 0)
                              : (span < 0 ? (-span - s - 1) / -s : 0));
    }
    num_elements *= count;
    data->copy.dims[d] = count;
    /* Only dimensions walked more than once step; their stride is smaller
     * than the dimension, so the step stays inside the input. */
    data->copy.steps[d] = count > 1 ? stride * input_stride : 0;
    if (count > 0) base += (int64_t)start * input_stride;
    if (size > 0) input_stride *= size;
  }
  for (int32_t d = 0; d < rank; ++d)
    if (!mask_bit(shrink_mask, d)) out_dims[out_rank++] = data->copy.dims[d];
  TT_RETURN_IF_ERROR(
      tt_expect_shape(it, node, output, "output", out_dims, out_rank));
  if (rank == 0) { /* a scalar: its one element */
    data->copy.dims[0] = 1;
    data->copy.steps[0] = 0;
  }
  data->copy.rank = rank > 0 ? rank : 1;
  data->copy.num_elements = (int32_t)num_elements;
  data->copy.base = num_elements > 0 ? (int32_t)base : 0;
  data->element_size = tt_type_size(type);
  return TT_OK;
}

static tt_status eval(tt_interpreter* it, const tt_node* node) {
  const strided_slice_data* d =
      (const strided_slice_data*)tt_node_op_data(it, node);
  tt_strided_copy(&d->copy, d->element_size,
                  tt_tensor_data(it, tt_node_input(it, node, 0)),
                  tt_tensor_data(it, tt_node_output(it, node, 0)));
  return TT_OK;
}

const tt_kernel tt_kernel_strided_slice = {
    TT_OP_STRIDED_SLICE,
    "STRIDED_SLICE",
    TT_OPTIONS_STRIDED_SLICE,
    prepare,
    eval,
};
