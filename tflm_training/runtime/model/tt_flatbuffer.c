#include "model/tt_flatbuffer.h"

#include <string.h>

uint16_t tt_fb_load_u16(const uint8_t* p) {
  return (uint16_t)(p[0] | (p[1] << 8));
}

uint32_t tt_fb_load_u32(const uint8_t* p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
         ((uint32_t)p[3] << 24);
}

static bool fits(const tt_fb_buffer* buf, uint64_t pos, uint64_t bytes) {
  return pos <= buf->size && bytes <= (uint64_t)buf->size - pos;
}

static bool table_at(const tt_fb_buffer* buf, uint32_t pos, tt_fb_table* out) {
  if (!fits(buf, pos, 4)) return false;
  const int64_t vtable =
      (int64_t)pos - (int64_t)(int32_t)tt_fb_load_u32(buf->data + pos);
  if (vtable < 0 || !fits(buf, (uint64_t)vtable, 4)) return false;
  const uint32_t vtable_size = tt_fb_load_u16(buf->data + vtable);
  const uint32_t inline_size = tt_fb_load_u16(buf->data + vtable + 2);
  if (vtable_size < 4 || (vtable_size & 1u) != 0) return false;
  if (!fits(buf, (uint64_t)vtable, vtable_size)) return false;
  if (inline_size < 4 || !fits(buf, pos, inline_size)) return false;
  out->pos = pos;
  out->vtable = (uint32_t)vtable;
  out->vtable_size = vtable_size;
  out->inline_size = inline_size;
  return true;
}

bool tt_fb_root(const tt_fb_buffer* buf, tt_fb_table* root) {
  if (buf->data == NULL || !fits(buf, 0, 8)) return false;
  return table_at(buf, tt_fb_load_u32(buf->data), root);
}

/* Position of a field's inline bytes (0 when the field is absent); false
 * when the vtable points outside the table. */
static bool locate(const tt_fb_buffer* buf, const tt_fb_table* table,
                   uint32_t field, uint32_t field_size, uint32_t* pos) {
  *pos = 0;
  const uint32_t entry = 4u + 2u * field;
  if (entry + 2u > table->vtable_size) return true;
  const uint32_t offset = tt_fb_load_u16(buf->data + table->vtable + entry);
  if (offset == 0) return true;
  if (offset < 4 || (uint64_t)offset + field_size > table->inline_size)
    return false;
  *pos = table->pos + offset;
  return true;
}

static bool get_scalar(const tt_fb_buffer* buf, const tt_fb_table* table,
                       uint32_t field, uint32_t size, const void* default_value,
                       void* out) {
  uint32_t pos;
  if (!locate(buf, table, field, size, &pos)) return false;
  memcpy(out, pos ? buf->data + pos : default_value, size);
  return true;
}

bool tt_fb_get_u8(const tt_fb_buffer* buf, const tt_fb_table* table,
                  uint32_t field, uint8_t default_value, uint8_t* out) {
  return get_scalar(buf, table, field, 1, &default_value, out);
}

bool tt_fb_get_i8(const tt_fb_buffer* buf, const tt_fb_table* table,
                  uint32_t field, int8_t default_value, int8_t* out) {
  return get_scalar(buf, table, field, 1, &default_value, out);
}

bool tt_fb_get_i32(const tt_fb_buffer* buf, const tt_fb_table* table,
                   uint32_t field, int32_t default_value, int32_t* out) {
  return get_scalar(buf, table, field, 4, &default_value, out);
}

bool tt_fb_get_u32(const tt_fb_buffer* buf, const tt_fb_table* table,
                   uint32_t field, uint32_t default_value, uint32_t* out) {
  return get_scalar(buf, table, field, 4, &default_value, out);
}

bool tt_fb_get_i64(const tt_fb_buffer* buf, const tt_fb_table* table,
                   uint32_t field, int64_t default_value, int64_t* out) {
  return get_scalar(buf, table, field, 8, &default_value, out);
}

bool tt_fb_get_f32(const tt_fb_buffer* buf, const tt_fb_table* table,
                   uint32_t field, float default_value, float* out) {
  return get_scalar(buf, table, field, 4, &default_value, out);
}

/* Follows the uoffset stored at pos; the target must lie inside the buffer. */
static bool follow(const tt_fb_buffer* buf, uint32_t pos, uint32_t* target) {
  const uint64_t t = (uint64_t)pos + tt_fb_load_u32(buf->data + pos);
  if (t >= buf->size) return false;
  *target = (uint32_t)t;
  return true;
}

bool tt_fb_get_table(const tt_fb_buffer* buf, const tt_fb_table* table,
                     uint32_t field, tt_fb_table* out, bool* present) {
  uint32_t pos, target;
  *present = false;
  if (!locate(buf, table, field, 4, &pos)) return false;
  if (pos == 0) return true;
  if (!follow(buf, pos, &target) || !table_at(buf, target, out)) return false;
  *present = true;
  return true;
}

static bool vector_at(const tt_fb_buffer* buf, uint32_t pos,
                      uint32_t element_size, tt_fb_vector* out) {
  if (!fits(buf, pos, 4)) return false;
  const uint32_t count = tt_fb_load_u32(buf->data + pos);
  if (!fits(buf, (uint64_t)pos + 4, (uint64_t)count * element_size))
    return false;
  out->pos = pos + 4;
  out->count = count;
  return true;
}

bool tt_fb_get_vector(const tt_fb_buffer* buf, const tt_fb_table* table,
                      uint32_t field, uint32_t element_size,
                      tt_fb_vector* out) {
  uint32_t pos, target;
  out->pos = 0;
  out->count = 0;
  if (!locate(buf, table, field, 4, &pos)) return false;
  if (pos == 0) return true;
  return follow(buf, pos, &target) && vector_at(buf, target, element_size, out);
}

int32_t tt_fb_vector_i32(const tt_fb_buffer* buf, const tt_fb_vector* vec,
                         uint32_t index) {
  int32_t value;
  memcpy(&value, buf->data + vec->pos + 4u * index, 4);
  return value;
}

int64_t tt_fb_vector_i64(const tt_fb_buffer* buf, const tt_fb_vector* vec,
                         uint32_t index) {
  int64_t value;
  memcpy(&value, buf->data + vec->pos + 8u * index, 8);
  return value;
}

float tt_fb_vector_f32(const tt_fb_buffer* buf, const tt_fb_vector* vec,
                       uint32_t index) {
  float value;
  memcpy(&value, buf->data + vec->pos + 4u * index, 4);
  return value;
}

bool tt_fb_vector_table(const tt_fb_buffer* buf, const tt_fb_vector* vec,
                        uint32_t index, tt_fb_table* out) {
  uint32_t target;
  const uint32_t pos = vec->pos + 4u * index;
  return follow(buf, pos, &target) && table_at(buf, target, out);
}
