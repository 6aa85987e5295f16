#ifndef TFLM_TRAINING_TT_BUILTIN_NAMES_H_
#define TFLM_TRAINING_TT_BUILTIN_NAMES_H_

#include <stdint.h>

/* The schema's name of a builtin operator code, or NULL if unknown. */
const char* tt_builtin_names_lookup(int32_t code);
/* The same, with a phrase for unknown codes, for messages. */
const char* tt_builtin_name(int32_t builtin_code);

#endif /* TFLM_TRAINING_TT_BUILTIN_NAMES_H_ */
