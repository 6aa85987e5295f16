/* CRC-32 of plans, models, frames and saved states. */
#ifndef TFLM_TRAINING_TT_CRC_H_
#define TFLM_TRAINING_TT_CRC_H_

#include <stdint.h>

/* CRC-32 (IEEE 802.3), the same value as Python's zlib.crc32. */
uint32_t tt_crc32(const uint8_t* data, uint32_t size);
/* The CRC-32 of earlier bytes (crc) continued over more, as
 * zlib.crc32(data, crc); tt_crc32 is tt_crc32_update(0, ...). */
uint32_t tt_crc32_update(uint32_t crc, const uint8_t* data, uint32_t size);

#endif /* TFLM_TRAINING_TT_CRC_H_ */
