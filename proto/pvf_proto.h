/* pvf_proto.h - the wire protocol between the coordinator (ZeroMQ ROUTER)
 * and its workers (DEALER).
 *
 * Every message is two frames (after the ROUTER's routing id): the protocol
 * frame PVF_PROTO_HEADER, then one msgpack map whose "t" key names the type.
 * Keys are short strings; every other key of a type is listed below with its
 * msgpack type. Unknown or duplicate keys, wrong types, values out of range,
 * trailing bytes and anything larger than the caps are rejected.
 *
 * Decoding untrusted bytes: the bytes are checked by a validating pass
 * (depth, declared element counts against the bytes that remain, string and
 * binary lengths, no extension types, no 0xc1) before msgpack-c's unpacker
 * sees them, because msgpack-c reserves memory for every declared array
 * element before the elements arrive (a 5-byte message can ask for
 * gigabytes). Then the typed fields are copied into a pvf_msg that owns them.
 *
 *   worker -> coordinator
 *     HELLO      v:uint name:str executors:uint
 *                session:uint (optional: random per worker process, so that
 *                a HELLO again from the same process, a reconnect, is told
 *                from a restart: a reconnect's leases are returned, not
 *                counted as deaths)
 *     READY      slots:uint                      (free executor slots = credit)
 *     RESULT     job:uint attempt:uint epoch:uint seq:uint final:bool
 *                trials:[[trial, target, element, mask, old_word, new_word,
 *                         old_value, new_value, value, incorrect, nonfinite,
 *                         flags] ...]            (uint except the floats:
 *                         old_value, new_value float32 or 64, value float64)
 *                error:str (optional: the job failed as a whole)
 *     FETCH      sha:bin32 off:uint len:uint     (ask for an artifact chunk)
 *     HEARTBEAT  slots:uint busy:uint
 *     BYE        reason:str
 *   coordinator -> worker
 *     JOB        job:uint attempt:uint epoch:uint campaign:uint deadline_ms:uint
 *                files:[[name:str, sha:bin32, size:uint] ...]  (the model dir)
 *                eval:[sha:bin32, size:uint]
 *                format:str fault:str seed:uint stratum:uint
 *                targets:[str ...] lo:uint hi:uint naive:bool
 *                threshold:float (optional: e.g. DLRM's |delta p| > threshold)
 *     ACK        job:uint attempt:uint seq:uint
 *     CANCEL     job:uint
 *     ARTIFACT   sha:bin32 off:uint total:uint data:bin
 *     HEARTBEAT  (no fields)
 *     DISCONNECT reason:str                      (say HELLO again, or stop)
 */
#ifndef PVF_PROTO_H
#define PVF_PROTO_H

#include "pvf_common.h"

#include <stddef.h>
#include <stdint.h>

#define PVF_PROTO_HEADER  "PVF/1"
#define PVF_PROTO_VERSION 1
#define PVF_PROTO_MAX_MSG (4u << 20) /* body length */
/* ZMQ_MAXMSGSIZE: a body between PVF_PROTO_MAX_MSG and this is read and
 * refused with a log line naming its sender; past it libzmq closes the
 * connection without a word. */
#define PVF_PROTO_MAX_TRANSPORT  (4 * PVF_PROTO_MAX_MSG)
#define PVF_PROTO_MAX_TRIALS     4096       /* trial records per RESULT */
#define PVF_PROTO_MAX_TARGETS    4096       /* targets per JOB */
#define PVF_PROTO_MAX_FILES      64         /* model files per JOB */
#define PVF_PROTO_MAX_STR        1024       /* any string */
#define PVF_PROTO_CHUNK          (1u << 20) /* artifact bytes per ARTIFACT */
#define PVF_PROTO_MAX_JOB_TRIALS (1u << 20) /* hi - lo of one JOB */

typedef enum pvf_msg_type {
    PVF_MSG_HELLO = 1,
    PVF_MSG_READY,
    PVF_MSG_RESULT,
    PVF_MSG_FETCH,
    PVF_MSG_HEARTBEAT,
    PVF_MSG_BYE,
    PVF_MSG_JOB,
    PVF_MSG_ACK,
    PVF_MSG_CANCEL,
    PVF_MSG_ARTIFACT,
    PVF_MSG_DISCONNECT,
} pvf_msg_type;

/* The type's wire name ("HELLO", ...), or NULL. */
const char *pvf_msg_type_name(pvf_msg_type t);

typedef struct pvf_sha256 {
    uint8_t b[32];
} pvf_sha256;

/* One trial's record, as a worker reports it and the store keeps it. */
typedef struct pvf_trial_rec {
    uint64_t trial;   /* index within the stratum */
    uint32_t target;  /* index into the JOB's targets */
    uint64_t element; /* stored word within the target */
    uint32_t mask;    /* bits the fault acted on */
    uint32_t old_word, new_word;
    double old_value, new_value; /* compute values (fp32 in the engine) */
    double value;                /* fraction of eval outputs incorrect, in [0, 1] */
    uint32_t incorrect, nonfinite;
    uint32_t flags; /* PVF_TRIAL_* from worker/trial.h */
} pvf_trial_rec;

typedef struct pvf_file_ref {
    char *name; /* file name inside the model directory, no '/' */
    pvf_sha256 sha;
    uint64_t size;
} pvf_file_ref;

typedef struct pvf_msg {
    pvf_msg_type type;
    union {
        struct {
            uint32_t version;
            char *name;
            uint32_t executors;
            uint64_t session; /* 0: not given */
        } hello;
        struct {
            uint32_t slots;
        } ready;
        struct {
            uint64_t job;
            uint32_t attempt;
            uint64_t epoch;
            uint32_t seq;
            int final;
            pvf_trial_rec *trials;
            uint32_t ntrials;
            char *error; /* NULL unless the job failed as a whole */
        } result;
        struct {
            pvf_sha256 sha;
            uint64_t off;
            uint32_t len;
        } fetch;
        struct {
            uint32_t slots, busy; /* worker -> coordinator only */
        } heartbeat;
        struct {
            char *reason;
        } bye, disconnect;
        struct {
            uint64_t job;
            uint32_t attempt;
            uint64_t epoch;
            uint64_t campaign;
            uint32_t deadline_ms; /* progress deadline per trial */
            pvf_file_ref *files;
            uint32_t nfiles;
            pvf_sha256 eval_sha;
            uint64_t eval_size;
            char *format, *fault;
            uint64_t seed, stratum;
            char **targets;
            uint32_t ntargets;
            uint64_t lo, hi; /* trials [lo, hi) */
            int naive;
            double threshold; /* outcome rule parameter (0: the rule's default) */
        } job;
        struct {
            uint64_t job;
            uint32_t attempt;
            uint32_t seq;
        } ack;
        struct {
            uint64_t job;
        } cancel;
        struct {
            pvf_sha256 sha;
            uint64_t off, total;
            const uint8_t *data; /* points into the decoded bytes: valid while they are */
            uint32_t len;
        } artifact;
    } u;
    void *owned_; /* allocations of a decoded message */
} pvf_msg;

/* Encodes m into a malloc'd buffer (*out, *len), owned by the caller. Fails
 * only on out of memory or on a message that breaks the caps. */
int pvf_msg_encode(const pvf_msg *m, uint8_t **out, size_t *len, pvf_err *err);

/* Decodes the body frame. On success m owns its strings and arrays (free
 * with pvf_msg_free); an ARTIFACT's data points into buf. On failure
 * err names what is wrong and m needs no free. */
int pvf_msg_decode(const uint8_t *buf, size_t len, pvf_msg *m, pvf_err *err);
void pvf_msg_free(pvf_msg *m);

/* Checks the protocol frame. */
int pvf_proto_header_ok(const void *frame, size_t len);

/* sha256 of a file's bytes (libsodium), streamed in chunks. */
int pvf_sha256_file(const char *path, pvf_sha256 *out, pvf_err *err);

/* Lower-case hex of a sha256 (65 bytes with the NUL), and back. */
void pvf_sha256_hex(const pvf_sha256 *s, char out[65]);
int pvf_sha256_parse(const char *hex, pvf_sha256 *s);

#endif
