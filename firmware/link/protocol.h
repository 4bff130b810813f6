/* Serial link protocol v5: message types, error codes and payload structs, all expanded
 * from the .def files beside this header (the single source shared with pytools).
 * See docs/protocol.md for the wire format. */
#ifndef LINK_PROTOCOL_H
#define LINK_PROTOCOL_H

#include <stdint.h>

#include "def_types.h"

#define LINK_PROTOCOL_VERSION 5u

enum msg_type {
#define MSG(name, code, dir, doc) MSG_##name = (code),
#include "messages.def"
#undef MSG
};

enum link_error {
#define ERR(name, code, doc) ERR_##name = (code),
#include "errors.def"
#undef ERR
};

enum counter_unit { COUNTER_CYCLES = 0, COUNTER_INSTRUCTIONS = 1 };
enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

/* Packed, little-endian payload structs: struct payload_<NAME>. A TAIL_TEXT field is the
 * variable-length remainder of the payload and has no storage in the struct. */
#define PAYLOAD_BEGIN(name) struct __attribute__((packed)) payload_##name {
#define FIELD(type, fname) type fname;
#define ARRAY(type, fname, n) type fname[n];
#define TAIL_TEXT(fname)
#define PAYLOAD_END(name) \
    }                     \
    ;
#include "payloads.def"
#undef PAYLOAD_BEGIN
#undef FIELD
#undef ARRAY
#undef TAIL_TEXT
#undef PAYLOAD_END

#endif
