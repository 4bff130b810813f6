/* Expands a kernel's .def (PARAMS_BEGIN(name) FIELD(type, field)... PARAMS_END(name)) into
 * `struct name##_params`, packed, the same layout pytools/cdefs.py reads. Use:
 *     #include "def_struct.h"
 *     #include "conv2d_s8.def"
 *     #include "def_struct_end.h"
 */
#include "def_types.h"

#define PARAMS_BEGIN(name) struct __attribute__((packed)) name##_params {
#define FIELD(type, fname) type fname;
#define PARAMS_END(name) \
    }                    \
    ;
