/* zap.c - ZeroMQ authentication (ZAP, RFC 27) for CURVE: only worker public
 * keys on the allow-list get in. The handler must be bound before the
 * server socket, in the same context; the server socket also sets a ZAP
 * domain with enforcement so that a missing handler fails closed. */
#include "co.h"

#include <zmq.h>

#include <ctype.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct allowed {
    uint8_t key[32];
    char name[128];
} allowed;

struct co_zap {
    void *sock;
    pthread_t thread;
    atomic_int quit;
    allowed *keys;
    size_t nkeys;
    int quiet;
};

/* One Z85 public key (40 characters) per line, optionally followed by a
 * name; '#' starts a comment. */
static int load_allow(co_zap *z, const char *path, pvf_err *err) {
    FILE *f = fopen(path, "r");
    if (!f)
        return pvf_err_set(err, "%s: cannot open the allow-list: %s", path, strerror(errno));
    char line[512];
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *s = line;
        while (isspace((unsigned char)*s))
            s++;
        if (*s == '#' || *s == '\0')
            continue;
        char key[41];
        size_t n = strcspn(s, " \t\r\n");
        if (n != 40) {
            rc = pvf_err_set(err, "%s:%d: expected a 40-character Z85 public key", path, lineno);
            break;
        }
        memcpy(key, s, 40);
        key[40] = '\0';
        allowed *k = realloc(z->keys, (z->nkeys + 1) * sizeof *k);
        if (!k) {
            rc = pvf_err_set(err, "out of memory");
            break;
        }
        z->keys = k;
        allowed *a = &z->keys[z->nkeys];
        if (!zmq_z85_decode(a->key, key)) {
            rc = pvf_err_set(err, "%s:%d: not a Z85 key", path, lineno);
            break;
        }
        s += 40;
        while (*s == ' ' || *s == '\t')
            s++;
        s[strcspn(s, "\r\n")] = '\0';
        snprintf(a->name, sizeof a->name, "%s", *s ? s : key);
        z->nkeys++;
    }
    fclose(f);
    if (rc == 0 && z->nkeys == 0)
        rc = pvf_err_set(err, "%s: the allow-list has no keys", path);
    return rc;
}

static void send_str(void *sock, const char *s, int more) {
    zmq_send(sock, s, strlen(s), more ? ZMQ_SNDMORE : 0);
}

static void *zap_main(void *arg) {
    co_zap *z = arg;
    while (!atomic_load(&z->quit)) {
        zmq_pollitem_t it = {z->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 100) <= 0)
            continue;
        /* version, request id, domain, address, identity, mechanism, credentials */
        zmq_msg_t f[8];
        int n = 0, more = 1;
        while (more && n < 8) {
            zmq_msg_init(&f[n]);
            if (zmq_msg_recv(&f[n], z->sock, 0) < 0) {
                zmq_msg_close(&f[n]);
                break;
            }
            more = zmq_msg_more(&f[n]);
            n++;
        }
        while (more) { /* more frames than any request has: drain */
            zmq_msg_t x;
            zmq_msg_init(&x);
            if (zmq_msg_recv(&x, z->sock, 0) < 0)
                more = 0;
            else
                more = zmq_msg_more(&x);
            zmq_msg_close(&x);
        }
        const char *status = "400", *text = "unknown key", *user = "";
        char reqid[256] = "";
        if (n >= 2) {
            size_t len = zmq_msg_size(&f[1]);
            if (len >= sizeof reqid)
                len = sizeof reqid - 1;
            memcpy(reqid, zmq_msg_data(&f[1]), len);
            reqid[len] = '\0';
        }
        if (n == 7 && zmq_msg_size(&f[5]) == 5 && memcmp(zmq_msg_data(&f[5]), "CURVE", 5) == 0 &&
            zmq_msg_size(&f[6]) == 32) {
            for (size_t i = 0; i < z->nkeys; i++)
                if (memcmp(z->keys[i].key, zmq_msg_data(&f[6]), 32) == 0) {
                    status = "200";
                    text = "OK";
                    user = z->keys[i].name;
                    break;
                }
            if (status[0] != '2' && !z->quiet) {
                char z85[41];
                zmq_z85_encode(z85, zmq_msg_data(&f[6]), 32);
                fprintf(stderr, "pvf coordinator: refused a worker with unknown key %s\n", z85);
            }
        }
        send_str(z->sock, "1.0", 1);
        zmq_send(z->sock, reqid, strlen(reqid), ZMQ_SNDMORE);
        send_str(z->sock, status, 1);
        send_str(z->sock, text, 1);
        send_str(z->sock, user, 1);
        send_str(z->sock, "", 0);
        for (int i = 0; i < n; i++)
            zmq_msg_close(&f[i]);
    }
    return NULL;
}

int co_zap_start(co_zap **out, void *zctx, const char *allow_file, int quiet, pvf_err *err) {
    co_zap *z = calloc(1, sizeof *z);
    if (!z)
        return pvf_err_set(err, "out of memory");
    z->quiet = quiet;
    atomic_init(&z->quit, 0);
    if (load_allow(z, allow_file, err))
        goto fail;
    z->sock = zmq_socket(zctx, ZMQ_REP);
    int linger = 0;
    if (!z->sock || zmq_setsockopt(z->sock, ZMQ_LINGER, &linger, sizeof linger) ||
        zmq_bind(z->sock, "inproc://zeromq.zap.01")) {
        pvf_err_set(err, "cannot start the ZAP handler: %s", zmq_strerror(errno));
        goto fail;
    }
    if (pthread_create(&z->thread, NULL, zap_main, z)) {
        pvf_err_set(err, "cannot start the ZAP handler thread");
        goto fail;
    }
    *out = z;
    return 0;
fail:
    if (z->sock)
        zmq_close(z->sock);
    free(z->keys);
    free(z);
    return -1;
}

void co_zap_stop(co_zap *z) {
    if (!z)
        return;
    atomic_store(&z->quit, 1);
    pthread_join(z->thread, NULL);
    zmq_close(z->sock);
    free(z->keys);
    free(z);
}
