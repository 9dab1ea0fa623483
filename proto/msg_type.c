/* msg_type.c - wire names of the message types and the protocol frame. */
#include "proto_internal.h"

#include <string.h>

const char *pvf_msg_type_name(pvf_msg_type t) {
    const pvf_msg_schema *s = pvf_proto_schema(t);
    return s ? s->name : NULL;
}

int pvf_proto_header_ok(const void *frame, size_t len) {
    return frame && len == sizeof PVF_PROTO_HEADER - 1 && memcmp(frame, PVF_PROTO_HEADER, len) == 0;
}
