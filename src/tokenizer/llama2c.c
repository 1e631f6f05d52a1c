/* llama2c.c — llama2.c's tokenizer .bin (int32 max_token_length, then
 * per piece: float score, int32 length, bytes), with the normaliser
 * options of a SentencePiece .model of the same stem beside it.
 *
 *  - A piece longer than the file's max_token_length is accepted (that
 *    number only sizes llama2.c's buffers); a negative one is not.
 *  - A .model sidecar must hold as many pieces as the .bin. One with a
 *    non-empty precompiled_charsmap (a normaliser other than identity, such
 *    as nmt_nfkc) is refused with Q35_ERR_UNSUPPORTED rather than ignored:
 *    encoding without its rules would silently differ from sentencepiece. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/checked.h"
#include "core/error.h"
#include "core/mapfile.h"
#include "tokenizer/spmodel.h"
#include "tokenizer/tok_internal.h"

static void *alloc_array(uint64_t count, uint64_t size) {
    uint64_t bytes;
    if (q35_mul_u64(count, size, &bytes) || bytes > SIZE_MAX) return NULL;
    return malloc(bytes ? (size_t)bytes : 1);
}

static int32_t read_i32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* The path of the .model beside path (same stem), malloc'ed; NULL if out
 * of memory. */
static char *sidecar_path(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t stem = dot && dot != base ? (size_t)(dot - path) : strlen(path);
    char *s = malloc(stem + sizeof ".model");
    if (!s) return NULL;
    memcpy(s, path, stem);
    memcpy(s + stem, ".model", sizeof ".model");
    return s;
}

/* Sets opts from the .model beside path if there is one, else to
 * llama2.c's behaviour. */
static int read_sidecar(const char *path, int n_pieces, q35_tokenizer_opts *opts,
                        q35_error *err) {
    opts->add_dummy_prefix = 1;
    opts->remove_extra_whitespaces = 0;
    char *side = sidecar_path(path);
    if (!side) return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", path);
    struct stat st;
    if (strcmp(side, path) == 0 ||
        (stat(side, &st) != 0 && (errno == ENOENT || errno == ENOTDIR))) {
        free(side);
        return Q35_OK; /* no sidecar */
    }
    q35_spmodel_info info;
    int rc = q35_spmodel_read(side, &info, err);
    if (rc == Q35_OK && info.n_pieces != n_pieces)
        rc = q35_fail(err, Q35_ERR_FORMAT,
                      "%s: sidecar %s holds %d pieces, this file %d", path,
                      side, info.n_pieces, n_pieces);
    else if (rc == Q35_OK && info.charsmap_bytes > 0)
        rc = q35_fail(err, Q35_ERR_UNSUPPORTED,
                      "%s: sidecar %s: normalizer \"%s\" has %llu bytes of "
                      "rules; q35 only runs the identity normalizer",
                      path, side, info.name,
                      (unsigned long long)info.charsmap_bytes);
    else if (rc && err) { /* say which tokenizer it was read for */
        char msg[sizeof err->msg];
        memcpy(msg, err->msg, sizeof msg);
        q35_fail(err, rc, "%s: sidecar %s", path, msg);
    }
    if (rc == Q35_OK) {
        opts->add_dummy_prefix = info.add_dummy_prefix;
        opts->remove_extra_whitespaces = info.remove_extra_whitespaces;
    }
    free(side);
    return rc;
}

int q35_tokenizer_load_llama2c(q35_tokenizer **out, const char *path,
                               int expected_vocab, q35_error *err) {
    *out = NULL;
    q35_mapfile mf;
    int rc = q35_mapfile_open(&mf, path, err);
    if (rc) return rc;
    const uint8_t *d = mf.data;
    uint64_t size = mf.size;
    const char **pieces = NULL;
    uint32_t *lens = NULL;
    float *scores = NULL;

    if (size == 0) {
        rc = q35_fail(err, Q35_ERR_FORMAT, "%s: empty file", path);
        goto done;
    }
    if (size < 4) {
        rc = q35_fail(err, Q35_ERR_FORMAT,
                      "%s: %llu bytes, too short for max_token_length", path,
                      (unsigned long long)size);
        goto done;
    }
    int32_t max_len = read_i32(d);
    if (max_len < 0) {
        rc = q35_fail(err, Q35_ERR_FORMAT, "%s: negative max_token_length %d",
                      path, (int)max_len);
        goto done;
    }

    /* First pass: check every entry and count them. */
    int n = 0;
    for (uint64_t pos = 4; pos < size; n++) {
        if (size - pos < 8) {
            rc = q35_fail(err, Q35_ERR_FORMAT,
                          "%s: piece %d at byte %llu is cut off (%llu bytes "
                          "left, its header needs 8)",
                          path, n, (unsigned long long)pos,
                          (unsigned long long)(size - pos));
            goto done;
        }
        float score;
        memcpy(&score, d + pos, 4);
        int32_t len = read_i32(d + pos + 4);
        if (isnan(score)) {
            rc = q35_fail(err, Q35_ERR_FORMAT, "%s: piece %d has a NaN score",
                          path, n);
            goto done;
        }
        if (len < 0) {
            rc = q35_fail(err, Q35_ERR_FORMAT,
                          "%s: piece %d has negative length %d", path, n,
                          (int)len);
            goto done;
        }
        pos += 8;
        if ((uint64_t)len > size - pos) {
            rc = q35_fail(err, Q35_ERR_FORMAT,
                          "%s: piece %d length %d runs past the end of the "
                          "file (%llu bytes left)",
                          path, n, (int)len, (unsigned long long)(size - pos));
            goto done;
        }
        pos += (uint64_t)len;
        if (n == INT_MAX - 1) {
            rc = q35_fail(err, Q35_ERR_FORMAT, "%s: too many pieces", path);
            goto done;
        }
    }
    if (n == 0) {
        rc = q35_fail(err, Q35_ERR_FORMAT, "%s: holds no pieces", path);
        goto done;
    }
    if (expected_vocab > 0 && n != expected_vocab) {
        rc = q35_fail(err, Q35_ERR_FORMAT,
                      "%s: holds %d pieces, expected %d (the model's vocab_size)",
                      path, n, expected_vocab);
        goto done;
    }

    /* Second pass: point at each piece inside the mapping. */
    pieces = alloc_array((uint64_t)n, sizeof *pieces);
    lens = alloc_array((uint64_t)n, sizeof *lens);
    scores = alloc_array((uint64_t)n, sizeof *scores);
    if (!pieces || !lens || !scores) {
        rc = q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    uint64_t pos = 4;
    for (int i = 0; i < n; i++) {
        memcpy(&scores[i], d + pos, 4);
        lens[i] = (uint32_t)read_i32(d + pos + 4);
        pieces[i] = (const char *)d + pos + 8;
        pos += 8 + (uint64_t)lens[i];
    }

    q35_tokenizer_opts opts;
    rc = read_sidecar(path, n, &opts, err);
    if (rc) goto done;
    rc = q35_tokenizer_new(out, n, pieces, lens, scores, NULL, -1, -1, -1,
                           &opts, err);
    if (rc && err) { /* name the file in the message */
        char msg[sizeof err->msg];
        memcpy(msg, err->msg, sizeof msg);
        q35_fail(err, rc, "%s: %s", path, msg);
    }
done:
    free(pieces);
    free(lens);
    free(scores);
    q35_mapfile_close(&mf);
    return rc;
}
