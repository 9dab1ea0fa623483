/* pvf keygen - a CURVE key pair for a coordinator or a worker. */
#include "cli.h"
#include "keys.h"

#include <zmq.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int is_z85_key(const char *s) {
    if (strlen(s) != 40)
        return 0;
    uint8_t raw[32];
    return zmq_z85_decode(raw, s) != NULL;
}

int cli_read_keypair(const char *path, char pub[41], char sec[41], pvf_err *err) {
    FILE *f = fopen(path, "r");
    if (!f)
        return pvf_err_set(err, "%s: cannot open: %s", path, strerror(errno));
    char line[256];
    pub[0] = sec[0] = '\0';
    while (fgets(line, sizeof line, f)) {
        char key[64];
        if (sscanf(line, "public %63s", key) == 1 && is_z85_key(key))
            memcpy(pub, key, 41);
        else if (sscanf(line, "secret %63s", key) == 1 && is_z85_key(key))
            memcpy(sec, key, 41);
    }
    fclose(f);
    if (!pub[0] || !sec[0])
        return pvf_err_set(err,
                           "%s: not a key pair file (expected 'public KEY' and 'secret KEY' "
                           "lines of 40 Z85 characters; see pvf keygen)",
                           path);
    return 0;
}

int cli_read_public(const char *s, char pub[41], pvf_err *err) {
    if (is_z85_key(s)) {
        memcpy(pub, s, 41);
        return 0;
    }
    FILE *f = fopen(s, "r");
    if (!f)
        return pvf_err_set(err, "%s: neither a Z85 key nor a readable file", s);
    char line[256], key[64];
    int found = 0;
    while (!found && fgets(line, sizeof line, f))
        found = (sscanf(line, "public %63s", key) == 1 || sscanf(line, "%63s", key) == 1) &&
                is_z85_key(key);
    fclose(f);
    if (!found)
        return pvf_err_set(err, "%s: no 40-character Z85 public key in it", s);
    memcpy(pub, key, 41);
    return 0;
}

typedef struct keygen_flags {
    const char *out;
} keygen_flags;

static int keygen_flag(const char *cmd, int opt, const char *arg, void *ctx) {
    (void)cmd;
    keygen_flags *k = ctx;
    if (opt != 'o')
        return 0;
    k->out = arg;
    return 1;
}

int pvf_cmd_keygen(int argc, char **argv) {
    cli_common common;
    static const struct option opts[] = {{"out", required_argument, 0, 'o'}, {0, 0, 0, 0}};
    keygen_flags k = {0};
    int rc = cli_parse("keygen", argc, argv, opts, &common, keygen_flag, &k);
    if (rc)
        return rc;
    if (!k.out)
        return cli_fail("keygen", 2, "--out NAME is required (writes NAME.key and NAME.pub)");
    char pub[41], sec[41];
    if (zmq_curve_keypair(pub, sec))
        return cli_fail("keygen", 1, "this libzmq has no CURVE support");
    char path[4096];
    snprintf(path, sizeof path, "%s.key", k.out);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return cli_fail("keygen", 1, "%s: cannot create: %s", path, strerror(errno));
    FILE *f = fdopen(fd, "w");
    int bad = !f || fprintf(f, "public %s\nsecret %s\n", pub, sec) < 0;
    if (f)
        bad |= fclose(f) != 0;
    else
        close(fd);
    if (bad)
        return cli_fail("keygen", 1, "%s: cannot write", path);
    snprintf(path, sizeof path, "%s.pub", k.out);
    f = fopen(path, "wx");
    if (!f || fprintf(f, "%s\n", pub) < 0 || fclose(f) != 0)
        return cli_fail("keygen", 1, "%s: cannot write", path);
    printf("%s\n", pub);
    return 0;
}
