/* The plan format as C structs (from plan_format.def; see that file for the layout). */
#ifndef RUNTIME_PLAN_FORMAT_H
#define RUNTIME_PLAN_FORMAT_H

#include "def_types.h"

#define PLAN_MAGIC 0x4C505454u /* "TTPL" little-endian */
/* 9: depthwise_conv2d_s8_grad_input_2pass's parameters gain keep, and the conv gradient
 * parameters grad_broadcast; 8: stream storage (an input read a band of rows at a time); 4:
 * WINDOW_COPY (patch-based execution); 3: trained-slice operands on conv/depthwise/FC */
#define PLAN_FORMAT_VERSION 9u
#define PLAN_ALIGN 16u
#define PLAN_NO_TENSOR 0xFFFFu
#define PLAN_OP_FLAG_NOOP 1u

enum plan_storage {
    PLAN_STORAGE_ARENA = 0,
    PLAN_STORAGE_CONSTANT = 1,
    PLAN_STORAGE_STATE = 2,
    PLAN_STORAGE_STREAM = 3,
};
enum plan_dtype {
    PLAN_DTYPE_INT8 = 0,
    PLAN_DTYPE_INT32 = 1,
    PLAN_DTYPE_FLOAT32 = 2,
    PLAN_DTYPE_UINT8 = 3,
    PLAN_DTYPE_INT16 = 4,
    PLAN_DTYPE_INT64 = 5,
    PLAN_DTYPE_UINT32 = 6,
};

#define PLAN_BEGIN(name) struct __attribute__((packed)) plan_##name {
#define FIELD(type, fname) type fname;
#define ARRAY(type, fname, n) type fname[n];
#define PLAN_END(name) \
    }                  \
    ;
#include "plan_format.def"
#undef PLAN_BEGIN
#undef FIELD
#undef ARRAY
#undef PLAN_END

#endif
