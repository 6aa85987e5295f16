#include "kernels/common/tt_pool_params.h"

#include "kernels/common/tt_kernel_checks.h"
#include "math/tt_quant.h"

static tt_status read_window(tt_interpreter* it, const tt_node* node,
                             const char* axis, int32_t padding, int32_t in_size,
                             int32_t filter, int32_t stride, int32_t* out_size,
                             int32_t* pad) {
  if (stride < 1 || filter < 1)
    return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                        "%s stride %d and filter size %d must both be at "
                        "least 1",
                        axis, stride, filter);
  *out_size = tt_window_output_size(padding, in_size, filter, stride, 1);
  if (*out_size < 0)
    return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                        "%s filter size %d does not fit the input size %d",
                        axis, filter, in_size);
  *pad = tt_window_padding(in_size, filter, stride, 1, *out_size);
  return TT_OK;
}

tt_status tt_pool_prepare(tt_interpreter* it, const tt_node* node,
                          tt_pool_params* p) {
  TT_RETURN_IF_ERROR(tt_expect_io_counts(it, node, 1, 1, 1));
  const tt_tensor* input = tt_node_input(it, node, 0);
  const tt_tensor* output = tt_node_output(it, node, 0);
  TT_RETURN_IF_ERROR(tt_expect_int8_per_tensor(it, node, input, "input"));
  TT_RETURN_IF_ERROR(tt_expect_int8_per_tensor(it, node, output, "output"));
  TT_RETURN_IF_ERROR(tt_expect_rank(it, node, input, "input", 4));

  /* TFLM pools in the input's quantized domain: it insists the output
   * uses the same parameters (scales within 1e-6). */
  float scale_diff = input->scale - output->scale;
  if (scale_diff < 0.0f) scale_diff = -scale_diff;
  if (!((double)scale_diff <= 1.0e-6) ||
      input->zero_point != output->zero_point)
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "input and output must share scale and zero point "
                        "(zero points %d and %d)",
                        input->zero_point, output->zero_point);

  int32_t padding, activation;
  TT_RETURN_IF_ERROR(
      tt_option_i8(it, node, TT_POOL_PADDING, TT_PADDING_SAME, &padding));
  TT_RETURN_IF_ERROR(
      tt_option_i32(it, node, TT_POOL_STRIDE_W, 0, &p->stride_width));
  TT_RETURN_IF_ERROR(
      tt_option_i32(it, node, TT_POOL_STRIDE_H, 0, &p->stride_height));
  TT_RETURN_IF_ERROR(
      tt_option_i32(it, node, TT_POOL_FILTER_W, 0, &p->filter_width));
  TT_RETURN_IF_ERROR(
      tt_option_i32(it, node, TT_POOL_FILTER_H, 0, &p->filter_height));
  TT_RETURN_IF_ERROR(tt_option_i8(it, node, TT_POOL_ACTIVATION,
                                  TT_ACTIVATION_NONE, &activation));
  if (padding != TT_PADDING_SAME && padding != TT_PADDING_VALID)
    return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                        "padding %d is neither SAME nor VALID", padding);

  p->batches = input->dims[0];
  p->input_height = input->dims[1];
  p->input_width = input->dims[2];
  p->depth = input->dims[3];
  TT_RETURN_IF_ERROR(read_window(it, node, "height", padding, p->input_height,
                                 p->filter_height, p->stride_height,
                                 &p->output_height, &p->padding_height));
  TT_RETURN_IF_ERROR(read_window(it, node, "width", padding, p->input_width,
                                 p->filter_width, p->stride_width,
                                 &p->output_width, &p->padding_width));
  const int32_t expected[4] = {p->batches, p->output_height, p->output_width,
                               p->depth};
  TT_RETURN_IF_ERROR(tt_expect_shape(it, node, output, "output", expected, 4));

  if (!tt_activation_range_quantized(activation, output->scale,
                                     output->zero_point, -128, 127,
                                     &p->activation_min, &p->activation_max))
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "fused activation %d is not supported", activation);
  return TT_OK;
}

void tt_pool_window(const tt_pool_params* p, int32_t out_y, int32_t out_x,
                    int32_t* in_y_origin, int32_t* in_x_origin,
                    int32_t* y_start, int32_t* y_end, int32_t* x_start,
                    int32_t* x_end) {
  /* Prepare checked the output size against these strides, so the origins
   * lie within [-padding, input size); the ends are clamped in 64 bits
   * because input size + padding may exceed int32. */
  const int32_t oy = out_y * p->stride_height - p->padding_height;
  const int32_t ox = out_x * p->stride_width - p->padding_width;
  const int64_t y_limit = (int64_t)p->input_height - oy;
  const int64_t x_limit = (int64_t)p->input_width - ox;
  *in_y_origin = oy;
  *in_x_origin = ox;
  *y_start = oy < 0 ? -oy : 0;
  *x_start = ox < 0 ? -ox : 0;
  *y_end = (int32_t)(y_limit < p->filter_height ? y_limit : p->filter_height);
  *x_end = (int32_t)(x_limit < p->filter_width ? x_limit : p->filter_width);
}
