/* Short fixed-width names used by the .def files (payloads.def, kernel_params.def), which
 * C expands into packed structs and pytools/cdefs.py parses. */
#ifndef COMMON_DEF_TYPES_H
#define COMMON_DEF_TYPES_H

#include <stdint.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int8_t i8;
typedef int16_t i16;
typedef int32_t i32;
typedef float f32;

#endif
