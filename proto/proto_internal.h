/* proto_internal.h - what the .c files of proto/ share and nothing outside
 * proto/ should use: the per-type field tables (one schema drives both the
 * encoder and the decoder), the semantic check both run, the validating
 * pre-pass over raw msgpack bytes, and the arena a decoded message owns. */
#ifndef PVF_PROTO_INTERNAL_H
#define PVF_PROTO_INTERNAL_H

#include "pvf_proto.h"

#include <stddef.h>
#include <stdint.h>

/* Deepest container nesting the pre-pass lets through (the message map is
 * depth 1; RESULT trials and JOB files reach depth 3). */
#define PVF_PROTO_MAX_DEPTH 4
/* Most msgpack objects one message may declare. The largest valid message,
 * a RESULT of 4096 records of 12, declares about 53,300; the cap bounds the
 * memory msgpack-c's zone takes (24 bytes per object, in chunks that grow by
 * doubling) to about 2 MiB, measured in tests/test_proto.c. */
#define PVF_PROTO_MAX_OBJECTS (1u << 16)
/* Fields per trial record on the wire. */
#define PVF_PROTO_TRIAL_FIELDS 12

/* How a field is stored in pvf_msg and on the wire. */
typedef enum pvf_field_kind {
    PVF_FK_U32,     /* uint32_t at off */
    PVF_FK_U64,     /* uint64_t at off */
    PVF_FK_BOOL,    /* int at off, msgpack true/false */
    PVF_FK_F64,     /* double at off, float32 or float64, finite */
    PVF_FK_STR,     /* char * at off */
    PVF_FK_SHA,     /* pvf_sha256 at off, bin of exactly 32 bytes */
    PVF_FK_DATA,    /* const uint8_t * at off, uint32_t length at off2, bin */
    PVF_FK_TRIALS,  /* pvf_trial_rec * at off, uint32_t count at off2 */
    PVF_FK_FILES,   /* pvf_file_ref * at off, uint32_t count at off2 */
    PVF_FK_EVAL,    /* pvf_sha256 at off, uint64_t size at off2: [sha, size] */
    PVF_FK_TARGETS, /* char ** at off, uint32_t count at off2 */
} pvf_field_kind;

typedef struct pvf_field {
    const char *key;
    pvf_field_kind kind;
    size_t off, off2;
    /* Optional fields are left out by the encoder when zero / NULL and
     * decode as zero / NULL when absent. */
    int optional;
} pvf_field;

typedef struct pvf_msg_schema {
    pvf_msg_type type;
    const char *name;
    const pvf_field *fields;
    size_t nfields;
} pvf_msg_schema;

/* The schema of a type, or NULL for a type that does not exist. */
const pvf_msg_schema *pvf_proto_schema(pvf_msg_type t);
/* The schema whose wire name is the n bytes at name, or NULL. */
const pvf_msg_schema *pvf_proto_schema_by_name(const char *name, size_t n);

/* The semantic checks both directions share: caps, string lengths, file
 * names, lo <= hi, values in [0, 1]. Errors name the type and field. */
int pvf_proto_check(const pvf_msg *m, pvf_err *err);

/* The validating pass over untrusted msgpack bytes, before any allocation:
 * exactly one object, a map, no 0xc1, no extension types, depth at most
 * PVF_PROTO_MAX_DEPTH, every declared count and length within the bytes
 * that remain (the total of pending elements too, so nested headers cannot
 * promise more than the bytes can hold), at most PVF_PROTO_MAX_OBJECTS. */
int pvf_proto_prevalidate(const uint8_t *buf, size_t len, pvf_err *err);

/* A chain of blocks freed at once: the allocations of a decoded message. */
typedef struct pvf_arena {
    void *head;
} pvf_arena;

/* Zeroed, max_align_t aligned memory owned by the arena, or NULL. */
void *pvf_arena_alloc(pvf_arena *a, size_t size);
void pvf_arena_free(pvf_arena *a);

#endif
