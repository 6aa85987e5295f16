/* The records every layer of the runtime shares: status codes and the
 * error record, FlatBuffer positions, and the interpreter with its tensor
 * and operator tables. It includes only standard headers. */
#ifndef TFLM_TRAINING_TT_RECORDS_H_
#define TFLM_TRAINING_TT_RECORDS_H_

#include <stdbool.h>
#include <stdint.h>

typedef enum {
  TT_OK = 0,
  TT_ERR_INVALID_ARGUMENT = 1, /* a caller passed something unusable */
  TT_ERR_CORRUPT_MODEL = 2,    /* the .tflite bytes are malformed */
  TT_ERR_UNSUPPORTED = 3,      /* valid model, but an op/type we do not run */
  TT_ERR_ARENA_TOO_SMALL = 4,  /* the caller's arena cannot hold the plan */
  TT_ERR_INPUT_MISMATCH = 5,   /* input data of the wrong size or type */
  TT_ERR_BAD_STATE = 6, /* call order violated (e.g. invoke before init) */
  TT_ERR_BAD_PLAN = 7,  /* training plan malformed or not for this model */
  TT_ERR_DIVERGED = 8,  /* training produced NaN / infinity */
} tt_status;

#define TT_ERROR_MESSAGE_SIZE 200

typedef struct {
  tt_status code;
  char message[TT_ERROR_MESSAGE_SIZE];
} tt_error;

/* A .tflite file and positions inside it (model/tt_flatbuffer.h). */
typedef struct {
  const uint8_t* data;
  uint32_t size;
} tt_fb_buffer;

typedef struct {
  uint32_t pos;         /* start of the table's inline data */
  uint32_t vtable;      /* start of its vtable */
  uint32_t vtable_size; /* bytes in the vtable */
  uint32_t inline_size; /* bytes of inline data the vtable declares */
} tt_fb_table;

typedef struct {
  uint32_t pos;   /* first element; 0 for an absent vector */
  uint32_t count; /* number of elements */
} tt_fb_vector;

#define TT_MAX_RANK 6
#define TT_ARENA_ALIGNMENT 16

typedef enum {
  TT_DATA_NONE = 0,  /* never read or written: gets no memory */
  TT_DATA_MODEL = 1, /* constant: lives in the model's buffers */
  TT_DATA_ARENA = 2, /* planned into the arena's activation region */
} tt_data_location;

typedef struct {
  int32_t type; /* tt_tensor_type */
  int32_t rank;
  int32_t dims[TT_MAX_RANK];
  int32_t num_elements;
  int32_t num_bytes;
  int32_t location;    /* tt_data_location */
  int32_t data_offset; /* into the model (TT_DATA_MODEL) or arena */
  /* Quantization. num_scales == 0 means the tensor carries none. */
  float scale;        /* scales[0] */
  int32_t zero_point; /* zero_points[0] */
  int32_t num_scales;
  int32_t scales_pos; /* model position of the float scale vector */
  int32_t num_zero_points;
  int32_t zero_points_pos; /* model position of the int64 zero-point vector */
  int32_t quantized_dimension;
  /* Name: model position and length of the string (no terminator). */
  int32_t name_pos;
  int32_t name_length;
  /* Lifetime in operator indices, for planning; -1 when unused. */
  int32_t first_op;
  int32_t last_op;
  int32_t intact_after_invoke; /* 1 when no later tensor reuses its bytes */
} tt_tensor;

typedef struct {
  int32_t builtin_code;
  int32_t kernel_index; /* into the kernel registry */
  int32_t version;
  int32_t options_type;  /* BuiltinOptions union tag, 0 when absent */
  tt_fb_table options;   /* valid when options_type != 0 */
  int32_t inputs_offset; /* arena offset of num_inputs int32 tensor indices */
  int32_t num_inputs;
  int32_t outputs_offset;
  int32_t num_outputs;
  int32_t op_data_offset; /* arena offset of the kernel's data, -1 if none */
} tt_node;

typedef struct tt_interpreter {
  tt_fb_buffer model;
  uint8_t* arena;           /* aligned start of the caller's arena */
  uint32_t arena_size;      /* usable bytes from `arena` */
  uint32_t persistent_used; /* bytes of tables and kernel data */
  uint32_t activations_offset;
  uint32_t activations_size;
  tt_tensor* tensors;
  int32_t num_tensors;
  tt_node* nodes;
  int32_t num_nodes;
  int32_t inputs_offset; /* arena offset of graph input tensor indices */
  int32_t num_inputs;
  int32_t outputs_offset;
  int32_t num_outputs;
  int32_t current_node; /* operator being prepared or run, for messages */
  bool ready;
  tt_error error;
} tt_interpreter;

#endif /* TFLM_TRAINING_TT_RECORDS_H_ */
