/* Plans where every activation tensor lives in the arena.
 *
 * Lifetimes come from the operator order: a tensor lives from the operator
 * that writes it (or the start, for graph inputs) to the last operator that
 * reads it (or the end, for graph outputs). Tensors are then placed largest
 * first at the lowest offset that no tensor with an overlapping lifetime
 * occupies, as TFLM's greedy planner does. */
#ifndef TFLM_TRAINING_TT_ACTIVATION_PLANNER_H_
#define TFLM_TRAINING_TT_ACTIVATION_PLANNER_H_

#include <stdbool.h>

#include "tt_records.h"
#include "tt_status.h"

/* Sets first_op/last_op and marks the tensors that need arena memory;
 * fails on graphs that read a tensor before writing it or write one twice. */
tt_status tt_plan_lifetimes(tt_interpreter* interpreter);

/* Assigns data_offset of every arena tensor after the persistent records
 * and sets activations_offset/activations_size. With preserve_all_tensors
 * no two tensors share bytes. */
tt_status tt_plan_activations(tt_interpreter* interpreter,
                              bool preserve_all_tensors);

#endif /* TFLM_TRAINING_TT_ACTIVATION_PLANNER_H_ */
