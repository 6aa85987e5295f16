#include "model/tt_types.h"

#include "model/tt_schema.h"

int32_t tt_type_size(int32_t type) {
  switch (type) {
    case TT_TYPE_FLOAT32:
    case TT_TYPE_INT32:
      return 4;
    case TT_TYPE_INT8:
    case TT_TYPE_UINT8:
    case TT_TYPE_BOOL:
      return 1;
    case TT_TYPE_INT16:
    case TT_TYPE_FLOAT16:
      return 2;
    case TT_TYPE_INT64:
      return 8;
    default:
      return 0;
  }
}

const char* tt_type_name(int32_t type) {
  static const char* const kNames[] = {
      "FLOAT32", "FLOAT16",  "INT32",     "UINT8",  "INT64",   "STRING",
      "BOOL",    "INT16",    "COMPLEX64", "INT8",   "FLOAT64", "COMPLEX128",
      "UINT64",  "RESOURCE", "VARIANT",   "UINT32", "UINT16",  "INT4",
  };
  if (type < 0 || type >= (int32_t)(sizeof kNames / sizeof kNames[0]))
    return "an unknown type";
  return kNames[type];
}
