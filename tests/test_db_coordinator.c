/* The coordinator against hostile and unauthenticated peers, with a real
 * PostgreSQL (the ctest fixture "pg", DSN in $PVF_TEST_DSN_FILE) and real
 * ZeroMQ sockets:
 *   - malformed, truncated, oversized and wrongly typed messages are dropped
 *     with a log line and the coordinator keeps serving;
 *   - with CURVE, a worker whose key is on the allow-list is served and an
 *     unknown key is refused;
 *   - a job's progress deadline counts from its worker's word that the
 *     trials started (a RESULT without records), not from the lease: a
 *     worker loading the model longer than the deadline is not stuck. */
#include "pvf_campaign.h"
#include "pvf_coordinator.h"
#include "pvf_proto.h"
#include "pvf_sql.h"
#include "test.h"

#include <zmq.h>

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char dsn[1200];

typedef struct running {
    pthread_t thread;
    pvf_coord_config cfg;
    volatile sig_atomic_t stop;
    pvf_err err;
    int rc;
} running;

static void *coord_main(void *arg) {
    running *r = arg;
    r->rc = pvf_coord_run(&r->cfg, &r->err);
    return NULL;
}

static void start(running *r) {
    r->stop = 0;
    r->cfg.dsn = dsn;
    r->cfg.heartbeat_ms = 100;
    r->cfg.stop = &r->stop;
    pthread_create(&r->thread, NULL, coord_main, r);
    usleep(300000);
}

static void stop(running *r) {
    r->stop = 1;
    pthread_join(r->thread, NULL);
    CHECK(r->rc == 0);
    if (r->rc)
        fprintf(stderr, "coordinator: %s\n", r->err.msg);
}

static void *dealer(void *ctx, const char *endpoint) {
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_connect(s, endpoint);
    return s;
}

static void send_frames(void *s, const void *a, size_t alen, const void *b, size_t blen) {
    if (b) {
        zmq_send(s, a, alen, ZMQ_SNDMORE);
        zmq_send(s, b, blen, 0);
    } else {
        zmq_send(s, a, alen, 0);
    }
}

static void send_body(void *s, const void *body, size_t len) {
    send_frames(s, PVF_PROTO_HEADER, strlen(PVF_PROTO_HEADER), body, len);
}

static void send_msg(void *s, const pvf_msg *m) {
    uint8_t *body;
    size_t len;
    pvf_err err;
    if (pvf_msg_encode(m, &body, &len, &err) == 0) {
        send_body(s, body, len);
        free(body);
    }
}

/* Waits up to ms for a message; returns its type, or 0. With m, the message
 * is left decoded there (the caller frees it). */
static int receive_msg(void *s, int ms, pvf_msg *m) {
    zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, ms) <= 0)
        return 0;
    zmq_msg_t f[2];
    int n = 0, more = 1;
    while (more) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, s, 0) < 0)
            break;
        more = zmq_msg_more(&part);
        if (n < 2)
            f[n++] = part;
        else
            zmq_msg_close(&part);
    }
    int type = 0;
    pvf_msg d;
    pvf_err err;
    if (n == 2 && pvf_proto_header_ok(zmq_msg_data(&f[0]), zmq_msg_size(&f[0])) &&
        pvf_msg_decode(zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), &d, &err) == 0) {
        type = (int)d.type;
        if (m)
            *m = d;
        else
            pvf_msg_free(&d);
    }
    for (int i = 0; i < n; i++)
        zmq_msg_close(&f[i]);
    return type;
}

static int receive(void *s, int ms) {
    return receive_msg(s, ms, NULL);
}

static void hello(void *s, const char *name, uint64_t session) {
    pvf_msg m = {.type = PVF_MSG_HELLO};
    m.u.hello.version = PVF_PROTO_VERSION;
    m.u.hello.name = (char *)name;
    m.u.hello.executors = 1;
    m.u.hello.session = session;
    send_msg(s, &m);
}

/* Served: after HELLO the coordinator sends heartbeats. */
static int served(void *s) {
    for (int i = 0; i < 10; i++) {
        int t = receive(s, 300);
        if (t == PVF_MSG_HEARTBEAT)
            return 1;
    }
    return 0;
}

static void test_bad_messages(void) {
    char endpoint[128], logpath[128];
    snprintf(endpoint, sizeof endpoint, "ipc:///tmp/pvf-test-coord-%d", (int)getpid());
    snprintf(logpath, sizeof logpath, "/tmp/pvf-test-coord-%d.log", (int)getpid());
    /* The coordinator logs to stderr: capture it to check the log lines. */
    fflush(stderr);
    int saved = dup(2);
    FILE *log = freopen(logpath, "w", stderr);
    running r = {.cfg = {.bind = endpoint}};
    start(&r);
    void *ctx = zmq_ctx_new();
    void *s = dealer(ctx, endpoint);

    const uint8_t bomb[] = {0xdd, 0x04, 0x00, 0x00, 0x00}; /* array32 of 2^26, no elements */
    const uint8_t c1[] = {0xc1};
    const uint8_t two[] = {0x01, 0x02};
    uint8_t *good;
    size_t good_len;
    pvf_err err;
    pvf_msg h = {.type = PVF_MSG_HELLO};
    h.u.hello.version = PVF_PROTO_VERSION;
    h.u.hello.name = "x";
    h.u.hello.executors = 1;
    CHECK(pvf_msg_encode(&h, &good, &good_len, &err) == 0);

    send_frames(s, "just one frame", 14, NULL, 0);
    send_frames(s, "PVF/0", 5, good, good_len); /* wrong protocol frame */
    send_body(s, bomb, sizeof bomb);
    send_body(s, c1, sizeof c1);
    send_body(s, two, sizeof two); /* trailing bytes */
    for (size_t cut = 1; cut < good_len; cut += 3)
        send_body(s, good, cut); /* truncated */
    /* {"t": "HELLO", "v": "1", ...}: a string where a number belongs */
    const uint8_t typed[] = {0x84, 0xa1, 't',  0xa5, 'H', 'E', 'L', 'L',  'O', 0xa1, 'v',
                             0xa1, '1',  0xa4, 'n',  'a', 'm', 'e', 0xa1, 'x', 0xa9, 'e',
                             'x',  'e',  'c',  'u',  't', 'o', 'r', 's',  0x01};
    send_body(s, typed, sizeof typed);
    /* Oversized: over the protocol's limit, within the transport's; refused
     * with a line (past PVF_PROTO_MAX_TRANSPORT libzmq drops the connection). */
    void *big_sock = dealer(ctx, endpoint);
    size_t big_len = PVF_PROTO_MAX_MSG + 16;
    uint8_t *big = calloc(1, big_len);
    send_body(big_sock, big, big_len);
    free(big);
    /* A RESULT from a peer that never said HELLO: told to say HELLO. */
    pvf_msg res = {.type = PVF_MSG_RESULT};
    res.u.result.job = 1;
    res.u.result.final = 1;
    send_msg(s, &res);
    int got_disconnect = 0;
    for (int i = 0; i < 20 && !got_disconnect; i++)
        got_disconnect = receive(s, 200) == PVF_MSG_DISCONNECT;
    CHECK(got_disconnect);

    /* Still serving: a proper HELLO is answered with heartbeats. */
    send_body(s, good, good_len);
    CHECK(served(s));
    free(good);
    zmq_close(s);
    zmq_close(big_sock);
    zmq_ctx_term(ctx);
    stop(&r);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    (void)log;
    FILE *f = fopen(logpath, "r");
    char text[65536] = "";
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    text[n] = '\0';
    if (f)
        fclose(f);
    unlink(logpath);
    CHECK(strstr(text, "dropped a message of 2 frames") || strstr(text, "of 1 frames"));
    CHECK(strstr(text, "dropped a message without the PVF/1 frame") != NULL);
    CHECK(strstr(text, "dropped a bad message") != NULL);
    CHECK(strstr(text, "'v'") != NULL); /* the wrongly typed field is named */
    CHECK(strstr(text, "dropped a bad message from an unknown peer: message: 4194320 bytes, "
                       "at most 4194304") != NULL);
    CHECK(strstr(text, "worker x joined") != NULL);
    unlink(endpoint + strlen("ipc://"));
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Heartbeats every 100 ms (so that the coordinator hears us) until a message
 * of type `want` arrives or `seconds` pass; returns when it came (seconds
 * from now_s), or -1. Other messages are dropped. */
static double await_type(void *s, int want, double seconds) {
    pvf_msg hb = {.type = PVF_MSG_HEARTBEAT};
    for (double end = now_s() + seconds; now_s() < end;) {
        send_msg(s, &hb);
        if (receive(s, 100) == want)
            return now_s();
    }
    return -1;
}

/* A CNN campaign (seed: one of its own) for one test's coordinator. */
static int64_t create_campaign(uint64_t seed) {
    pvf_db *db;
    pvf_err err;
    int64_t id = 0;
    int existing;
    pvf_campaign_spec spec = {.model_dir = PVF_SOURCE_DIR "/models/fmnist-lenet",
                              .format = "fp32",
                              .fault = "bit",
                              .strata = "tensor",
                              .seed = seed,
                              .confidence = 0.95,
                              .margin = 1e-6,
                              .max_trials = 1000};
    CHECK(pvf_db_open(&db, dsn, &err) == 0);
    CHECK(pvf_campaign_create(db, &spec, &id, &existing, &err) == 0);
    pvf_db_close(db);
    return id;
}

/* Says HELLO and READY for one job on socket s, as a worker does when it
 * connects; returns the job leased, or 0. The JOB message goes to *job
 * (the caller frees it) when job is not NULL. */
static uint64_t lease_one(void *s, const char *name, uint64_t session, pvf_msg *job) {
    hello(s, name, session);
    pvf_msg ready = {.type = PVF_MSG_READY}, m;
    ready.u.ready.slots = 1;
    send_msg(s, &ready);
    for (int i = 0; i < 50; i++) {
        pvf_msg hb = {.type = PVF_MSG_HEARTBEAT};
        send_msg(s, &hb);
        int t = receive_msg(s, 100, &m);
        if (t == PVF_MSG_JOB) {
            const uint64_t id = m.u.job.job;
            if (job)
                *job = m;
            else
                pvf_msg_free(&m);
            return id;
        }
        if (t)
            pvf_msg_free(&m);
    }
    return 0;
}

static void test_progress_deadline(void) {
    const int64_t id = create_campaign(77);
    char endpoint[128];
    snprintf(endpoint, sizeof endpoint, "ipc:///tmp/pvf-test-deadline-%d", (int)getpid());
    const double deadline = 1.5;
    running r = {.cfg = {.bind = endpoint,
                         .only_campaign = id,
                         .trial_deadline_ms = (uint32_t)(deadline * 1000),
                         .quiet = 1}};
    start(&r);
    void *ctx = zmq_ctx_new();
    void *s = dealer(ctx, endpoint);
    pvf_msg job = {0};
    const double leased = lease_one(s, "slow", 0, &job) ? now_s() : -1;
    CHECK(leased > 0);
    if (leased > 0) {
        /* "Loading the model" for longer than the deadline: no stuck trial. */
        CHECK(await_type(s, PVF_MSG_CANCEL, 1.3 * deadline) < 0);
        pvf_msg go = {.type = PVF_MSG_RESULT};
        go.u.result.job = job.u.job.job;
        go.u.result.attempt = job.u.job.attempt;
        go.u.result.epoch = job.u.job.epoch;
        double started = now_s();
        send_msg(s, &go);
        /* Cancelled as stuck a deadline after the start, not after the lease. */
        double cancelled = await_type(s, PVF_MSG_CANCEL, 3 * deadline);
        CHECK(cancelled > 0);
        CHECK(cancelled - started > 0.9 * deadline);
        if (cancelled > 0 && cancelled - started <= 0.9 * deadline)
            fprintf(stderr, "cancelled %.2f s after the lease, %.2f s after the start\n",
                    cancelled - leased, cancelled - started);
        pvf_msg_free(&job);
    }
    zmq_close(s);
    zmq_ctx_term(ctx);
    stop(&r);
    unlink(endpoint + strlen("ipc://"));
}

/* The state the coordinator wrote for a job, waiting up to 5 s for its
 * writer: "" when there is none yet. */
static void job_state(int64_t campaign, uint64_t job, const char *want, char *state, size_t len) {
    pvf_db *db;
    pvf_err err;
    snprintf(state, len, "%s", "");
    if (pvf_db_open(&db, dsn, &err))
        return;
    char c[32], j[32];
    snprintf(c, sizeof c, "%lld", (long long)campaign);
    snprintf(j, sizeof j, "%llu", (unsigned long long)job);
    const char *params[] = {c, j};
    for (double end = now_s() + 5; now_s() < end && strcmp(state, want) != 0;) {
        pvf_table t;
        if (pvf_db_query(db, "SELECT state FROM jobs WHERE campaign_id = $1 AND job_id = $2", 2,
                         params, &t, &err) == 0) {
            const char *v = pvf_table_get(&t, 0, 0);
            snprintf(state, len, "%s", v ? v : "");
            pvf_table_free(&t);
        }
        if (strcmp(state, want) != 0)
            usleep(100000);
    }
    pvf_db_close(db);
}

/* A worker that says HELLO again from the same process (the same session)
 * reconnected: its lease is returned, not counted as a death; one with a new
 * session restarted: its lease was lost with it. */
static void test_reconnect_is_not_a_death(void) {
    const int64_t id = create_campaign(78);
    char endpoint[128];
    snprintf(endpoint, sizeof endpoint, "ipc:///tmp/pvf-test-reconnect-%d", (int)getpid());
    running r = {.cfg = {.bind = endpoint, .only_campaign = id, .quiet = 1}};
    start(&r);
    void *ctx = zmq_ctx_new();
    void *first = dealer(ctx, endpoint);
    const uint64_t job1 = lease_one(first, "w", 42, NULL);
    CHECK(job1 != 0);
    void *again = dealer(ctx, endpoint); /* a new socket, as reconnect() makes */
    const uint64_t job2 = lease_one(again, "w", 42, NULL);
    CHECK(job2 != 0 && job2 != job1);
    void *restarted = dealer(ctx, endpoint);
    CHECK(lease_one(restarted, "w", 43, NULL) != 0);
    char state[32];
    job_state(id, job1, "returned", state, sizeof state);
    CHECK(strcmp(state, "returned") == 0);
    if (strcmp(state, "returned") != 0)
        fprintf(stderr, "  reconnected worker's job: state '%s'\n", state);
    job_state(id, job2, "lost", state, sizeof state);
    CHECK(strcmp(state, "lost") == 0);
    if (strcmp(state, "lost") != 0)
        fprintf(stderr, "  restarted worker's job: state '%s'\n", state);
    zmq_close(first);
    zmq_close(again);
    zmq_close(restarted);
    zmq_ctx_term(ctx);
    stop(&r);
    unlink(endpoint + strlen("ipc://"));
}

static void test_curve_allow_list(void) {
    char server_pub[41], server_sec[41], good_pub[41], good_sec[41], bad_pub[41], bad_sec[41];
    CHECK(zmq_curve_keypair(server_pub, server_sec) == 0);
    CHECK(zmq_curve_keypair(good_pub, good_sec) == 0);
    CHECK(zmq_curve_keypair(bad_pub, bad_sec) == 0);
    char allow[128];
    snprintf(allow, sizeof allow, "/tmp/pvf-test-allow-%d", (int)getpid());
    FILE *f = fopen(allow, "w");
    fprintf(f, "# workers admitted\n%s rack1-node7\n", good_pub);
    fclose(f);
    char bind[64], endpoint[64];
    int port = 20000 + (int)(getpid() % 20000);
    snprintf(bind, sizeof bind, "tcp://127.0.0.1:%d", port);
    snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", port);

    /* TCP without keys is refused outright. */
    pvf_coord_config plain = {.dsn = dsn, .bind = bind, .quiet = 1};
    pvf_err err;
    CHECK(pvf_coord_run(&plain, &err) != 0);
    CHECK(strstr(err.msg, "CURVE") != NULL);

    running r = {.cfg = {.bind = bind, .secret_key = server_sec, .allow_file = allow}};
    start(&r);
    void *ctx = zmq_ctx_new();
    void *good = zmq_socket(ctx, ZMQ_DEALER), *bad = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(good, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(bad, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(good, ZMQ_CURVE_SERVERKEY, server_pub, 40);
    zmq_setsockopt(good, ZMQ_CURVE_PUBLICKEY, good_pub, 40);
    zmq_setsockopt(good, ZMQ_CURVE_SECRETKEY, good_sec, 40);
    zmq_setsockopt(bad, ZMQ_CURVE_SERVERKEY, server_pub, 40);
    zmq_setsockopt(bad, ZMQ_CURVE_PUBLICKEY, bad_pub, 40);
    zmq_setsockopt(bad, ZMQ_CURVE_SECRETKEY, bad_sec, 40);
    zmq_socket_monitor(bad, "inproc://bad-monitor", ZMQ_EVENT_HANDSHAKE_FAILED_AUTH);
    void *mon = zmq_socket(ctx, ZMQ_PAIR);
    zmq_connect(mon, "inproc://bad-monitor");
    zmq_connect(good, endpoint);
    zmq_connect(bad, endpoint);
    hello(good, "good", 0);
    hello(bad, "bad", 0);
    CHECK(served(good));
    CHECK(receive(bad, 1500) == 0); /* nothing for the unknown key */
    /* The handshake itself failed on authentication. */
    zmq_pollitem_t it = {mon, 0, ZMQ_POLLIN, 0};
    int refused = 0;
    if (zmq_poll(&it, 1, 2000) > 0) {
        zmq_msg_t ev;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, mon, 0) >= 6) {
            uint16_t id;
            memcpy(&id, zmq_msg_data(&ev), 2);
            refused = id == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
        }
        zmq_msg_close(&ev);
    }
    CHECK(refused);
    zmq_socket_monitor(bad, NULL, 0);
    zmq_close(mon);
    zmq_close(good);
    zmq_close(bad);
    zmq_ctx_term(ctx);
    stop(&r);
    unlink(allow);
}

int main(void) {
    const char *file = getenv("PVF_TEST_DSN_FILE");
    FILE *f = file ? fopen(file, "r") : NULL;
    if (!f || !fgets(dsn, sizeof dsn, f)) {
        fprintf(stderr, "test_db_coordinator: run under ctest (fixture pg: PVF_TEST_DSN_FILE)\n");
        return 1;
    }
    fclose(f);
    dsn[strcspn(dsn, "\n")] = '\0';
    pvf_db *db;
    pvf_err err;
    int applied;
    if (pvf_db_open(&db, dsn, &err) || pvf_db_migrate(db, &applied, &err)) {
        fprintf(stderr, "test_db_coordinator: %s\n", err.msg);
        return 1;
    }
    pvf_db_close(db);
    signal(SIGPIPE, SIG_IGN);
    RUN(test_bad_messages);
    RUN(test_curve_allow_list);
    RUN(test_progress_deadline);
    RUN(test_reconnect_is_not_a_death);
    return test_summary();
}
