/* prevalidate.c - the pass over untrusted msgpack bytes that runs before
 * msgpack-c sees them.
 *
 * msgpack-c's unpacker reserves 24 bytes (48 per map pair) for every element
 * an array or map header declares, as soon as it reads the header: a 5-byte
 * array32 header can ask for gigabytes (msgpack-c issue #1013). This pass
 * allocates nothing; it walks the headers and keeps the number of objects
 * still owed by the open containers. Every object takes at least one byte,
 * so that number may never exceed the bytes that remain: this bounds the
 * total of all nested declarations, not just each header on its own. */
#include "proto_internal.h"

/* Big-endian unsigned integer of n bytes. */
static uint64_t be(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

int pvf_proto_prevalidate(const uint8_t *buf, size_t len, pvf_err *err) {
    if (len > PVF_PROTO_MAX_MSG)
        return pvf_err_set(err, "message: %zu bytes, at most %u", len, PVF_PROTO_MAX_MSG);
    if (len == 0)
        return pvf_err_set(err, "message: empty");
    /* Every message is one map: anything else is refused before msgpack-c
     * reserves memory for it. */
    if (!((buf[0] >= 0x80 && buf[0] <= 0x8f) || buf[0] == 0xde || buf[0] == 0xdf))
        return pvf_err_set(err, "message: expected a map");
    /* remaining[d]: elements still to come in the container open at depth d. */
    uint64_t remaining[PVF_PROTO_MAX_DEPTH];
    int depth = 0;
    uint64_t owed = 1; /* objects still to read, the top-level one included */
    uint64_t declared = 1;
    size_t pos = 0;
    while (owed > 0) {
        if (pos >= len)
            return pvf_err_set(err, "message: truncated at byte %zu", pos);
        size_t at = pos;
        uint8_t b = buf[pos++];
        owed--;
        if (depth > 0)
            remaining[depth - 1]--;
        size_t left = len - pos;
        uint64_t count = 0; /* elements of a container */
        int is_container = 0;
        uint64_t skip = 0; /* payload bytes after the type byte */
        int lenbytes = 0;  /* size of the length field of str/bin/array/map */
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
            skip = 0; /* fixint, nil, bool */
        } else if (b <= 0x8f) {
            is_container = 1;
            count = 2u * (b & 0x0f);
        } else if (b <= 0x9f) {
            is_container = 1;
            count = b & 0x0f;
        } else if (b <= 0xbf) {
            skip = b & 0x1f;
        } else {
            switch (b) {
            case 0xc4: /* bin 8/16/32 */
            case 0xd9: /* str 8 */
                lenbytes = 1;
                break;
            case 0xc5:
            case 0xda:
                lenbytes = 2;
                break;
            case 0xc6:
            case 0xdb:
                lenbytes = 4;
                break;
            case 0xca: /* float32 */
                skip = 4;
                break;
            case 0xcb: /* float64 */
                skip = 8;
                break;
            case 0xcc: /* uint 8..64, int 8..64 */
            case 0xd0:
                skip = 1;
                break;
            case 0xcd:
            case 0xd1:
                skip = 2;
                break;
            case 0xce:
            case 0xd2:
                skip = 4;
                break;
            case 0xcf:
            case 0xd3:
                skip = 8;
                break;
            case 0xdc: /* array 16/32, map 16/32 */
            case 0xde:
                is_container = 1;
                lenbytes = 2;
                break;
            case 0xdd:
            case 0xdf:
                is_container = 1;
                lenbytes = 4;
                break;
            case 0xc1:
                return pvf_err_set(err, "message: byte 0xc1 (never used in msgpack) at %zu", at);
            default: /* 0xc7-0xc9, 0xd4-0xd8 */
                return pvf_err_set(err, "message: extension type 0x%02x at byte %zu", b, at);
            }
            if (lenbytes) {
                if ((size_t)lenbytes > left)
                    return pvf_err_set(err, "message: truncated at byte %zu", len);
                uint64_t n = be(buf + pos, lenbytes);
                pos += (size_t)lenbytes;
                left -= (size_t)lenbytes;
                if (is_container)
                    count = (b == 0xde || b == 0xdf) ? 2 * n : n;
                else
                    skip = n;
            }
        }
        if (skip > left)
            return pvf_err_set(err, "message: object at byte %zu declares %llu bytes, %zu remain",
                               at, (unsigned long long)skip, left);
        pos += (size_t)skip;
        left -= (size_t)skip;
        if (is_container) {
            if (count > left)
                return pvf_err_set(err,
                                   "message: container at byte %zu declares %llu elements, "
                                   "%zu bytes remain",
                                   at, (unsigned long long)count, left);
            if (owed + count > left)
                return pvf_err_set(err,
                                   "message: container at byte %zu declares %llu elements, "
                                   "%llu more owed, %zu bytes remain",
                                   at, (unsigned long long)count, (unsigned long long)owed, left);
            declared += count;
            if (declared > PVF_PROTO_MAX_OBJECTS)
                return pvf_err_set(err, "message: more than %u objects", PVF_PROTO_MAX_OBJECTS);
            if (count > 0) {
                if (depth == PVF_PROTO_MAX_DEPTH)
                    return pvf_err_set(err, "message: nested deeper than %d at byte %zu",
                                       PVF_PROTO_MAX_DEPTH, at);
                remaining[depth++] = count;
                owed += count;
            }
        }
        while (depth > 0 && remaining[depth - 1] == 0)
            depth--;
        if (owed > len - pos)
            return pvf_err_set(err, "message: %llu objects owed, %zu bytes remain",
                               (unsigned long long)owed, len - pos);
    }
    if (pos != len)
        return pvf_err_set(err, "message: %zu trailing bytes after the message", len - pos);
    return 0;
}
