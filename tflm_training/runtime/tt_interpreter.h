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

#include "tt_records.h"
#include "tt_status.h"

typedef struct {
  bool preserve_all_tensors; /* every tensor keeps its own bytes */
} tt_interpreter_options;

/* Validates the model, resolves every operator's kernel, prepares them and
 * plans the arena. On failure the status is returned and
 * tt_interpreter_error() says what is wrong. */
tt_status tt_interpreter_init(tt_interpreter* interpreter, const uint8_t* model,
                              uint32_t model_size, uint8_t* arena,
                              uint32_t arena_size,
                              const tt_interpreter_options* options);
tt_status tt_interpreter_invoke(tt_interpreter* interpreter);

/* The first phase of tt_interpreter_init(): validates the model, resolves
 * and prepares every operator, and sets the tensors' lifetimes, but plans
 * no activations and leaves the interpreter not ready. The trainer
 * (tt_trainer.h) continues from here with its own arena layout. */
tt_status tt_interpreter_load(tt_interpreter* interpreter, const uint8_t* model,
                              uint32_t model_size, uint8_t* arena,
                              uint32_t arena_size);

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
