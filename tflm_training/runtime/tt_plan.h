/* The training plan: which layers train and how, written by Python
 * (tflm_training/plan.py) and validated here against the model.
 *
 * Binary format, version 1. Little-endian; every field is 4 bytes (int32
 * unless marked float32):
 *
 *   offset  field
 *        0  magic            "TTPL"
 *        4  version          1
 *        8  total_size       bytes of the whole plan
 *       12  crc32            CRC-32 (IEEE 802.3, as zlib.crc32) of bytes
 *                            [16, total_size)
 *       16  model_crc32      CRC-32 of the .tflite file the plan is for
 *       20  num_tensors      of that model's subgraph (cross-check)
 *       24  num_operators    of that model's subgraph (cross-check)
 *       28  logits_tensor    int8 tensor the loss reads (softmax input)
 *       32  num_classes      elements of logits_tensor
 *       36  batch_size       samples per update (>= 1)
 *       40  optimizer        0 = SGD
 *       44  learning_rate    float32, > 0
 *       48  momentum         float32 in [0, 1)
 *       52  flags            bit 0: QAS (quantization-aware scaling) on
 *       56  num_layers       entries in the layer table
 *       60  reserved         0
 *       64  layer table      num_layers entries of 4 fields:
 *                              operator_index  (ascending, unique)
 *                              update_kind     TT_UPDATE_*
 *                              num_channels    selected output channels
 *                              lr_scale        float32, > 0
 *           channel lists    for each layer in order, num_channels
 *                            ascending output-channel indices
 *
 * total_size must equal 64 + 16 * num_layers + 4 * (sum of num_channels). */
#ifndef TFLM_TRAINING_TT_PLAN_H_
#define TFLM_TRAINING_TT_PLAN_H_

#include <stdint.h>

#include "tt_interpreter.h"

#define TT_PLAN_MAGIC "TTPL"
#define TT_PLAN_VERSION 1
#define TT_PLAN_HEADER_SIZE 64
#define TT_PLAN_LAYER_SIZE 16

enum { TT_OPTIMIZER_SGD = 0 };
enum { TT_PLAN_FLAG_QAS = 1 };

typedef enum {
  TT_UPDATE_BIAS = 0,    /* biases of the selected channels */
  TT_UPDATE_WEIGHTS = 1, /* weights and biases of the selected channels */
} tt_update_kind;

/* CRC-32 (IEEE 802.3), the same value as Python's zlib.crc32. */
uint32_t tt_crc32(const uint8_t* data, uint32_t size);

#endif /* TFLM_TRAINING_TT_PLAN_H_ */
