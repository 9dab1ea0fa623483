#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pvf_config_load(pvf_config *c, const char *path, pvf_err *err) {
    memset(c, 0, sizeof *c);
    json_error_t je;
    FILE *f = fopen(path, "rb");
    if (!f)
        return pvf_err_set(err, "%s: %s", path, strerror(errno));
    c->root = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
    fclose(f);
    if (!c->root)
        return pvf_err_set(err, "%s: line %d: %s", path, je.line, je.text);
    if (!json_is_object(c->root)) {
        json_decref(c->root);
        c->root = NULL;
        return pvf_err_set(err, "%s: top level must be a JSON object", path);
    }
    c->path = strdup(path);
    if (!c->path) {
        json_decref(c->root);
        c->root = NULL;
        return pvf_err_set(err, "%s: out of memory", path);
    }
    return 0;
}

void pvf_config_free(pvf_config *c) {
    json_decref(c->root);
    free(c->path);
    memset(c, 0, sizeof *c);
}

const char *pvf_config_arch(const pvf_config *c) {
    json_t *type = json_object_get(c->root, "model_type");
    if (type)
        return json_string_value(type); /* NULL when not a string: no architecture */
    json_t *a = json_object_get(c->root, "architectures");
    return json_string_value(json_array_get(a, 0));
}

static int int_value(const pvf_config *c, const char *key, const json_t *v, int64_t min,
                     int64_t max, int64_t *out, pvf_err *err) {
    if (!json_is_integer(v))
        return pvf_err_set(err, "%s: '%s' must be an integer", c->path, key);
    int64_t x = (int64_t)json_integer_value(v);
    if (x < min || x > max)
        return pvf_err_set(err, "%s: '%s' is %" PRId64 ", expected %" PRId64 "..%" PRId64, c->path,
                           key, x, min, max);
    *out = x;
    return 0;
}

int pvf_config_int(const pvf_config *c, const char *key, int64_t min, int64_t max, int64_t *out,
                   pvf_err *err) {
    json_t *v = json_object_get(c->root, key);
    if (!v)
        return pvf_err_set(err, "%s: missing '%s'", c->path, key);
    return int_value(c, key, v, min, max, out, err);
}

int pvf_config_int_or(const pvf_config *c, const char *key, int64_t def, int64_t min, int64_t max,
                      int64_t *out, pvf_err *err) {
    json_t *v = json_object_get(c->root, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    return int_value(c, key, v, min, max, out, err);
}

int pvf_config_double_or(const pvf_config *c, const char *key, double def, double *out,
                         pvf_err *err) {
    json_t *v = json_object_get(c->root, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_number(v))
        return pvf_err_set(err, "%s: '%s' must be a number", c->path, key);
    *out = json_number_value(v);
    return 0;
}

int pvf_config_int_array(const pvf_config *c, const char *key, int64_t min, int64_t max,
                         int64_t *out, int cap, int *n, pvf_err *err) {
    json_t *a = json_object_get(c->root, key);
    if (!a)
        return pvf_err_set(err, "%s: missing '%s'", c->path, key);
    if (!json_is_array(a) || json_array_size(a) == 0 || json_array_size(a) > (size_t)cap)
        return pvf_err_set(err, "%s: '%s' must be an array of 1..%d integers", c->path, key, cap);
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) {
        char name[128];
        snprintf(name, sizeof name, "%s[%zu]", key, i);
        if (int_value(c, name, v, min, max, &out[i], err))
            return -1;
    }
    *n = (int)json_array_size(a);
    return 0;
}

const char *pvf_config_label(const pvf_config *c, int64_t i) {
    char key[32];
    snprintf(key, sizeof key, "%" PRId64, i);
    return json_string_value(json_object_get(json_object_get(c->root, "id2label"), key));
}
