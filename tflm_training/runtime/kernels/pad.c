/* PAD and PADV2, int8, up to 5 dimensions (TFLM's limit). The padding
 * amounts come from a constant int32 [rank, 2] tensor; the fill value is
 * the output zero point, or PADV2's (either op's, as in TFLM) optional
 * third input, which must share the output's quantization. */
#include <string.h>

#include "kernels/common/tt_kernel.h"
#include "kernels/common/tt_kernel_checks.h"

#define PAD_MAX_RANK 5
#define PAD_OUTER (PAD_MAX_RANK - 1)

typedef struct {
  /* Shapes and padding right-aligned to PAD_MAX_RANK dimensions. */
  int32_t input_dims[PAD_MAX_RANK];
  int32_t output_dims[PAD_MAX_RANK];
  int32_t before[PAD_MAX_RANK];
  int32_t after[PAD_MAX_RANK];
  int32_t num_rows; /* output elements / innermost output dimension */
  int32_t pad_value;
  int32_t pad_value_from_input; /* a non-constant third input */
} pad_data;

static tt_status prepare_pad_value(tt_interpreter* it, const tt_node* node,
                                   const tt_tensor* output, pad_data* data) {
  const tt_tensor* value = tt_node_input(it, node, 2);
  if (value == NULL) {
    data->pad_value = output->zero_point;
    return TT_OK;
  }
  TT_RETURN_IF_ERROR(
      tt_expect_type(it, node, value, "constant value", TT_TYPE_INT8));
  if (value->num_elements != 1)
    return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                        "constant value must have one element, has %d",
                        value->num_elements);
  if (value->num_scales == 0 || value->scale != output->scale ||
      value->zero_point != output->zero_point)
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "constant value must have the output's scale and "
                        "zero point");
  if (value->location == TT_DATA_MODEL) {
    data->pad_value = *(const int8_t*)tt_tensor_data(it, value);
  } else {
    data->pad_value_from_input = 1;
  }
  return TT_OK;
}

static tt_status prepare(tt_interpreter* it, tt_node* node) {
  TT_RETURN_IF_ERROR(tt_expect_io_counts(it, node, 2, 3, 1));
  const tt_tensor* input = tt_node_input(it, node, 0);
  const tt_tensor* paddings = tt_node_input(it, node, 1);
  const tt_tensor* output = tt_node_output(it, node, 0);
  TT_RETURN_IF_ERROR(tt_expect_int8_per_tensor(it, node, input, "input"));
  TT_RETURN_IF_ERROR(tt_expect_int8_per_tensor(it, node, output, "output"));
  TT_RETURN_IF_ERROR(tt_expect_constant_i32(it, node, paddings, "paddings"));
  const int32_t rank = input->rank;
  if (rank > PAD_MAX_RANK)
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "input has rank %d; at most %d is supported", rank,
                        PAD_MAX_RANK);
  if (paddings->num_elements != 2 * rank)
    return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                        "paddings has %d values, expected 2 per input "
                        "dimension (%d)",
                        paddings->num_elements, 2 * rank);
  pad_data* data;
  TT_RETURN_IF_ERROR(
      tt_node_alloc_op_data(it, node, sizeof *data, (void**)&data));

  const uint8_t* amounts = (const uint8_t*)tt_tensor_data(it, paddings);
  int32_t expected[PAD_MAX_RANK];
  const int32_t lead = PAD_MAX_RANK - rank;
  for (int32_t d = 0; d < PAD_MAX_RANK; ++d) {
    data->input_dims[d] = 1;
    data->output_dims[d] = 1;
  }
  for (int32_t d = 0; d < rank; ++d) {
    const int32_t before = tt_load_i32(amounts + 8 * d);
    const int32_t after = tt_load_i32(amounts + 8 * d + 4);
    if (before < 0 || after < 0)
      return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                          "negative padding (%d, %d) in dimension %d is not "
                          "supported",
                          before, after, d);
    const int64_t size = (int64_t)input->dims[d] + before + after;
    if (size > INT32_MAX)
      return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                          "padded dimension %d does not fit int32", d);
    expected[d] = (int32_t)size;
    data->input_dims[lead + d] = input->dims[d];
    data->output_dims[lead + d] = expected[d];
    data->before[lead + d] = before;
    data->after[lead + d] = after;
  }
  TT_RETURN_IF_ERROR(
      tt_expect_shape(it, node, output, "output", expected, rank));
  const int32_t width = data->output_dims[PAD_OUTER];
  data->num_rows = width > 0 ? output->num_elements / width : 0;
  return prepare_pad_value(it, node, output, data);
}

static tt_status eval(tt_interpreter* it, const tt_node* node) {
  const pad_data* d = (const pad_data*)tt_node_op_data(it, node);
  const int8_t* in =
      (const int8_t*)tt_tensor_data(it, tt_node_input(it, node, 0));
  int8_t* out = (int8_t*)tt_tensor_data(it, tt_node_output(it, node, 0));
  int32_t value = d->pad_value;
  if (d->pad_value_from_input)
    value = *(const int8_t*)tt_tensor_data(it, tt_node_input(it, node, 2));

  /* Output rows along the innermost dimension, in order; input rows are
   * consumed in order by the rows inside the padded box. */
  const int32_t width = d->output_dims[PAD_OUTER];
  const int32_t in_width = d->input_dims[PAD_OUTER];
  const int32_t before = d->before[PAD_OUTER];
  const int32_t after = d->after[PAD_OUTER];
  const int32_t rows = d->num_rows;
  int32_t index[PAD_OUTER] = {0};
  for (int32_t r = 0; r < rows; ++r) {
    bool inside = true;
    for (int32_t k = 0; k < PAD_OUTER; ++k)
      if (index[k] < d->before[k] ||
          index[k] >= d->before[k] + d->input_dims[k])
        inside = false;
    if (inside) {
      memset(out, value, (size_t)before);
      memcpy(out + before, in, (size_t)in_width);
      memset(out + before + in_width, value, (size_t)after);
      in += in_width;
    } else {
      memset(out, value, (size_t)width);
    }
    out += width;
    for (int32_t k = PAD_OUTER - 1; k >= 0; --k) {
      if (++index[k] < d->output_dims[k]) break;
      index[k] = 0;
    }
  }
  return TT_OK;
}

const tt_kernel tt_kernel_pad = {
    TT_OP_PAD, "PAD", TT_OPTIONS_PAD, prepare, eval,
};

const tt_kernel tt_kernel_padv2 = {
    TT_OP_PADV2, "PADV2", TT_OPTIONS_PADV2, prepare, eval,
};
