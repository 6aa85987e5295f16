/* Prepare-time checks and unaligned loads shared by the int8 kernels,
 * on top of the generic ones in tt_kernel.h. */
#ifndef TFLM_TRAINING_TT_KERNEL_CHECKS_H_
#define TFLM_TRAINING_TT_KERNEL_CHECKS_H_

#include <string.h>

#include "kernels/common/tt_kernel.h"

/* Room for "[d0,d1,...]" with TT_MAX_RANK dimensions of up to 11
 * characters each, commas, brackets and the terminator. */
#define TT_SHAPE_TEXT_SIZE (3 + TT_MAX_RANK * 12)

/* Writes "[d0,d1,...]" into text (TT_SHAPE_TEXT_SIZE bytes); returns text. */
const char* tt_shape_text(const int32_t* dims, int32_t rank, char* text);

/* Writes "<prefix> <index>" (e.g. "input 3") into text, which needs
 * TT_ROLE_TEXT_SIZE bytes, for a prefix of at most 20 characters. */
#define TT_ROLE_TEXT_SIZE 40
const char* tt_role_text(const char* prefix, int32_t index, char* text);

/* An int8 activation tensor: type INT8 (else TT_ERR_UNSUPPORTED), one
 * positive finite scale (per-channel is unsupported) and a zero point in
 * [-128, 127]. */
tt_status tt_expect_int8_per_tensor(tt_interpreter* interpreter,
                                    const tt_node* node,
                                    const tt_tensor* tensor, const char* role);

/* The tensor's shape is exactly dims[0..rank); TT_ERR_CORRUPT_MODEL with
 * both shapes in the message otherwise. */
tt_status tt_expect_shape(tt_interpreter* interpreter, const tt_node* node,
                          const tt_tensor* tensor, const char* role,
                          const int32_t* dims, int32_t rank);

/* An op that moves elements without arithmetic: input INT8, INT16 or
 * FLOAT32 (else TT_ERR_UNSUPPORTED), output of the same type. */
tt_status tt_expect_movable_io(tt_interpreter* interpreter, const tt_node* node,
                               const tt_tensor* input, const tt_tensor* output);

/* A constant INT32 tensor whose elements a kernel reads at prepare. */
tt_status tt_expect_constant_i32(tt_interpreter* interpreter,
                                 const tt_node* node, const tt_tensor* tensor,
                                 const char* role);

/* Reads a byte-sized option field (an enum such as Padding or
 * ActivationFunctionType), which tt_option_i32 cannot: it reads four bytes.
 * The default applies when the node has no options or lacks the field. */
tt_status tt_option_i8(tt_interpreter* interpreter, const tt_node* node,
                       uint32_t field, int8_t default_value, int32_t* out);

/* Model constants may sit at any byte offset: read them with these. */
static inline int32_t tt_load_i32(const void* p) {
  int32_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline float tt_load_f32(const void* p) {
  float v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline void tt_store_f32(void* p, float v) { memcpy(p, &v, sizeof v); }

#endif /* TFLM_TRAINING_TT_KERNEL_CHECKS_H_ */
