/* RESIZE_NEAREST_NEIGHBOR on [N,H,W,C] to a constant int32 [height, width],
 * as TFLM computes it: each output row (column) copies the input row
 * (column) floor(y * scale), or round() with align_corners, where scale is
 * in_size / out_size (or (in_size - 1) / (out_size - 1) with
 * align_corners), in float arithmetic; half_pixel_centers samples at
 * y + 0.5. A pure data move for INT8, INT16 and FLOAT32. */
#include <string.h>

#include "kernels/common/tt_kernel.h"
#include "kernels/common/tt_kernel_checks.h"
#include "math/tt_quant.h"
#include "model/tt_types.h"

typedef struct {
  int32_t batches;
  int32_t input_height;
  int32_t input_width;
  int32_t depth;
  int32_t output_height;
  int32_t output_width;
  int32_t align_corners;
  int32_t half_pixel_centers;
  int32_t element_size;
} resize_data;

static tt_status prepare(tt_interpreter* it, tt_node* node) {
  TT_RETURN_IF_ERROR(tt_expect_io_counts(it, node, 2, 2, 1));
  const tt_tensor* input = tt_node_input(it, node, 0);
  const tt_tensor* size = tt_node_input(it, node, 1);
  const tt_tensor* output = tt_node_output(it, node, 0);
  TT_RETURN_IF_ERROR(tt_expect_movable_io(it, node, input, output));
  TT_RETURN_IF_ERROR(tt_expect_rank(it, node, input, "input", 4));
  TT_RETURN_IF_ERROR(tt_expect_constant_i32(it, node, size, "size"));
  if (size->rank != 1 || size->num_elements != 2)
    return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                        "size must hold 2 values (height, width), it has %d",
                        size->num_elements);
  const uint8_t* values = (const uint8_t*)tt_tensor_data(it, size);
  const int32_t height = tt_load_i32(values);
  const int32_t width = tt_load_i32(values + 4);
  if (height < 0 || width < 0)
    return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                        "size %d x %d is negative", height, width);
  const int32_t expected[4] = {input->dims[0], height, width, input->dims[3]};
  TT_RETURN_IF_ERROR(tt_expect_shape(it, node, output, "output", expected, 4));
  if (output->num_elements > 0 && (input->dims[1] == 0 || input->dims[2] == 0))
    return tt_node_fail(it, node, TT_ERR_CORRUPT_MODEL,
                        "cannot resize an empty image to a non-empty one");
  bool align_corners, half_pixel_centers;
  TT_RETURN_IF_ERROR(
      tt_option_bool(it, node, TT_RESIZE_ALIGN_CORNERS, false, &align_corners));
  TT_RETURN_IF_ERROR(tt_option_bool(it, node, TT_RESIZE_HALF_PIXEL_CENTERS,
                                    false, &half_pixel_centers));
  resize_data* d;
  TT_RETURN_IF_ERROR(tt_node_alloc_op_data(it, node, sizeof *d, (void**)&d));
  d->batches = output->num_elements > 0 ? input->dims[0] : 0;
  d->input_height = input->dims[1];
  d->input_width = input->dims[2];
  d->depth = input->dims[3];
  d->output_height = height;
  d->output_width = width;
  d->align_corners = align_corners;
  d->half_pixel_centers = half_pixel_centers;
  d->element_size = tt_type_size(input->type);
  return TT_OK;
}

/* The input index that output index `value` copies, in TFLM's float
 * arithmetic. The product is never negative, so floor is truncation. */
static int32_t nearest(int32_t value, int32_t in_size, int32_t out_size,
                       const resize_data* d) {
  const float scale = (d->align_corners && out_size > 1)
                          ? (float)(in_size - 1) / (float)(out_size - 1)
                          : (float)in_size / (float)out_size;
  const float offset = d->half_pixel_centers ? 0.5f : 0.0f;
  float position = ((float)value + offset) * scale;
  if (d->align_corners) position = tt_round_float(position);
  int32_t index = position < 2147483520.0f ? (int32_t)position : in_size - 1;
  if (index > in_size - 1) index = in_size - 1;
  if (d->half_pixel_centers && index < 0) index = 0;
  return index;
}

static tt_status eval(tt_interpreter* it, const tt_node* node) {
  const resize_data* d = (const resize_data*)tt_node_op_data(it, node);
  const uint8_t* in =
      (const uint8_t*)tt_tensor_data(it, tt_node_input(it, node, 0));
  uint8_t* out = (uint8_t*)tt_tensor_data(it, tt_node_output(it, node, 0));
  const int64_t pixel_bytes = (int64_t)d->depth * d->element_size;
  const int64_t row_bytes = pixel_bytes * d->input_width;
  const int64_t image_bytes = row_bytes * d->input_height;
  for (int32_t b = 0; b < d->batches; ++b) {
    const uint8_t* image = in + b * image_bytes;
    for (int32_t y = 0; y < d->output_height; ++y) {
      const uint8_t* row =
          image + nearest(y, d->input_height, d->output_height, d) * row_bytes;
      for (int32_t x = 0; x < d->output_width; ++x) {
        const int32_t in_x = nearest(x, d->input_width, d->output_width, d);
        memcpy(out, row + in_x * pixel_bytes, (size_t)pixel_bytes);
        out += pixel_bytes;
      }
    }
  }
  return TT_OK;
}

const tt_kernel tt_kernel_resize_nearest_neighbor = {
    TT_OP_RESIZE_NEAREST_NEIGHBOR,
    "RESIZE_NEAREST_NEIGHBOR",
    TT_OPTIONS_RESIZE_NEAREST_NEIGHBOR,
    prepare,
    eval,
};
