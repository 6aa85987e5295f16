#ifndef TFLM_TRAINING_TT_BUILTIN_NAMES_H_
#define TFLM_TRAINING_TT_BUILTIN_NAMES_H_

#include <stdint.h>

/* The schema's name of a builtin operator code, or NULL if unknown. */
const char* tt_builtin_names_lookup(int32_t code);

#endif /* TFLM_TRAINING_TT_BUILTIN_NAMES_H_ */
