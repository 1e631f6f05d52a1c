/* tokenizer.c — SentencePiece BPE encoding and decoding (see tokenizer.h).
 *
 * Encoding is the sentencepiece library's, step for step:
 *  1. normalise (identity rules): an invalid UTF-8 byte becomes U+FFFD;
 *     with remove_extra_whitespaces, leading spaces go, runs of spaces fold
 *     into one and trailing spaces go; with add_dummy_prefix a space is put
 *     in front of non-empty text. Only ' ' (0x20) is whitespace. A literal
 *     U+2581 becomes ' ' too: sentencepiece writes spaces as U+2581, so it
 *     cannot tell the two apart, and our pieces store spaces as ' '.
 *  2. split into characters; a user-defined piece found at a position is
 *     taken whole (longest first) and never merged;
 *  3. merge the adjacent pair whose concatenation is a NORMAL, USER_DEFINED
 *     or UNUSED piece with the highest score, leftmost on ties, until none
 *     is left (a heap of candidate pairs, stale ones skipped when popped:
 *     O(n log n));
 *  4. a symbol that is an UNUSED piece is split back into the two symbols it
 *     was merged from (recursively); every symbol then becomes its id, or
 *     with byte fallback (all 256 <0xNN> pieces present) one byte id per
 *     byte, or else the unknown id, a run of unknown symbols giving one.
 *
 * Choices where the library leaves one open:
 *  - Text never produces CONTROL, UNKNOWN or BYTE ids by matching their
 *    strings ("<s>" in text is just characters).
 *  - With no unknown piece and no byte fallback, unknown text becomes id 0.
 *  - Decoding an UNKNOWN piece gives " \u2047 " (sentencepiece's default
 *    unk_surface), a CONTROL piece gives "", a byte piece its byte.
 *  - llama2.c .bin files carry no piece types: "<unk>" is UNKNOWN,
 *    "\n<s>\n" and "\n</s>\n" are CONTROL (and BOS/EOS; else ids 1 and 2),
 *    "<0xNN>" (uppercase hex) is BYTE, everything else NORMAL. A piece
 *    longer than the file's max_token_length is accepted (that number only
 *    sizes llama2.c's buffers); a negative one is not.
 *  - A .model sidecar must hold as many pieces as the .bin. One with a
 *    non-empty precompiled_charsmap (a normaliser other than identity, such
 *    as nmt_nfkc) is refused with Q35_ERR_UNSUPPORTED rather than ignored:
 *    encoding without its rules would silently differ from sentencepiece.
 */
#include "tokenizer/tokenizer.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/checked.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/mapfile.h"
#include "tokenizer/spmodel.h"

struct q35_tokenizer {
    int n;                  /* number of pieces: ids 0 .. n-1 */
    char *bytes;            /* all piece bytes, each piece followed by NUL */
    uint64_t *off;          /* piece id starts at bytes + off[id] */
    uint32_t *len;          /* and is len[id] bytes long */
    float *score;           /* merge priority: higher merges first */
    uint8_t *type;          /* enum q35_piece_type of each piece */
    int bos, eos;           /* -1 when the vocabulary has none */
    int unk_out;            /* id given to unknown text */
    int byte_id[256];       /* id of the piece <0xNN> for byte NN, or -1 */
    int byte_fallback;      /* 1 when all 256 byte pieces exist */
    int has_unused;         /* some piece is UNUSED (step 4 resegments) */
    uint32_t max_merge_len; /* longest mergeable piece, in bytes */
    /* Open-addressing hash table of the mergeable pieces (NORMAL,
     * USER_DEFINED, UNUSED): slot[i] is an id or -1; mask = slots - 1. */
    int32_t *slot;
    uint64_t mask;
    /* Distinct lengths of the USER_DEFINED pieces, longest first, and which
     * bytes such a piece can start with. */
    uint32_t *ud_len;
    int n_ud_len;
    uint8_t ud_first[256];
    q35_tokenizer_opts opts;
};

/* What sentencepiece prints for an unknown piece: " ⁇ " */
static const char UNK_SURFACE[] = " \xe2\x81\x87 ";

static int mergeable(int type) {
    return type == Q35_PIECE_NORMAL || type == Q35_PIECE_USER_DEFINED ||
           type == Q35_PIECE_UNUSED;
}

/* ---- piece lookup ------------------------------------------------------ */

/* The id of the mergeable piece spelled by s[0..n), or -1. */
static int lookup(const q35_tokenizer *t, const char *s, size_t n) {
    if (n > t->max_merge_len) return -1;
    for (uint64_t i = q35_hash_bytes(s, n) & t->mask;; i = (i + 1) & t->mask) {
        int id = t->slot[i];
        if (id < 0) return -1;
        if (t->len[id] == n && memcmp(t->bytes + t->off[id], s, n) == 0)
            return id;
    }
}

/* The byte NN if the n bytes at s are exactly "<0xNN>" (uppercase hex),
 * else -1. */
static int parse_byte_piece(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        if (c >= '0' && c <= '9') v = v * 16 + (c - '0');
        else if (c >= 'A' && c <= 'F') v = v * 16 + (c - 'A' + 10);
        else return -1;
    }
    return v;
}

static int piece_is(const q35_tokenizer *t, int id, const char *s) {
    size_t n = strlen(s);
    return t->len[id] == n && memcmp(t->bytes + t->off[id], s, n) == 0;
}

static int find_piece(const q35_tokenizer *t, const char *s) {
    for (int i = 0; i < t->n; i++)
        if (piece_is(t, i, s)) return i;
    return -1;
}

/* ---- building ---------------------------------------------------------- */

static void *alloc_array(uint64_t count, uint64_t size) {
    uint64_t bytes;
    if (q35_mul_u64(count, size, &bytes) || bytes > SIZE_MAX) return NULL;
    return malloc(bytes ? (size_t)bytes : 1);
}

static int cmp_desc_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x < y) - (x > y);
}

/* Fills the hash table and the user-defined lengths from the pieces. */
static int build_index(q35_tokenizer *t) {
    uint64_t n_merge = 0, n_ud = 0;
    for (int i = 0; i < t->n; i++) {
        n_merge += mergeable(t->type[i]) ? 1 : 0;
        n_ud += t->type[i] == Q35_PIECE_USER_DEFINED;
    }
    uint64_t cap = 16;
    while (cap < 2 * n_merge) cap *= 2;
    t->slot = alloc_array(cap, sizeof *t->slot);
    t->ud_len = alloc_array(n_ud, sizeof *t->ud_len);
    if (!t->slot || !t->ud_len) return Q35_ERR_NOMEM;
    memset(t->slot, 0xff, (size_t)cap * sizeof *t->slot); /* all -1 */
    t->mask = cap - 1;

    for (int id = 0; id < t->n; id++) {
        if (!mergeable(t->type[id])) continue;
        const char *s = t->bytes + t->off[id];
        if (t->len[id] > t->max_merge_len) t->max_merge_len = t->len[id];
        if (lookup(t, s, t->len[id]) >= 0) continue; /* duplicate: first wins */
        uint64_t i = q35_hash_bytes(s, t->len[id]) & t->mask;
        while (t->slot[i] >= 0) i = (i + 1) & t->mask;
        t->slot[i] = id;
        if (t->type[id] == Q35_PIECE_USER_DEFINED && t->len[id] > 0) {
            t->ud_len[t->n_ud_len++] = t->len[id];
            t->ud_first[(uint8_t)s[0]] = 1;
        }
    }
    /* keep each user-defined length once, longest first */
    qsort(t->ud_len, (size_t)t->n_ud_len, sizeof *t->ud_len, cmp_desc_u32);
    int k = 0;
    for (int i = 0; i < t->n_ud_len; i++)
        if (k == 0 || t->ud_len[k - 1] != t->ud_len[i]) t->ud_len[k++] = t->ud_len[i];
    t->n_ud_len = k;
    return Q35_OK;
}

int q35_tokenizer_new(q35_tokenizer **out, int n, const char *const *pieces,
                      const uint32_t *lens, const float *scores,
                      const int32_t *types, int bos, int eos, int unk,
                      const q35_tokenizer_opts *opts, q35_error *err) {
    *out = NULL;
    if (n <= 0 || !pieces || !lens || !scores || !opts)
        return q35_fail(err, Q35_ERR_ARG,
                        "tokenizer: %d pieces or a NULL argument", n);
    if (bos < -1 || bos >= n || eos < -1 || eos >= n || unk < -1 || unk >= n)
        return q35_fail(err, Q35_ERR_ARG,
                        "tokenizer: bos %d, eos %d or unk %d outside [-1, %d)",
                        bos, eos, unk, n);
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        if (!pieces[i] && lens[i] > 0)
            return q35_fail(err, Q35_ERR_ARG, "tokenizer: piece %d is NULL", i);
        if (isnan(scores[i]))
            return q35_fail(err, Q35_ERR_ARG,
                            "tokenizer: piece %d has a NaN score", i);
        /* 0 is GGUF's "undefined" type, read as NORMAL */
        if (types && (types[i] < 0 || types[i] > Q35_PIECE_BYTE))
            return q35_fail(err, Q35_ERR_ARG,
                            "tokenizer: piece %d has unknown type %d", i,
                            (int)types[i]);
        if (q35_add_u64(total, (uint64_t)lens[i] + 1, &total))
            return q35_fail(err, Q35_ERR_ARG, "tokenizer: pieces too long");
    }

    q35_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return q35_fail(err, Q35_ERR_NOMEM, "tokenizer: out of memory");
    t->n = n;
    t->opts = *opts;
    t->bytes = alloc_array(total, 1);
    t->off = alloc_array((uint64_t)n, sizeof *t->off);
    t->len = alloc_array((uint64_t)n, sizeof *t->len);
    t->score = alloc_array((uint64_t)n, sizeof *t->score);
    t->type = alloc_array((uint64_t)n, sizeof *t->type);
    if (!t->bytes || !t->off || !t->len || !t->score || !t->type) goto nomem;

    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        const char *s = pieces[i];
        t->off[i] = at;
        t->len[i] = lens[i];
        t->score[i] = scores[i];
        if (lens[i]) memcpy(t->bytes + at, s, lens[i]);
        t->bytes[at + lens[i]] = '\0';
        at += (uint64_t)lens[i] + 1;
        if (types) {
            t->type[i] = (uint8_t)(types[i] ? types[i] : Q35_PIECE_NORMAL);
        } else if (piece_is(t, i, "<unk>")) {
            t->type[i] = Q35_PIECE_UNKNOWN;
        } else if (piece_is(t, i, "\n<s>\n") || piece_is(t, i, "\n</s>\n")) {
            t->type[i] = Q35_PIECE_CONTROL;
        } else if (parse_byte_piece(s, lens[i]) >= 0) {
            t->type[i] = Q35_PIECE_BYTE;
        } else {
            t->type[i] = Q35_PIECE_NORMAL;
        }
    }

    /* byte pieces, special ids */
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    int n_bytes = 0;
    for (int i = 0; i < n; i++) {
        if (t->type[i] == Q35_PIECE_UNUSED) t->has_unused = 1;
        if (t->type[i] != Q35_PIECE_BYTE) continue;
        int b = parse_byte_piece(t->bytes + t->off[i], t->len[i]);
        if (b >= 0 && t->byte_id[b] < 0) {
            t->byte_id[b] = i;
            n_bytes++;
        }
    }
    t->byte_fallback = n_bytes == 256;
    if (!types) { /* llama2.c conventions */
        if (bos < 0) bos = find_piece(t, "\n<s>\n");
        if (bos < 0 && n > 1) bos = 1;
        if (eos < 0) eos = find_piece(t, "\n</s>\n");
        if (eos < 0 && n > 2) eos = 2;
    }
    for (int i = 0; i < n && unk < 0; i++)
        if (t->type[i] == Q35_PIECE_UNKNOWN) unk = i;
    t->bos = bos;
    t->eos = eos;
    t->unk_out = unk >= 0 ? unk : 0;

    if (build_index(t) != Q35_OK) goto nomem;
    *out = t;
    return Q35_OK;
nomem:
    q35_tokenizer_free(t);
    return q35_fail(err, Q35_ERR_NOMEM, "tokenizer: out of memory (%d pieces)",
                    n);
}

void q35_tokenizer_free(q35_tokenizer *t) {
    if (!t) return;
    free(t->bytes);
    free(t->off);
    free(t->len);
    free(t->score);
    free(t->type);
    free(t->slot);
    free(t->ud_len);
    free(t);
}

/* ---- llama2.c files ---------------------------------------------------- */

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

/* ---- accessors --------------------------------------------------------- */

int q35_tokenizer_n_vocab(const q35_tokenizer *t) { return t->n; }
int q35_tokenizer_bos(const q35_tokenizer *t) { return t->bos; }
int q35_tokenizer_eos(const q35_tokenizer *t) { return t->eos; }
const q35_tokenizer_opts *q35_tokenizer_options(const q35_tokenizer *t) {
    return &t->opts;
}

const char *q35_tokenizer_piece(const q35_tokenizer *t, int id, uint32_t *len) {
    if (id < 0 || id >= t->n) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = t->len[id];
    return t->bytes + t->off[id];
}

int q35_tokenizer_piece_type(const q35_tokenizer *t, int id) {
    return id >= 0 && id < t->n ? t->type[id] : 0;
}

float q35_tokenizer_score(const q35_tokenizer *t, int id) {
    return id >= 0 && id < t->n ? t->score[id] : 0.0f;
}

/* ---- normalisation ----------------------------------------------------- */

/* Length of the valid UTF-8 character at s (n > 0 bytes left), or 0 if the
 * byte there does not start one. Overlong forms, surrogates and code
 * points past U+10FFFF are invalid, as in sentencepiece. */
static size_t utf8_char(const uint8_t *s, size_t n) {
    uint32_t c;
    size_t len;
    if (s[0] < 0x80) return 1;
    if ((s[0] & 0xe0) == 0xc0) len = 2, c = s[0] & 0x1f;
    else if ((s[0] & 0xf0) == 0xe0) len = 3, c = s[0] & 0x0f;
    else if ((s[0] & 0xf8) == 0xf0) len = 4, c = s[0] & 0x07;
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < min[len] || c > 0x10ffff || (c >= 0xd800 && c < 0xe000)) return 0;
    return len;
}

/* Writes the normalised form of s[0..n) to out (room for 3n + 1 bytes) and
 * returns its length. */
static size_t normalize(const q35_tokenizer_opts *o, const uint8_t *s, size_t n,
                        char *out) {
    int fold = o->remove_extra_whitespaces;
    size_t i = 0, k = 0;
    if (fold)
        while (i < n && s[i] == ' ') i++;
    if (i == n) return 0;
    if (o->add_dummy_prefix) out[k++] = ' ';
    int prev_space = fold; /* drop a space that follows a kept space */
    while (i < n) {
        size_t len = utf8_char(s + i, n - i);
        if (s[i] == ' ') {
            if (!prev_space) out[k++] = ' ';
            prev_space = fold;
        } else if (len == 0) { /* invalid byte: U+FFFD, one byte consumed */
            memcpy(out + k, "\xef\xbf\xbd", 3);
            k += 3;
            len = 1;
            prev_space = 0;
        } else if (len == 3 && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
            out[k++] = ' '; /* U+2581: a space, but not for folding */
            prev_space = 0;
        } else {
            memcpy(out + k, s + i, len);
            k += len;
            prev_space = 0;
        }
        i += len;
    }
    if (fold)
        while (k > 0 && out[k - 1] == ' ') k--;
    return k;
}

/* ---- BPE --------------------------------------------------------------- */

/* A run of the normalised text that is, so far, one token. */
typedef struct symbol {
    int start, len; /* its bytes; len 0 once merged into its left neighbour */
    int prev, next; /* live neighbours, -1 at either end */
    int node;       /* its node in the merge tree */
    int frozen;     /* a user-defined piece: never merged */
} symbol;

/* How a symbol was made: from two others, or (left = -1) a character. */
typedef struct node {
    int start, len, left, right;
} node;

/* A candidate merge of symbols left and right (adjacent when queued). */
typedef struct pair {
    float score; /* the score of the piece they would make */
    int left, right;
    int len;     /* their total bytes when queued: if it changed, stale */
} pair;

/* Heap order: higher score first, then the leftmost. */
static int pair_before(const pair *a, const pair *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(pair *h, int *n, pair p) {
    int i = (*n)++;
    while (i > 0 && pair_before(&p, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = p;
}

static pair heap_pop(pair *h, int *n) {
    pair top = h[0], last = h[--*n];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && pair_before(&h[c + 1], &h[c])) c++;
        if (!pair_before(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0) h[i] = last;
    return top;
}

/* The working state of one encode call. */
typedef struct bpe {
    const q35_tokenizer *t;
    const char *text; /* normalised text */
    symbol *sym;
    node *nodes;
    int n_nodes;
    pair *heap;
    int n_heap;
    int *out;         /* ids written so far */
    int n_out;
    int prev_unk;     /* the last id written stands for unknown text */
} bpe;

/* Queues the merge of symbols l and r if they make a mergeable piece. */
static void try_pair(bpe *b, int l, int r) {
    if (l < 0 || r < 0 || b->sym[l].frozen || b->sym[r].frozen) return;
    int len = b->sym[l].len + b->sym[r].len;
    int id = lookup(b->t, b->text + b->sym[l].start, (size_t)len);
    if (id < 0) return;
    pair p = {b->t->score[id], l, r, len};
    heap_push(b->heap, &b->n_heap, p);
}

/* Length of the longest user-defined piece at s (n bytes left), or 0. */
static int match_user_defined(const q35_tokenizer *t, const char *s, size_t n) {
    if (!t->ud_first[(uint8_t)s[0]]) return 0;
    for (int i = 0; i < t->n_ud_len; i++) {
        if (t->ud_len[i] > n) continue;
        int id = lookup(t, s, t->ud_len[i]);
        if (id >= 0 && t->type[id] == Q35_PIECE_USER_DEFINED)
            return (int)t->ud_len[i];
    }
    return 0;
}

/* Writes the ids for bytes [start, start+len) that make piece id (-1 if
 * none). */
static void emit(bpe *b, int id, int start, int len) {
    const q35_tokenizer *t = b->t;
    if (id >= 0) {
        b->out[b->n_out++] = id;
        b->prev_unk = 0;
    } else if (t->byte_fallback) {
        for (int i = 0; i < len; i++)
            b->out[b->n_out++] = t->byte_id[(uint8_t)b->text[start + i]];
        b->prev_unk = 0;
    } else {
        if (!b->prev_unk) b->out[b->n_out++] = t->unk_out;
        b->prev_unk = 1;
    }
}

/* Emits symbol s, splitting an UNUSED piece back into the symbols it was
 * made of (stack has room for every node). */
static void emit_symbol(bpe *b, const symbol *s, int *stack) {
    int top = 0;
    stack[top++] = s->node;
    while (top > 0) {
        const node *nd = &b->nodes[stack[--top]];
        int id = lookup(b->t, b->text + nd->start, (size_t)nd->len);
        if (id >= 0 && b->t->type[id] == Q35_PIECE_UNUSED && nd->left >= 0) {
            stack[top++] = nd->right;
            stack[top++] = nd->left;
        } else {
            emit(b, id, nd->start, nd->len);
        }
    }
}

/* Encodes the n normalised bytes of b->text (n > 0), appending to b->out. */
static int bpe_encode(bpe *b, int n) {
    const q35_tokenizer *t = b->t;
    /* n characters at most: n symbols, 2n nodes, 3n queued pairs */
    b->sym = alloc_array((uint64_t)n, sizeof *b->sym);
    b->nodes = alloc_array(2 * (uint64_t)n, sizeof *b->nodes);
    b->heap = alloc_array(3 * (uint64_t)n, sizeof *b->heap);
    int *stack = alloc_array(2 * (uint64_t)n, sizeof *stack);
    if (!b->sym || !b->nodes || !b->heap || !stack) {
        free(stack);
        return Q35_ERR_NOMEM;
    }

    /* characters (or whole user-defined pieces) */
    int n_sym = 0;
    for (int i = 0; i < n;) {
        const char *s = b->text + i;
        int len = t->n_ud_len ? match_user_defined(t, s, (size_t)(n - i)) : 0;
        int frozen = len > 0;
        if (!frozen) {
            uint8_t c = (uint8_t)s[0];
            len = c < 0xc0 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
            if (len > n - i) len = n - i;
        }
        symbol *sy = &b->sym[n_sym];
        sy->start = i;
        sy->len = len;
        sy->prev = n_sym - 1;
        sy->next = i + len < n ? n_sym + 1 : -1;
        sy->frozen = frozen;
        sy->node = b->n_nodes;
        b->nodes[b->n_nodes++] = (node){i, len, -1, -1};
        n_sym++;
        i += len;
    }
    for (int i = 0; i + 1 < n_sym; i++) try_pair(b, i, i + 1);

    /* merge the best pair until none is left */
    while (b->n_heap > 0) {
        pair p = heap_pop(b->heap, &b->n_heap);
        symbol *l = &b->sym[p.left], *r = &b->sym[p.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != p.len)
            continue; /* stale: one side was merged since */
        b->nodes[b->n_nodes] = (node){l->start, p.len, l->node, r->node};
        l->node = b->n_nodes++;
        l->len = p.len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0) b->sym[r->next].prev = p.left;
        try_pair(b, l->prev, p.left);
        try_pair(b, p.left, l->next);
    }

    for (int i = 0; i >= 0; i = b->sym[i].next) {
        const symbol *s = &b->sym[i];
        if (t->has_unused)
            emit_symbol(b, s, stack);
        else
            emit(b, lookup(t, b->text + s->start, (size_t)s->len), s->start,
                 s->len);
    }
    free(stack);
    return Q35_OK;
}

int q35_tokenizer_encode(const q35_tokenizer *t, const char *text, size_t len,
                         int add_bos, int **ids, int *n_ids, q35_error *err) {
    *ids = NULL;
    *n_ids = 0;
    if (!text && len > 0)
        return q35_fail(err, Q35_ERR_ARG, "tokenizer: text is NULL");
    if (len > (size_t)(INT_MAX / 4))
        return q35_fail(err, Q35_ERR_ARG,
                        "tokenizer: text of %zu bytes is too long to encode",
                        len);
    if (add_bos && t->bos < 0)
        return q35_fail(err, Q35_ERR_ARG,
                        "tokenizer: BOS asked for but the vocabulary has none");

    char *norm = malloc(3 * len + 1);
    if (!norm) return q35_fail(err, Q35_ERR_NOMEM, "tokenizer: out of memory");
    int n = (int)normalize(&t->opts, (const uint8_t *)text, len, norm);

    bpe b = {0};
    b.t = t;
    b.text = norm;
    b.out = malloc(((size_t)n + 1) * sizeof *b.out); /* one id per byte at most */
    int rc = b.out ? Q35_OK : Q35_ERR_NOMEM;
    if (rc == Q35_OK && add_bos) b.out[b.n_out++] = t->bos;
    if (rc == Q35_OK && n > 0) rc = bpe_encode(&b, n);
    free(b.sym);
    free(b.nodes);
    free(b.heap);
    free(norm);
    if (rc) {
        free(b.out);
        return q35_fail(err, rc, "tokenizer: out of memory encoding %zu bytes",
                        len);
    }
    if (b.n_out == 0) {
        free(b.out);
        b.out = NULL;
    }
    *ids = b.out;
    *n_ids = b.n_out;
    return Q35_OK;
}

/* ---- decoding ---------------------------------------------------------- */

size_t q35_tokenizer_decode(const q35_tokenizer *t, int prev, int token,
                            char *buf, size_t cap) {
    const char *s = "";
    size_t n = 0;
    char byte;
    if (token >= 0 && token < t->n) {
        int type = t->type[token];
        const char *piece = t->bytes + t->off[token];
        int b = type == Q35_PIECE_BYTE ? parse_byte_piece(piece, t->len[token]) : -1;
        if (type == Q35_PIECE_CONTROL) {
            n = 0;
        } else if (type == Q35_PIECE_UNKNOWN) {
            s = UNK_SURFACE;
            n = sizeof UNK_SURFACE - 1;
        } else if (b >= 0) {
            byte = (char)b;
            s = &byte;
            n = 1;
        } else {
            s = piece;
            n = t->len[token];
            if (t->bos >= 0 && prev == t->bos && n > 0 && s[0] == ' ') {
                s++; /* the dummy prefix of the first word */
                n--;
            }
        }
    }
    if (cap == 0) return 0;
    if (n > cap - 1) n = cap - 1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return n;
}
