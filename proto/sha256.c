/* sha256.c - artifact hashes (libsodium), and their hex form. */
#include "pvf_proto.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

int pvf_sha256_file(const char *path, pvf_sha256 *out, pvf_err *err) {
    /* Idempotent and thread-safe; libsodium asks for it before any use. */
    if (sodium_init() < 0)
        return pvf_err_set(err, "%s: libsodium failed to initialise", path);
    FILE *f = fopen(path, "rb");
    if (!f)
        return pvf_err_set(err, "%s: %s", path, strerror(errno));
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    unsigned char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        crypto_hash_sha256_update(&st, buf, n);
    int failed = ferror(f);
    int saved = errno;
    fclose(f);
    if (failed)
        return pvf_err_set(err, "%s: read failed: %s", path, strerror(saved));
    crypto_hash_sha256_final(&st, out->b);
    return 0;
}

void pvf_sha256_hex(const pvf_sha256 *s, char out[65]) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = digits[s->b[i] >> 4];
        out[2 * i + 1] = digits[s->b[i] & 15];
    }
    out[64] = '\0';
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int pvf_sha256_parse(const char *hex, pvf_sha256 *s) {
    if (!hex || strnlen(hex, 65) != 64)
        return -1;
    pvf_sha256 v;
    for (int i = 0; i < 32; i++) {
        int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        v.b[i] = (uint8_t)(hi << 4 | lo);
    }
    *s = v;
    return 0;
}
