#include "kernels/common/tt_backward_helpers.h"

#include <stddef.h>

#include "kernels/common/tt_backward_math.h"
#include "optimizer/tt_optimizer.h"

void tt_backward_needs_clear(tt_backward_needs* needs) {
  needs->saved_inputs = 0;
  needs->scratch_bytes = 0;
  needs->has_clamp = false;
  needs->clamp_min = -129;
  needs->clamp_max = 128;
  needs->in_place = false;
  needs->in_place_scratch_bytes = 0;
}

void tt_backward_clamp(tt_backward_needs* needs, int32_t clamp_min,
                       int32_t clamp_max) {
  needs->has_clamp = true;
  needs->clamp_min = clamp_min;
  needs->clamp_max = clamp_max;
}

void tt_backward_clamp_activation(tt_backward_needs* needs, int32_t act_min,
                                  int32_t act_max) {
  const int32_t lo = act_min > -128 ? act_min : -129;
  const int32_t hi = act_max < 127 ? act_max : 128;
  if (lo == -129 && hi == 128) {
    needs->has_clamp = false;
    needs->clamp_min = lo;
    needs->clamp_max = hi;
    return;
  }
  tt_backward_clamp(needs, lo, hi);
}

void tt_backward_clamp_requantize(tt_backward_needs* needs,
                                  const tt_tensor* input,
                                  const tt_tensor* output) {
  if (input->scale == output->scale &&
      input->zero_point == output->zero_point) {
    tt_backward_clamp_activation(needs, -128, 127);
  } else {
    tt_backward_clamp(needs, -128, 127);
  }
}

float tt_backward_copy_gain(const tt_tensor* input, const tt_tensor* output) {
  if (input->num_scales == 0 || output->num_scales == 0 ||
      input->scale == output->scale || !(input->scale > 0.0f)) {
    return 1.0f;
  }
  return output->scale / input->scale;
}

void tt_backward_scales(const tt_interpreter* interpreter,
                        const tt_tensor* tensor, const void** scales,
                        int32_t* step) {
  if (tensor->num_scales > 1) {
    *scales = interpreter->model.data + tensor->scales_pos;
    *step = 4;
  } else {
    *scales = &tensor->scale;
    *step = 0;
  }
}

tt_status tt_backward_prepare_update(
    tt_interpreter* it, const tt_node* node, const tt_layer_update* update,
    const tt_tensor* filter, const tt_tensor* bias, int32_t num_channels,
    int32_t weights_per_channel, tt_backward_needs* needs) {
  if (update == NULL) return TT_OK;
  if (update->kind != TT_UPDATE_BIAS && update->kind != TT_UPDATE_WEIGHTS &&
      update->kind != TT_UPDATE_LOWRANK) {
    return tt_node_fail(it, node, TT_ERR_BAD_PLAN,
                        "update kind %d is neither BIAS (0), WEIGHTS (1) nor "
                        "LOWRANK (3)",
                        update->kind);
  }
  if (update->num_channels < 1 || update->num_channels > num_channels ||
      update->channels == NULL) {
    return tt_node_fail(it, node, TT_ERR_BAD_PLAN,
                        "%d channels selected; the layer has %d",
                        update->num_channels, num_channels);
  }
  for (int32_t slot = 0; slot < update->num_channels; ++slot) {
    const int32_t channel = update->channels[slot];
    if (channel < 0 || channel >= num_channels ||
        (slot > 0 && channel <= update->channels[slot - 1])) {
      return tt_node_fail(it, node, TT_ERR_BAD_PLAN,
                          "selected channel %d (slot %d) is out of range "
                          "[0, %d) or not in increasing order",
                          channel, slot, num_channels);
    }
    const float scale = tt_tensor_channel_scale(it, filter, channel);
    if (!(scale > 0.0f && scale <= 3.40282347e38f)) {
      return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                          "weight scale of selected channel %d is not a "
                          "positive finite number",
                          channel);
    }
  }
  if (update->kind == TT_UPDATE_BIAS) {
    if (bias == NULL) {
      return tt_node_fail(it, node, TT_ERR_BAD_PLAN,
                          "the plan trains biases but the operator has none");
    }
    return TT_OK;
  }
  if (update->weights_per_channel != weights_per_channel) {
    return tt_node_fail(it, node, TT_ERR_BAD_PLAN,
                        "the update has %d weights per channel; the layer "
                        "has %d",
                        update->weights_per_channel, weights_per_channel);
  }
  const uint64_t scratch = (uint64_t)weights_per_channel * sizeof(float);
  if (scratch > UINT32_MAX / 2) {
    return tt_node_fail(it, node, TT_ERR_UNSUPPORTED,
                        "%d weights per output channel is too many",
                        weights_per_channel);
  }
  needs->saved_inputs |= 1u;
  if (needs->scratch_bytes < (uint32_t)scratch) {
    needs->scratch_bytes = (uint32_t)scratch;
  }
  return TT_OK;
}

tt_status tt_backward_update_channels(tt_interpreter* it, const tt_node* node,
                                      tt_layer_update* update,
                                      const tt_channel_layout* layout,
                                      float* scratch, tt_channel_grad_fn grad,
                                      const void* context) {
  const tt_tensor* input = tt_node_input(it, node, 0);
  const tt_tensor* filter = tt_node_input(it, node, 1);
  const tt_tensor* bias = tt_node_input(it, node, 2);
  /* Low-rank layers need every channel's weight gradient as well. */
  const bool weights =
      update->kind == TT_UPDATE_WEIGHTS || update->kind == TT_UPDATE_LOWRANK;
  int8_t* filter_data = NULL;
  int32_t* bias_data = NULL;
  if (weights) {
    if (filter->location != TT_DATA_ARENA || scratch == NULL) {
      return tt_node_fail(it, node, TT_ERR_BAD_STATE,
                          "weights to train need a RAM copy and scratch");
    }
    filter_data = (int8_t*)tt_tensor_data(it, filter);
  }
  if (bias != NULL) {
    uint8_t* bytes = (uint8_t*)tt_tensor_data(it, bias);
    if (bias->location != TT_DATA_ARENA || bytes == NULL ||
        ((uintptr_t)bytes & 3u) != 0) {
      return tt_node_fail(it, node, TT_ERR_BAD_STATE,
                          "biases to train need an aligned RAM copy");
    }
    bias_data = (int32_t*)(void*)bytes;
  }
  float* weight_grad = weights ? scratch : NULL;
  for (int32_t slot = 0; slot < update->num_channels; ++slot) {
    const int32_t channel = update->channels[slot];
    float bias_grad = 0.0f;
    grad(context, channel, weight_grad, &bias_grad);
    tt_channel_params params;
    params.weights =
        weights ? filter_data + channel * layout->channel_step : NULL;
    params.weight_stride = layout->weight_stride;
    params.bias = bias_data != NULL ? bias_data + channel : NULL;
    params.weight_scale = tt_tensor_channel_scale(it, filter, channel);
    params.bias_scale = params.weight_scale * input->scale;
    TT_RETURN_IF_ERROR(
        tt_update_channel(update, slot, &params, weight_grad, bias_grad));
  }
  return TT_OK;
}

tt_status tt_backward_unary_tensors(tt_interpreter* it, const tt_node* node,
                                    const tt_tensor** input,
                                    const tt_tensor** output) {
  *input = tt_node_input(it, node, 0);
  *output = tt_node_output(it, node, 0);
  if (*input == NULL || *output == NULL ||
      (*input)->num_elements != (*output)->num_elements) {
    return tt_node_fail(it, node, TT_ERR_BAD_STATE,
                        "forward kernel is not prepared");
  }
  return TT_OK;
}

/* dx = or += gain * dy over input 0's elements. */
static tt_status scaled_grad(tt_interpreter* it, const tt_node* node,
                             const tt_backward_io* io, float gain) {
  if (io->input_grads[0] == NULL) return TT_OK;
  const int32_t count = tt_node_input(it, node, 0)->num_elements;
  if (io->in_place) {
    tt_grad_scaled_write(count, gain, io->output_grad, io->input_grads[0]);
  } else {
    tt_grad_scaled_add(count, gain, io->output_grad, io->input_grads[0]);
  }
  return TT_OK;
}

tt_status tt_backward_copy_grad(tt_interpreter* it, const tt_node* node,
                                const tt_backward_io* io) {
  return scaled_grad(it, node, io,
                     tt_backward_copy_gain(tt_node_input(it, node, 0),
                                           tt_node_output(it, node, 0)));
}

tt_status tt_backward_identity_grad(tt_interpreter* it, const tt_node* node,
                                    const tt_backward_io* io) {
  return scaled_grad(it, node, io, 1.0f);
}

tt_status tt_backward_prepare_layer(tt_interpreter* it, const tt_node* node,
                                    const tt_layer_update* update,
                                    const tt_layer_backward* layer,
                                    tt_backward_needs* needs) {
  tt_backward_needs_clear(needs);
  const void* op_data = tt_node_op_data(it, node);
  if (op_data == NULL || node->num_inputs < 2) {
    return tt_node_fail(it, node, TT_ERR_BAD_STATE,
                        "forward kernel is not prepared");
  }
  tt_layer_shape shape;
  layer->shape(op_data, &shape);
  tt_backward_clamp(needs, shape.act_min, shape.act_max);
  return tt_backward_prepare_update(
      it, node, update, tt_node_input(it, node, 1), tt_node_input(it, node, 2),
      shape.num_channels, shape.weights_per_channel, needs);
}

static tt_status update_layer(tt_interpreter* it, const tt_node* node,
                              const tt_backward_io* io,
                              const tt_layer_backward* layer,
                              const void* op_data, const int8_t* input_data) {
  if (io->update == NULL) return TT_OK;
  const tt_tensor* input = tt_node_input(it, node, 0);
  if (io->update->kind != TT_UPDATE_BIAS && input_data == NULL) {
    return tt_node_fail(it, node, TT_ERR_BAD_STATE,
                        "the saved input has no memory");
  }
  tt_layer_shape shape;
  layer->shape(op_data, &shape);
  const tt_layer_grad_context context = {op_data, input_data, input->zero_point,
                                         input->scale, io->output_grad};
  return tt_backward_update_channels(it, node, io->update, &shape.layout,
                                     io->scratch, layer->channel_grad,
                                     &context);
}

tt_status tt_backward_layer(tt_interpreter* it, const tt_node* node,
                            const tt_backward_io* io,
                            const tt_layer_backward* layer) {
  const void* op_data = tt_node_op_data(it, node);
  const tt_tensor* filter = tt_node_input(it, node, 1);
  const int8_t* filter_data = (const int8_t*)tt_tensor_data(it, filter);
  const int8_t* input_data =
      (const int8_t*)tt_tensor_data(it, tt_node_input(it, node, 0));
  if (op_data == NULL || filter_data == NULL || io->output_grad == NULL) {
    return tt_node_fail(it, node, TT_ERR_BAD_STATE,
                        "backward has no filter or output gradient");
  }
  const bool in_place = io->in_place && io->input_grads[0] != NULL;
  if (in_place &&
      (layer->input_grad_in_place == NULL ||
       (io->update != NULL && io->update->kind != TT_UPDATE_BIAS))) {
    return tt_node_fail(it, node, TT_ERR_BAD_STATE,
                        "its input gradient cannot be written in place");
  }
  if (in_place) {
    TT_RETURN_IF_ERROR(update_layer(it, node, io, layer, op_data, input_data));
  }
  if (io->input_grads[0] != NULL) {
    const void* scales;
    int32_t step;
    tt_backward_scales(it, filter, &scales, &step);
    if (in_place) {
      layer->input_grad_in_place(op_data, filter_data, scales, step,
                                 io->input_grads[0], io->scratch);
      return TT_OK;
    }
    layer->input_grad(op_data, filter_data, scales, step, io->output_grad,
                      io->input_grads[0]);
  }
  return update_layer(it, node, io, layer, op_data, input_data);
}

static tt_status find_node(tt_interpreter* it, int32_t node_index,
                           const tt_node** node,
                           const tt_backward_kernel** kernel) {
  if (it == NULL || !it->ready) return TT_ERR_BAD_STATE;
  if (node_index < 0 || node_index >= it->num_nodes) {
    return tt_error_set(&it->error, TT_ERR_INVALID_ARGUMENT,
                        "operator %d does not exist (the model has %d)",
                        node_index, it->num_nodes);
  }
  *node = &it->nodes[node_index];
  *kernel = tt_backward_find((*node)->builtin_code);
  if (*kernel == NULL) {
    return tt_node_fail(it, *node, TT_ERR_UNSUPPORTED,
                        "has no backward kernel");
  }
  return TT_OK;
}

tt_status tt_backward_prepare_node(tt_interpreter* it, int32_t node_index,
                                   const tt_layer_update* update,
                                   tt_backward_needs* needs) {
  const tt_node* node;
  const tt_backward_kernel* kernel;
  TT_RETURN_IF_ERROR(find_node(it, node_index, &node, &kernel));
  tt_backward_needs_clear(needs);
  return kernel->prepare(it, node, update, needs);
}

tt_status tt_backward_run_node(tt_interpreter* it, int32_t node_index,
                               const tt_backward_io* io) {
  const tt_node* node;
  const tt_backward_kernel* kernel;
  TT_RETURN_IF_ERROR(find_node(it, node_index, &node, &kernel));
  return kernel->backward(it, node, io);
}
