/* fuzz_proto.c - libFuzzer harness for the wire protocol decoder.
 *
 * Every input is decoded as a message body. An accepted message must keep
 * the promises the coordinator and workers rely on (checked below), must
 * encode, and the encoding must decode to an equal message and re-encode to
 * the same bytes. Anything else aborts.
 *
 *   CC=clang cmake -S . -B build-fuzz -DPVF_FUZZ=ON && cmake --build build-fuzz --target fuzz_proto
 *   mkdir -p /tmp/proto-corpus
 *   build-fuzz/tests/fuzz_proto -max_total_time=120 -rss_limit_mb=256 -malloc_limit_mb=64 \
 *       /tmp/proto-corpus tests/fuzz/proto
 * (libFuzzer adds new inputs to the first directory: keep the seeds read-only.)
 * Seeds: one valid message of every type, written by `test_proto --write-seeds DIR`. */
#include "proto_samples.h"
#include "pvf_proto.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_str(const char *s) {
    REQUIRE(s != NULL);
    REQUIRE(strlen(s) <= PVF_PROTO_MAX_STR);
}

/* What an accepted message promises beyond its C types. */
static void check_msg(const pvf_msg *m, const uint8_t *data, size_t size) {
    REQUIRE(pvf_msg_type_name(m->type) != NULL);
    switch (m->type) {
    case PVF_MSG_HELLO:
        check_str(m->u.hello.name);
        break;
    case PVF_MSG_RESULT:
        REQUIRE(m->u.result.ntrials <= PVF_PROTO_MAX_TRIALS);
        REQUIRE(m->u.result.ntrials == 0 || m->u.result.trials != NULL);
        for (uint32_t i = 0; i < m->u.result.ntrials; i++) {
            double v = m->u.result.trials[i].value;
            REQUIRE(v >= 0.0 && v <= 1.0);
        }
        if (m->u.result.error)
            check_str(m->u.result.error);
        break;
    case PVF_MSG_FETCH:
        REQUIRE(m->u.fetch.len <= PVF_PROTO_CHUNK);
        REQUIRE(m->u.fetch.off <= UINT64_MAX - m->u.fetch.len);
        break;
    case PVF_MSG_BYE:
        check_str(m->u.bye.reason);
        break;
    case PVF_MSG_DISCONNECT:
        check_str(m->u.disconnect.reason);
        break;
    case PVF_MSG_JOB:
        REQUIRE(m->u.job.nfiles <= PVF_PROTO_MAX_FILES);
        for (uint32_t i = 0; i < m->u.job.nfiles; i++) {
            const char *n = m->u.job.files[i].name;
            check_str(n);
            REQUIRE(n[0] && !strchr(n, '/') && strcmp(n, ".") && strcmp(n, ".."));
            for (uint32_t j = 0; j < i; j++)
                REQUIRE(strcmp(m->u.job.files[j].name, n) != 0);
        }
        REQUIRE(m->u.job.ntargets <= PVF_PROTO_MAX_TARGETS);
        for (uint32_t i = 0; i < m->u.job.ntargets; i++)
            check_str(m->u.job.targets[i]);
        check_str(m->u.job.format);
        check_str(m->u.job.fault);
        REQUIRE(m->u.job.lo <= m->u.job.hi);
        REQUIRE(m->u.job.hi - m->u.job.lo <= PVF_PROTO_MAX_JOB_TRIALS);
        break;
    case PVF_MSG_ARTIFACT:
        REQUIRE(m->u.artifact.len <= PVF_PROTO_CHUNK);
        REQUIRE(m->u.artifact.off <= m->u.artifact.total);
        REQUIRE(m->u.artifact.len <= m->u.artifact.total - m->u.artifact.off);
        if (m->u.artifact.len) /* zero copy: inside the input */
            REQUIRE(m->u.artifact.data >= data &&
                    m->u.artifact.data + m->u.artifact.len <= data + size);
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pvf_msg m, again;
    pvf_err err = {{0}};
    if (pvf_msg_decode(data, size, &m, &err) < 0) {
        REQUIRE(err.msg[0] != '\0');
        REQUIRE(strchr(err.msg, '\n') == NULL);
        REQUIRE(m.owned_ == NULL);
        /* the pre-pass and msgpack-c agree on what is well-formed: what
         * passes the former never fails in the latter */
        REQUIRE(strncmp(err.msg, "message: msgpack rejected", 25) != 0);
        return 0;
    }
    check_msg(&m, data, size);
    uint8_t *buf = NULL, *buf2 = NULL;
    size_t len = 0, len2 = 0;
    if (pvf_msg_encode(&m, &buf, &len, &err) < 0) {
        fprintf(stderr, "accepted message does not encode: %s\n", err.msg);
        abort();
    }
    if (pvf_msg_decode(buf, len, &again, &err) < 0) {
        fprintf(stderr, "re-encoded message does not decode: %s\n", err.msg);
        abort();
    }
    const char *why = "";
    if (!msg_eq(&m, &again, &why)) {
        fprintf(stderr, "round trip changed field %s\n", why);
        abort();
    }
    /* the encoding is canonical: a second round gives the same bytes */
    REQUIRE(pvf_msg_encode(&again, &buf2, &len2, &err) == 0);
    REQUIRE(len2 == len && memcmp(buf, buf2, len) == 0);
    free(buf2);
    pvf_msg_free(&again);
    free(buf);
    pvf_msg_free(&m);
    return 0;
}
