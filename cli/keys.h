/* keys.h - CURVE key files: NAME.pub holds the Z85 public key, NAME.key the
 * public and the secret key ("public KEY" and "secret KEY" lines, mode 600). */
#ifndef PVF_CLI_KEYS_H
#define PVF_CLI_KEYS_H

#include "pvf_common.h"

/* Reads a key pair file into pub[41], sec[41]. */
int cli_read_keypair(const char *path, char pub[41], char sec[41], pvf_err *err);
/* Reads a public key: a .pub file, a key pair file, or the key itself. */
int cli_read_public(const char *path_or_key, char pub[41], pvf_err *err);

#endif
