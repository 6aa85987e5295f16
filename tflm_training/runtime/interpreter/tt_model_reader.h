/* Validates a .tflite flatbuffer and indexes its single subgraph into the
 * interpreter's tensor and operator tables (allocated in the arena). Every
 * offset, length and index is checked here, so kernels can trust what the
 * tables say about where data lives. */
#ifndef TFLM_TRAINING_TT_MODEL_READER_H_
#define TFLM_TRAINING_TT_MODEL_READER_H_

#include "tt_interpreter.h"

tt_status tt_model_read(tt_interpreter* interpreter);

#endif /* TFLM_TRAINING_TT_MODEL_READER_H_ */
