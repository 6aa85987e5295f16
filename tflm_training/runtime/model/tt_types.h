/* The .tflite tensor types: element sizes and names. */
#ifndef TFLM_TRAINING_TT_TYPES_H_
#define TFLM_TRAINING_TT_TYPES_H_

#include <stdint.h>

/* Bytes per element, 0 for types the runtime does not hold. */
int32_t tt_type_size(int32_t type);
/* The schema's name of a type, for messages. */
const char* tt_type_name(int32_t type);

#endif /* TFLM_TRAINING_TT_TYPES_H_ */
