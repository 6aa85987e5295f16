/* MEAN, int8, over the axes of a constant int32 tensor.
 *
 * TFLM sums each output's inputs in int32, subtracts zero_point * count
 * and rescales with input_scale / output_scale folded together with
 * 1 / count into one fixed-point multiplier (reference QuantizedMeanOrSum).
 * It takes that one path whatever the quantization or the axes. Integer
 * sums do not depend on order, so this kernel visits each output's inputs
 * in turn and needs no accumulator buffer. */
#include <string.h>

#include "kernels/common/tt_kernel.h"
#include "kernels/common/tt_kernel_checks.h"
#include "math/tt_fixedpoint.h"
#include "math/tt_quant.h"

typedef struct {
  /* Input dimensions split into kept (outer) and reduced (inner) ones,
   * each with its element stride in the input. */
  int32_t num_kept;
  int32_t kept_dims[TT_MAX_RANK];
  int32_t kept_strides[TT_MAX_RANK];
  int32_t num_reduced;
  int32_t reduced_dims[TT_MAX_RANK];
  int32_t reduced_strides[TT_MAX_RANK];
  int32_t num_outputs;
  int32_t count; /* inputs per output */
  int32_t input_empty;
  int32_t input_zero_point;
  int32_t output_zero_point;
  int32_t multiplier;
  int32_t shift;
} mean_data;

/* Marks the reduced dimensions, resolving negative axes and ignoring
 * repeats as TFLM does. */
static tt_status resolve_axes(tt_interpreter* it, const tt_node* node,
                              const tt_tensor* input, const tt_tensor* axis,
                              bool reduced[TT_MAX_RANK]) {
  for (int32_t d = 0; d < TT_MAX_RANK; ++d) reduced[d] = false;
  if (input->rank == 0) return TT_OK; /* TFLM ignores the axes of a scalar */
  const uint8_t* values = (const uint8_t*)tt_tensor_data(it, axis);
  for (int32_t i = 0; i < axis->num_elements; ++i) {
    const int32_t value = tt_load_i32(values + 4 * i);
    const int32_t d = value < 0 ? value + input->rank : value;
    if (d < 0 || d >= input->rank)
      return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                          "axis %d is out of range for an input of rank %d",
                          value, input->rank);
    reduced[d] = true;
  }
  return TT_OK;
}

/* Folds 1 / count into the rescaling multiplier as TFLM does: shift the
 * multiplier left by floor(log2(count)), at most down to a final shift of
 * -31, and divide it by count with truncation. */
static void fold_count(int32_t count, int32_t* multiplier, int32_t* shift) {
  int32_t log2_count = 31 - tt_count_leading_zeros_u32((uint32_t)count);
  if (log2_count > 31 + *shift) log2_count = 31 + *shift;
  *multiplier =
      (int32_t)(((int64_t)*multiplier << log2_count) / (int64_t)count);
  *shift -= log2_count;
}

/* Splits the input dimensions into kept and reduced lists, outermost
 * first, with their strides, and sets the count of inputs per output. */
static void split_dims(const tt_tensor* input, const bool* reduced,
                       mean_data* data) {
  int32_t strides[TT_MAX_RANK];
  int32_t stride = 1;
  for (int32_t d = input->rank - 1; d >= 0; --d) {
    strides[d] = stride;
    stride *= input->dims[d];
  }
  data->count = 1;
  for (int32_t d = 0; d < input->rank; ++d) {
    if (reduced[d]) {
      data->reduced_dims[data->num_reduced] = input->dims[d];
      data->reduced_strides[data->num_reduced++] = strides[d];
      data->count *= input->dims[d];
    } else {
      data->kept_dims[data->num_kept] = input->dims[d];
      data->kept_strides[data->num_kept++] = strides[d];
    }
  }
}

static tt_status prepare(tt_interpreter* it, tt_node* node) {
  TT_RETURN_IF_ERROR(tt_expect_io_counts(it, node, 2, 2, 1));
  const tt_tensor* input = tt_node_input(it, node, 0);
  const tt_tensor* axis = tt_node_input(it, node, 1);
  const tt_tensor* output = tt_node_output(it, node, 0);
  TT_RETURN_IF_ERROR(tt_expect_int8_per_tensor(it, node, input, "input"));
  TT_RETURN_IF_ERROR(tt_expect_int8_per_tensor(it, node, output, "output"));
  TT_RETURN_IF_ERROR(tt_expect_constant_i32(it, node, axis, "axis"));
  bool keep_dims;
  TT_RETURN_IF_ERROR(
      tt_option_bool(it, node, TT_REDUCER_KEEP_DIMS, false, &keep_dims));
  bool reduced[TT_MAX_RANK];
  TT_RETURN_IF_ERROR(resolve_axes(it, node, input, axis, reduced));

  mean_data* data;
  TT_RETURN_IF_ERROR(
      tt_node_alloc_op_data(it, node, sizeof *data, (void**)&data));
  int32_t expected[TT_MAX_RANK];
  int32_t expected_rank = 0;
  for (int32_t d = 0; d < input->rank; ++d) {
    if (!reduced[d]) {
      expected[expected_rank++] = input->dims[d];
    } else if (keep_dims) {
      expected[expected_rank++] = 1;
    }
  }
  TT_RETURN_IF_ERROR(
      tt_expect_shape(it, node, output, "output", expected, expected_rank));
  /* With no zero dimension every product below is at most num_elements. */
  if (input->num_elements > 0) split_dims(input, reduced, data);

  data->num_outputs = output->num_elements;
  data->input_empty = input->num_elements == 0;
  data->input_zero_point = input->zero_point;
  data->output_zero_point = output->zero_point;
  if (!tt_quantize_multiplier((double)input->scale / (double)output->scale,
                              &data->multiplier, &data->shift) ||
      data->shift > 31)
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "input scale / output scale is too large to rescale");
  /* An empty input makes TFLM write zeros, whatever the count. */
  if (!data->input_empty)
    fold_count(data->count, &data->multiplier, &data->shift);
  return TT_OK;
}

static tt_status eval(tt_interpreter* it, const tt_node* node) {
  const mean_data* d = (const mean_data*)tt_node_op_data(it, node);
  const int8_t* input =
      (const int8_t*)tt_tensor_data(it, tt_node_input(it, node, 0));
  int8_t* output = (int8_t*)tt_tensor_data(it, tt_node_output(it, node, 0));
  if (d->input_empty) {
    if (d->num_outputs > 0) memset(output, 0, (size_t)d->num_outputs);
    return TT_OK;
  }
  const int32_t last = d->num_reduced - 1;
  const int32_t inner = last >= 0 ? d->reduced_dims[last] : 1;
  const int32_t inner_stride = last >= 0 ? d->reduced_strides[last] : 0;
  /* zero_point * count, modulo 2^32 like TFLM's int32 sum. */
  const uint32_t zero_point_sum =
      (uint32_t)((int64_t)d->input_zero_point * d->count);
  int32_t kept_index[TT_MAX_RANK] = {0};
  int32_t base = 0;
  for (int32_t o = 0; o < d->num_outputs; ++o) {
    uint32_t sum = 0;
    int32_t reduced_index[TT_MAX_RANK] = {0};
    int32_t offset = base;
    for (int32_t done = 0; done < d->count; done += inner) {
      for (int32_t k = 0; k < inner; ++k)
        sum += (uint32_t)(int32_t)input[offset + k * inner_stride];
      for (int32_t r = last - 1; r >= 0; --r) {
        offset += d->reduced_strides[r];
        if (++reduced_index[r] < d->reduced_dims[r]) break;
        offset -= d->reduced_strides[r] * d->reduced_dims[r];
        reduced_index[r] = 0;
      }
    }
    const int32_t centered = (int32_t)(sum - zero_point_sum);
    const int32_t scaled =
        tt_multiply_by_quantized_multiplier(centered, d->multiplier, d->shift);
    const int32_t value =
        (int32_t)((uint32_t)scaled + (uint32_t)d->output_zero_point);
    output[o] = (int8_t)tt_clamp_i32(value, -128, 127);
    for (int32_t k = d->num_kept - 1; k >= 0; --k) {
      base += d->kept_strides[k];
      if (++kept_index[k] < d->kept_dims[k]) break;
      base -= d->kept_strides[k] * d->kept_dims[k];
      kept_index[k] = 0;
    }
  }
  return TT_OK;
}

const tt_kernel tt_kernel_mean = {
    TT_OP_MEAN, "MEAN", TT_OPTIONS_REDUCER, prepare, eval,
};
