/* The public C API: load a .tflite model into a caller-owned arena, then
 * run it.
 *
 * Memory: nothing is allocated from the heap. tt_interpreter_init() lays
 * out everything inside the arena: first the tensor and operator tables
 * and each kernel's persistent data, then the planned activation region.
 * Arena records hold only 32-bit integers, floats and offsets (never
 * pointers), so the host build and the Cortex-M4 build use exactly the
 * same number of arena bytes for the same model. The model bytes must
 * stay alive, unchanged, for the interpreter's lifetime. */
#ifndef TFLM_TRAINING_TT_INTERPRETER_H_
#define TFLM_TRAINING_TT_INTERPRETER_H_

#include <stdbool.h>
#include <stdint.h>

#include "tt_flatbuffer.h"
#include "tt_status.h"

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
  float scale;         /* scales[0] */
  int32_t zero_point;  /* zero_points[0] */
  int32_t num_scales;
  int32_t scales_pos;  /* model position of the float scale vector */
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
  int32_t kernel_index;   /* into the kernel registry */
  int32_t version;
  int32_t options_type;   /* BuiltinOptions union tag, 0 when absent */
  tt_fb_table options;    /* valid when options_type != 0 */
  int32_t inputs_offset;  /* arena offset of num_inputs int32 tensor indices */
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

typedef struct {
  bool preserve_all_tensors; /* every tensor keeps its own bytes */
} tt_interpreter_options;

/* Validates the model, resolves every operator's kernel, prepares them and
 * plans the arena. On failure the status is returned and
 * tt_interpreter_error() says what is wrong. */
tt_status tt_interpreter_init(tt_interpreter* interpreter,
                              const uint8_t* model, uint32_t model_size,
                              uint8_t* arena, uint32_t arena_size,
                              const tt_interpreter_options* options);
tt_status tt_interpreter_invoke(tt_interpreter* interpreter);

/* The first phase of tt_interpreter_init(): validates the model, resolves
 * and prepares every operator, and sets the tensors' lifetimes, but plans
 * no activations and leaves the interpreter not ready. The trainer
 * (tt_trainer.h) continues from here with its own arena layout. */
tt_status tt_interpreter_load(tt_interpreter* interpreter,
                              const uint8_t* model, uint32_t model_size,
                              uint8_t* arena, uint32_t arena_size);

/* Copies input bytes after checking their size and type. */
tt_status tt_interpreter_set_input(tt_interpreter* interpreter, int32_t index,
                                   const void* data, uint32_t num_bytes,
                                   int32_t type);

int32_t tt_interpreter_num_inputs(const tt_interpreter* interpreter);
int32_t tt_interpreter_num_outputs(const tt_interpreter* interpreter);
int32_t tt_interpreter_input_tensor(const tt_interpreter* interpreter,
                                    int32_t index); /* -1 if out of range */
int32_t tt_interpreter_output_tensor(const tt_interpreter* interpreter,
                                     int32_t index);
const tt_tensor* tt_interpreter_tensor(const tt_interpreter* interpreter,
                                       int32_t tensor_index);
/* NULL for tensors without memory or an out-of-range index. */
const void* tt_interpreter_tensor_data(const tt_interpreter* interpreter,
                                       int32_t tensor_index);
uint32_t tt_interpreter_arena_used(const tt_interpreter* interpreter);
int32_t tt_interpreter_num_tensors(const tt_interpreter* interpreter);
const tt_error* tt_interpreter_error(const tt_interpreter* interpreter);

/* Struct sizes, so language bindings can allocate and check their mirrors. */
uint32_t tt_sizeof_interpreter(void);
uint32_t tt_sizeof_tensor(void);

#endif /* TFLM_TRAINING_TT_INTERPRETER_H_ */
