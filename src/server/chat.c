/* chat.c — conversations into prompts (chat.h). */
#include "server/chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct srv_chat {
    const q35_model *m;
};

int srv_chat_new(srv_chat **out, const q35_model *m, const char *model_path, q35_error *err) {
    (void)model_path;
    *out = calloc(1, sizeof **out);
    if (!*out) {
        if (err) {
            err->code = Q35_ERR_NOMEM;
            snprintf(err->msg, sizeof err->msg, "out of memory");
        }
        return Q35_ERR_NOMEM;
    }
    (*out)->m = m;
    return Q35_OK;
}

void srv_chat_free(srv_chat *c) { free(c); }

const char *srv_chat_describe(const srv_chat *c) {
    (void)c;
    return "fallback transcript (User:/Assistant: lines)";
}

/* Appends s to the growing buffer *b (length *n, capacity *cap). */
static int put(char **b, size_t *n, size_t *cap, const char *s) {
    const size_t len = strlen(s);
    if (*n + len + 1 > *cap) {
        size_t c = *cap ? *cap : 256;
        while (c < *n + len + 1) c *= 2;
        char *t = realloc(*b, c);
        if (!t) return -1;
        *b = t;
        *cap = c;
    }
    memcpy(*b + *n, s, len + 1);
    *n += len;
    return 0;
}

int srv_chat_tokens(const srv_chat *c, const srv_msg *msgs, int n, int **ids, int *n_ids, q35_error *err) {
    char *text = NULL;
    size_t len = 0, cap = 0;
    int ok = 1;
    for (int i = 0; i < n && ok; i++) {
        const char *role = msgs[i].role;
        if (!strcmp(role, "system") || !strcmp(role, "developer")) {
            ok = !put(&text, &len, &cap, msgs[i].content) && !put(&text, &len, &cap, "\n\n");
            continue;
        }
        const char *name = !strcmp(role, "user") ? "User" : !strcmp(role, "assistant") ? "Assistant" : role;
        ok = !put(&text, &len, &cap, name) && !put(&text, &len, &cap, ": ") &&
             !put(&text, &len, &cap, msgs[i].content) && !put(&text, &len, &cap, "\n");
    }
    ok = ok && !put(&text, &len, &cap, "Assistant:");
    if (!ok) {
        free(text);
        if (err) {
            err->code = Q35_ERR_NOMEM;
            snprintf(err->msg, sizeof err->msg, "out of memory");
        }
        return Q35_ERR_NOMEM;
    }
    const int rc = q35_tokenize(c->m, text, len, 1, ids, n_ids, err);
    free(text);
    return rc;
}
