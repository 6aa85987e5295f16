/* A bounds-checked reader for FlatBuffers, enough for the .tflite schema.
 *
 * Nothing is copied: tables and vectors are positions inside the caller's
 * buffer. Every position is validated before it is read, so hostile bytes
 * can make a read fail but never make it leave the buffer. Multi-byte
 * values are read with memcpy (no alignment assumptions) as little-endian,
 * which is what both the host and the Cortex-M4 are. */
#ifndef TFLM_TRAINING_TT_FLATBUFFER_H_
#define TFLM_TRAINING_TT_FLATBUFFER_H_

#include <stdbool.h>
#include <stdint.h>

#include "tt_records.h"

bool tt_fb_root(const tt_fb_buffer* buf, tt_fb_table* root);

/* Scalars: an absent field yields default_value. False means the field
 * is present but does not fit inside its table or the buffer. */
bool tt_fb_get_u8(const tt_fb_buffer* buf, const tt_fb_table* table,
                  uint32_t field, uint8_t default_value, uint8_t* out);
bool tt_fb_get_i8(const tt_fb_buffer* buf, const tt_fb_table* table,
                  uint32_t field, int8_t default_value, int8_t* out);
bool tt_fb_get_i32(const tt_fb_buffer* buf, const tt_fb_table* table,
                   uint32_t field, int32_t default_value, int32_t* out);
bool tt_fb_get_u32(const tt_fb_buffer* buf, const tt_fb_table* table,
                   uint32_t field, uint32_t default_value, uint32_t* out);
bool tt_fb_get_i64(const tt_fb_buffer* buf, const tt_fb_table* table,
                   uint32_t field, int64_t default_value, int64_t* out);
bool tt_fb_get_f32(const tt_fb_buffer* buf, const tt_fb_table* table,
                   uint32_t field, float default_value, float* out);

/* Sub-table: *present says whether the field exists. */
bool tt_fb_get_table(const tt_fb_buffer* buf, const tt_fb_table* table,
                     uint32_t field, tt_fb_table* out, bool* present);

/* Vector of element_size-byte elements (or of offsets, element_size 4).
 * An absent field yields an empty vector. */
bool tt_fb_get_vector(const tt_fb_buffer* buf, const tt_fb_table* table,
                      uint32_t field, uint32_t element_size, tt_fb_vector* out);

/* Element readers for a vector validated by tt_fb_get_vector; index must
 * be below count. */
int32_t tt_fb_vector_i32(const tt_fb_buffer* buf, const tt_fb_vector* vec,
                         uint32_t index);
int64_t tt_fb_vector_i64(const tt_fb_buffer* buf, const tt_fb_vector* vec,
                         uint32_t index);
float tt_fb_vector_f32(const tt_fb_buffer* buf, const tt_fb_vector* vec,
                       uint32_t index);
bool tt_fb_vector_table(const tt_fb_buffer* buf, const tt_fb_vector* vec,
                        uint32_t index, tt_fb_table* out);

/* Raw little-endian loads at a position the caller has validated. */
uint16_t tt_fb_load_u16(const uint8_t* p);
uint32_t tt_fb_load_u32(const uint8_t* p);

#endif /* TFLM_TRAINING_TT_FLATBUFFER_H_ */
