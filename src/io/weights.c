#include "io/weights.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/dtype.h"

q35_tensor *q35_weights_add(q35_weights *w, int dtype, int n_dims,
                            const int64_t *ne, const void *data,
                            const char *fmt, ...) {
    q35_tensor *grown = realloc(w->tensors, (size_t)(w->n_tensors + 1) * sizeof *grown);
    if (!grown) return NULL;
    w->tensors = grown;
    q35_tensor *t = &w->tensors[w->n_tensors++];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->dtype = dtype;
    t->n_dims = n_dims;
    uint64_t n = 1;
    for (int i = 0; i < Q35_MAX_DIMS; i++) {
        t->ne[i] = i < n_dims ? ne[i] : 1;
        n *= (uint64_t)t->ne[i];
    }
    /* callers have checked the sizes against the file already */
    if (t->ne[0] < 1 ||
        q35_dtype_tensor_bytes(dtype, t->ne[0], (int64_t)(n / (uint64_t)t->ne[0]), &t->nbytes) != 0)
        t->nbytes = 0;
    t->data = data;
    t->stored_dtype = dtype;
    t->stored_nbytes = t->nbytes;
    return t;
}

int q35_weights_own(q35_weights *w, void *buf) {
    void **grown = realloc(w->owned, (size_t)(w->n_owned + 1) * sizeof *grown);
    if (!grown) {
        free(buf);
        return -1;
    }
    w->owned = grown;
    w->owned[w->n_owned++] = buf;
    return 0;
}

const q35_tensor *q35_weights_find(const q35_weights *w, const char *name) {
    for (int i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0) return &w->tensors[i];
    return NULL;
}

void q35_weights_free(q35_weights *w) {
    if (!w) return;
    for (int i = 0; i < w->n_owned; i++) free(w->owned[i]);
    free(w->owned);
    free(w->tensors);
    q35_mapfile_close(&w->file);
    for (int i = 0; i < w->n_extra_files; i++) q35_mapfile_close(&w->extra_files[i]);
    free(w->extra_files);
    memset(w, 0, sizeof *w);
}
