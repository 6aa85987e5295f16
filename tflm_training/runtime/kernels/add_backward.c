/* ADD and SUB backward (SUB's forward shares ADD's code in tt_elementwise.c
 * too): the identity in real values for each input (negated for SUB's
 * second), summed over the output elements it was broadcast to.
 * Nothing is saved. Clamp: the fused activation range, which includes int8
 * saturation. Input 0's gradient can be written in place when input 0 is
 * not broadcast. */
#include "kernels/common/tt_backward_helpers.h"
#include "kernels/common/tt_backward_math.h"
#include "kernels/common/tt_elementwise.h"

#define INNER (TT_MAX_RANK - 1)

/* dx1 = 0 + g instead of dx1 + g when in_place (then dx1 is dy, input 0 is
 * not broadcast, and each dy value is read before it is written). */
static void add_sub_grad(const tt_broadcast_params* p, int32_t subtract,
                         const tt_grad* dy, tt_grad* dx1, tt_grad* dx2,
                         bool in_place) {
  if (p->num_elements <= 0) return;
  if (!p->broadcast) {
    for (int32_t k = 0; k < p->num_elements; ++k) {
      const float g = tt_grad_value(dy[k]);
      if (dx2 != NULL) tt_grad_add(&dx2[k], subtract ? -g : g);
      if (dx1 != NULL) {
        dx1[k] = in_place ? tt_grad_from_float(0.0f + g)
                          : tt_grad_from_float(tt_grad_value(dx1[k]) + g);
      }
    }
    return;
  }
  /* The forward kernel's walk: output in order, an odometer over the outer
   * dimensions keeping each input's offset, the innermost one a row. */
  const int32_t inner = p->dims[INNER];
  const int32_t step1 = p->strides1[INNER];
  const int32_t step2 = p->strides2[INNER];
  int32_t index[INNER] = {0};
  int32_t offset1 = 0, offset2 = 0;
  for (int32_t done = 0; done < p->num_elements; done += inner) {
    const tt_grad* row = dy + done;
    for (int32_t k = 0; k < inner; ++k) {
      const float g = tt_grad_value(row[k]);
      if (dx2 != NULL)
        tt_grad_add(dx2 + offset2 + k * step2, subtract ? -g : g);
      if (dx1 != NULL) {
        tt_grad* at = dx1 + offset1 + k * step1;
        *at = in_place ? tt_grad_from_float(0.0f + g)
                       : tt_grad_from_float(tt_grad_value(*at) + g);
      }
    }
    for (int32_t dim = INNER - 1; dim >= 0; --dim) {
      offset1 += p->strides1[dim];
      offset2 += p->strides2[dim];
      if (++index[dim] < p->dims[dim]) break;
      offset1 -= p->strides1[dim] * p->dims[dim];
      offset2 -= p->strides2[dim] * p->dims[dim];
      index[dim] = 0;
    }
  }
}

void tt_add_sub_grad(const tt_broadcast_params* p, int32_t subtract,
                     const tt_grad* dy, tt_grad* dx1, tt_grad* dx2) {
  add_sub_grad(p, subtract, dy, dx1, dx2, false);
}

void tt_add_sub_grad_in_place(const tt_broadcast_params* p, int32_t subtract,
                              tt_grad* dy_dx1, tt_grad* dx2) {
  add_sub_grad(p, subtract, dy_dx1, dy_dx1, dx2, true);
}

static tt_status add_sub_backward_prepare(tt_interpreter* it,
                                          const tt_node* node, bool subtract,
                                          tt_backward_needs* needs) {
  tt_backward_needs_clear(needs);
  const tt_tensor* output = tt_node_output(it, node, 0);
  if (output == NULL || node->num_inputs != 2) {
    return tt_node_fail(it, node, TT_ERR_BAD_STATE,
                        "forward kernel is not prepared");
  }
  int32_t activation, act_min, act_max;
  TT_RETURN_IF_ERROR(
      tt_option_i8(it, node, subtract ? TT_SUB_ACTIVATION : TT_ADD_ACTIVATION,
                   TT_ACTIVATION_NONE, &activation));
  TT_RETURN_IF_ERROR(tt_fused_activation_range(it, node, activation, output,
                                               &act_min, &act_max));
  tt_backward_clamp(needs, act_min, act_max);
  /* Input 0 as large as the output is not broadcast: its gradient can
   * take the output gradient's place. */
  const tt_tensor* input = tt_node_input(it, node, 0);
  needs->in_place =
      input != NULL && input->num_elements == output->num_elements;
  return TT_OK;
}

static tt_status add_backward_prepare(tt_interpreter* it, const tt_node* node,
                                      const tt_layer_update* update,
                                      tt_backward_needs* needs) {
  (void)update;
  return add_sub_backward_prepare(it, node, false, needs);
}

static tt_status sub_backward_prepare(tt_interpreter* it, const tt_node* node,
                                      const tt_layer_update* update,
                                      tt_backward_needs* needs) {
  (void)update;
  return add_sub_backward_prepare(it, node, true, needs);
}

static tt_status add_sub_backward(tt_interpreter* it, const tt_node* node,
                                  const tt_backward_io* io, bool subtract) {
  if (io->input_grads[0] == NULL && io->input_grads[1] == NULL) return TT_OK;
  /* The broadcast geometry again, as the forward kernel derives it (its op
   * data is private to tt_elementwise.c); prepare checked it already. */
  tt_broadcast_params params;
  TT_RETURN_IF_ERROR(tt_broadcast_prepare(
      it, node, tt_node_input(it, node, 0), tt_node_input(it, node, 1),
      tt_node_output(it, node, 0), &params));
  if (io->in_place) {
    tt_add_sub_grad_in_place(&params, subtract ? 1 : 0, io->input_grads[0],
                             io->input_grads[1]);
  } else {
    tt_add_sub_grad(&params, subtract ? 1 : 0, io->output_grad,
                    io->input_grads[0], io->input_grads[1]);
  }
  return TT_OK;
}

static tt_status add_backward(tt_interpreter* it, const tt_node* node,
                              const tt_backward_io* io) {
  return add_sub_backward(it, node, io, false);
}

static tt_status sub_backward(tt_interpreter* it, const tt_node* node,
                              const tt_backward_io* io) {
  return add_sub_backward(it, node, io, true);
}

const tt_backward_kernel tt_backward_add = {
    TT_OP_ADD,
    false,
    add_backward_prepare,
    add_backward,
};

const tt_backward_kernel tt_backward_sub = {
    TT_OP_SUB,
    false,
    sub_backward_prepare,
    sub_backward,
};
