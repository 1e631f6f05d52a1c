/* refs.h — readers for the oracle files under ../shared/reference. */
#ifndef Q35_TEST_REFS_H
#define Q35_TEST_REFS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "n_prompt=5 ids: 1 403 ...\ntext: ...\n": fills ids (malloc'ed), counts
 * and text (malloc'ed, without the trailing newline). Returns 0 on success. */
static inline int ref_greedy(const char *path, int **ids, int *n_ids, int *n_prompt, char **text) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    static char line[1 << 16];
    int cap = 0;
    *ids = NULL;
    *n_ids = 0;
    *text = NULL;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "n_prompt=", 9) == 0) {
            *n_prompt = atoi(line + 9);
            char *p = strstr(line, "ids:");
            if (!p) break;
            p += 4;
            for (char *end;; p = end) {
                long v = strtol(p, &end, 10);
                if (end == p) break;
                if (*n_ids == cap) *ids = realloc(*ids, (size_t)(cap = cap * 2 + 16) * sizeof **ids);
                (*ids)[(*n_ids)++] = (int)v;
            }
        } else if (strncmp(line, "text: ", 6) == 0) {
            /* the text may span several lines: take the rest of the file */
            size_t len = strlen(line + 6), tcap = len + 1;
            char *t = malloc(tcap);
            memcpy(t, line + 6, len + 1);
            while (fgets(line, sizeof line, f)) {
                size_t l = strlen(line);
                t = realloc(t, tcap += l);
                memcpy(t + len, line, l + 1);
                len += l;
            }
            if (len && t[len - 1] == '\n') t[--len] = '\0';
            *text = t;
        }
    }
    fclose(f);
    return *n_ids > 0 && *text ? 0 : -1;
}

/* "pos P token T logits v v v ..." lines: reads position pos's logits
 * into out (n values). Returns the count read, or -1. */
static inline int ref_logits(const char *path, int pos, float *out, int n) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    int got = -1, p, t;
    while (fscanf(f, " pos %d token %d logits", &p, &t) == 2) {
        int i = 0;
        float v;
        while (i < n && fscanf(f, "%f", &v) == 1) {
            if (p == pos) out[i] = v;
            i++;
        }
        if (p == pos) { got = i; break; }
    }
    fclose(f);
    return got;
}

#endif
