/* tok_internal.h — the tokenizer's state, shared by the files of the module
 * (tokenizer.h is what the rest of q35 sees).
 *
 * One struct holds every kind of tokenizer q35 reads:
 *  - TOK_SPM: SentencePiece BPE by piece scores (llama2.c .bin, GGUF
 *    "llama"); spm.c, exact to the sentencepiece library;
 *  - TOK_BPE: BPE by merge ranks, as Hugging Face's tokenizers and
 *    llama.cpp run it (tokenizer.json, GGUF "gpt2" and "gemma4"); bpe.c;
 *  - TOK_WPM: WordPiece as llama.cpp runs BERT vocabularies (GGUF
 *    "bert"); wpm.c.
 * A BPE tokenizer runs a pipeline read from its file: added tokens split
 * out of the text (added.c), normalizer steps (normalize.c), pre-tokenizer
 * steps (pretok.c), the model (bpe.c), and for decoding decoder steps
 * (decode.c). Byte-level vocabularies (GPT-2's byte-to-unicode alphabet)
 * are stored as the raw bytes their pieces stand for (PF_RAW), so encoding
 * splits text into bytes and decoding copies them. */
#ifndef Q35_TOKENIZER_TOK_INTERNAL_H
#define Q35_TOKENIZER_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

enum { TOK_SPM = 1, TOK_BPE = 2, TOK_WPM = 3 };

/* Per-piece flags. */
enum {
    PF_SPECIAL = 1,      /* special: matched in text only with PARSE_SPECIAL,
                            decoded to "" without Q35_DECODE_SPECIAL */
    PF_ADDED = 2,        /* an added token: split out of the text whole */
    PF_RAW = 4,          /* byte-level piece stored as its raw bytes */
    PF_MODEL = 8,        /* in the model's vocabulary (BPE lookups see it) */
    PF_LSTRIP = 16,      /* added token options, as tokenizers' AddedToken */
    PF_RSTRIP = 32,
    PF_SINGLE_WORD = 64,
    PF_NORMALIZED = 128, /* matched in the normalized text */
    PF_INDEXED = 256     /* in the lookup hash (tok_index) */
};

/* Normalizer, pre-tokenizer and decoder steps. */
enum {
    /* normalizers */
    N_NFC = 1, N_NFD, N_NFKC, N_NFKD, N_REPLACE, N_PREPEND, N_STRIP,
    /* pre-tokenizers */
    P_SPLIT = 20, P_BYTELEVEL, P_METASPACE, P_DIGITS, P_WHITESPACE_SPLIT, P_WHITESPACE,
    /* decoders */
    D_BYTELEVEL = 40, D_REPLACE, D_BYTEFALLBACK, D_FUSE, D_STRIP, D_METASPACE
};

/* Split behaviours (tokenizers' SplitDelimiterBehavior). */
enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS };
/* Metaspace prepend schemes. */
enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER };

typedef struct tok_step {
    int kind;
    int a, b;            /* N_STRIP left/right; P_SPLIT behaviour/invert;
                            P_BYTELEVEL add_prefix_space/use_regex;
                            P_METASPACE, D_METASPACE prepend scheme/split;
                            P_DIGITS individual; D_STRIP start/stop */
    char *s1, *s2;       /* N_REPLACE, D_REPLACE: pattern, content;
                            N_PREPEND: text; P_METASPACE, D_METASPACE,
                            D_STRIP: the character (UTF-8) */
    size_t n1, n2;
    pcre2_code *re;      /* P_SPLIT, P_BYTELEVEL (use_regex), P_WHITESPACE,
                            N_REPLACE with a regex pattern */
} tok_step;

/* A trie over the added tokens' spellings (added.c). */
typedef struct tok_trie_node {
    int32_t child;       /* first child, -1 if none */
    int32_t sibling;     /* next child of the same parent, -1 if none */
    int32_t id;          /* token ending here, -1 if none */
    uint8_t byte;
} tok_trie_node;

typedef struct tok_trie {
    tok_trie_node *v;
    int n, cap;
    int32_t root_child[256]; /* children of the root by byte */
} tok_trie;

/* merges: (left id, right id) -> (rank, merged id), open addressing. */
typedef struct tok_merge {
    uint64_t key;        /* left << 32 | right; UINT64_MAX = empty */
    uint32_t rank;
    int32_t id;
} tok_merge;

struct q35_tokenizer {
    int model;              /* TOK_SPM or TOK_BPE */
    int n;                  /* pieces: ids 0 .. n-1 */
    char *bytes;            /* all piece bytes, each followed by NUL */
    uint64_t *off;          /* piece id starts at bytes + off[id] */
    uint32_t *len;          /* and is len[id] bytes long */
    float *score;           /* SPM merge priority; BPE: -(first rank making it) */
    uint8_t *type;          /* enum q35_piece_type */
    uint16_t *flags;        /* PF_* */
    int bos, eos, eot, eom, unk; /* -1 when absent */
    int add_bos, add_eos;   /* what Q35_TOKENIZE_ADD_SPECIAL adds (SPM, GGUF) */
    int *prefix, n_prefix;  /* or exactly these ids before and after the */
    int *suffix, n_suffix;  /* text (tokenizer.json's post-processor) */
    int use_template;       /* 1: prefix/suffix instead of add_bos/add_eos */
    int *eog, n_eog;        /* end-of-generation ids, ascending */

    /* ---- SPM (spm.c) ---- */
    int unk_out;            /* id given to unknown text */
    int byte_id[256];       /* id of the piece <0xNN> for byte NN, or -1 */
    int byte_fallback;      /* SPM: all 256 byte pieces exist; BPE: the
                               model falls back to them */
    int has_unused;
    uint32_t max_merge_len;
    int32_t *slot;          /* hash of the SPM-mergeable pieces / of the
                               BPE model's pieces; -1 = empty */
    uint64_t mask;
    uint32_t *ud_len;
    int n_ud_len;
    uint8_t ud_first[256];
    q35_tokenizer_opts opts;

    /* ---- BPE (bpe.c) ---- */
    tok_merge *merges;
    uint64_t merge_mask;
    int n_merges;
    int byte_level;         /* pieces are raw bytes; text splits into bytes */
    int raw_byte_id[256];   /* byte-level: the piece of each single byte */
    int ignore_merges;      /* a pre-token that is a piece is taken whole */
    int whole_newlines;     /* gemma4: a run of newlines that is a piece */
    int fuse_unk;
    int bpe_unk;            /* model.unk_token's id, or -1 (unknown text dropped) */
    uint32_t max_piece_len;

    /* ---- WPM (wpm.c) ---- */
    int wpm_lowercase, wpm_strip_accents;

    /* ---- the pipeline ---- */
    tok_step *norm, *pre, *dec;
    int n_norm, n_pre, n_dec;
    tok_trie added_raw;     /* added tokens matched before normalizing */
    tok_trie added_norm;    /* and after (PF_NORMALIZED) */

    /* ---- provenance, for writing GGUF (gguf_vocab.c) ---- */
    char gguf_model[16];    /* "llama", "gpt2", "gemma4" */
    char gguf_pre[48];      /* tokenizer.ggml.pre ("" if none) */
};

/* ---- vocab.c: building ---- */

/* Room in the array *v (a T **) of *cap elements of size bytes for an
 * element at index n: doubles it (first: the first capacity). */
int tok_grow(void *v, int *cap, int n, size_t size, int first);

/* An empty tokenizer of n pieces (arrays allocated, zeroed; ids -1). */
q35_tokenizer *tok_alloc(int n, uint64_t total_bytes);
/* Copies piece i (len bytes) into place; pieces must be set in id order. */
void tok_set_piece(q35_tokenizer *t, int i, const char *s, uint32_t len, uint64_t *at);
/* Hash of the pieces with any of the flags in `want` (PF_INDEXED; SPM:
 * PF_MODEL); duplicates keep the first id. Q35_ERR_NOMEM or 0. */
int tok_index(q35_tokenizer *t, int want);
/* The id spelled s[0..n) in the index, or -1. */
int tok_lookup(const q35_tokenizer *t, const char *s, size_t n);
/* The id of the piece spelled s exactly (any kind), or -1; linear. */
int tok_find(const q35_tokenizer *t, const char *s);
/* Fills the end-of-generation set: EOS, and with by_spelling (1:
 * tokenizer.json, 2: GGUF) also what llama.cpp finds by spelling (EOT,
 * EOM, <|im_end|>, ...; see vocab.c); with 2 those become control pieces. */
int tok_finish_specials(q35_tokenizer *t, int by_spelling);
/* The byte NN if s[0..n) is "<0xNN>" (uppercase hex), else -1. */
int tok_byte_piece(const char *s, size_t n);

/* ---- added.c ---- */
int tok_trie_add(tok_trie *tr, const char *s, size_t n, int id);
void tok_trie_free(tok_trie *tr);
/* Builds the added-token tries from the PF_ADDED pieces (normalized ones
 * through the normalizer); errors name file. */
int tok_build_added(q35_tokenizer *t, const char *file, q35_error *err);

/* A stretch of text or one token, as the added-token split yields them. */
typedef struct tok_frag {
    size_t off, len;     /* text bytes in the fragment's buffer */
    int id;              /* >= 0: this fragment is that token */
    int at_start;        /* text starting at the input's first byte */
} tok_frag;
typedef struct tok_frags {
    tok_frag *v;
    int n, cap;
} tok_frags;
/* Splits s[0..n) at the added tokens of tr (special ones only when
 * parse_special), appending to out. */
int tok_split_added(const q35_tokenizer *t, const tok_trie *tr, const char *s, size_t n,
                    size_t base, int at_start, int parse_special, tok_frags *out);

/* ---- normalize.c ---- */

/* A growing byte buffer. A non-zero limit caps its length: appending past
 * it fails with Q35_ERR_FORMAT (a normalizer that grows text without
 * bound, say a Sequence of Replace steps each doubling it). */
typedef struct tok_buf {
    char *p;
    size_t n, cap;
    size_t limit;
} tok_buf;
/* A normalized stretch, or a pre-tokenized one with what its steps add,
 * may be at most FACTOR times its text plus SLACK bytes long. NFKD's
 * largest expansion is 11x in bytes (U+FDFA: 3 bytes to 33); real
 * tokenizers stay far below the cap. */
enum { TOK_GROW_FACTOR = 64, TOK_GROW_SLACK = 65536 };
/* The cap for a text of n bytes (SIZE_MAX where it would overflow). */
size_t tok_grow_limit(size_t n);
int tok_buf_put(tok_buf *b, const void *s, size_t n);
/* Appends n of b's own bytes from offset off. */
int tok_buf_copy(tok_buf *b, size_t off, size_t n);
/* Writes s[0..n) with each maximal invalid UTF-8 subpart replaced by
 * U+FFFD (the WHATWG / Unicode practice TextDecoder follows). */
int tok_utf8_sanitize(const char *s, size_t n, tok_buf *out);
/* Length of the valid UTF-8 character at s (n > 0 bytes left) and its
 * code point, or 0 if s does not start one. */
size_t tok_utf8_next(const uint8_t *s, size_t n, uint32_t *cp);
/* s[0..n) with every st->s1 (left to right, not overlapping) replaced by
 * st->s2, appended to out. */
int tok_replace_literal(const tok_step *st, const char *s, size_t n, tok_buf *out);
/* Runs t's normalizer steps on s[0..n) (valid UTF-8) into out. Fails with
 * Q35_ERR_FORMAT when a step's text passes tok_grow_limit(n). */
int tok_normalize(const q35_tokenizer *t, const char *s, size_t n, tok_buf *out);

/* ---- pretok.c ---- */

/* Pieces of text: offsets into an arena. */
typedef struct tok_span {
    size_t off, len;
    int first;           /* starts where the input text starts */
} tok_span;
typedef struct tok_spans {
    tok_span *v;
    int n, cap;
} tok_spans;
/* The matches of a step within one piece, in order, covering it. */
typedef struct part {
    size_t a, b;
    int match;
} part;
typedef struct parts {
    part *v;
    int n, cap;
} parts;
typedef struct pre_ctx {
    pcre2_match_data *md;
    pcre2_match_context *mc; /* with a bigger JIT stack, once one was needed */
    pcre2_jit_stack *js;
    parts p;
} pre_ctx;
/* Scratch of the pre-tokenizer, kept over a whole encode call. */
typedef struct tok_pre_work {
    pre_ctx c;
    tok_buf arena;       /* the text, and what steps rewrite */
    tok_spans *level;    /* each step's pieces */
} tok_pre_work;
/* Splits the fragment s[0..n) with t's pre-tokenizer and hands each
 * pre-token to each(user, s, n) in order (0 or an error to stop with). */
int tok_pretokenize(const q35_tokenizer *t, tok_pre_work *w, const char *s, size_t n, int first,
                    int (*each)(void *user, const char *s, size_t n), void *user);
void tok_pre_work_free(const q35_tokenizer *t, tok_pre_work *w);
/* Compiles a pattern as tokenizers (Oniguruma) and llama.cpp read it: UTF +
 * UCP, \s and \S as Unicode White_Space; with dollar_end, '$' matches only
 * at the end (llama.cpp's std::regex). NULL with err filled when it does
 * not compile. */
pcre2_code *tok_regex(const char *pattern, size_t len, int dollar_end, const char *file,
                      q35_error *err);
/* GPT-2's byte <-> unicode map. */
uint32_t tok_byte_to_cp(uint8_t b);
int tok_cp_to_byte(uint32_t cp);       /* -1 if cp is not in the map */
void tok_steps_free(tok_step *s, int n);

/* ---- bpe.c ---- */
/* Room for n_merges; every score becomes -n_merges, so that a piece no
 * merge makes ranks below all that one does (-(its first rank)). */
int tok_merges_init(q35_tokenizer *t, int n_merges);
/* Adds merge rank: a + b -> id. A pair given twice keeps its last rank
 * (later_wins: tokenizers builds a HashMap) or its first (llama.cpp). */
void tok_merge_add(q35_tokenizer *t, int a, int b, int id, uint32_t rank, int later_wins);
/* Appends the ids of one pre-token s[0..n) to ids (room for n + 1 more);
 * scratch (zeroed at first, freed by the caller) is reused between words. */
typedef struct tok_scratch {
    void *p;
    size_t cap;
} tok_scratch;
int tok_bpe_word(const q35_tokenizer *t, const char *s, size_t n, int *ids, int *n_ids,
                 tok_scratch *sc);

/* ---- spm.c ---- */
/* Appends the ids of the text s[0..n) (normalised and encoded as
 * sentencepiece does) to *ids (grown as needed). */
int tok_spm_text(const q35_tokenizer *t, const char *s, size_t n, int **ids, int *n_ids,
                 int *cap);
/* Rebuilds the SPM lookup after piece types changed. */
int tok_spm_reindex(q35_tokenizer *t);
/* The bytes of token after prev (special: control pieces give their text),
 * as q35_tokenizer_decode returns them. */
size_t tok_spm_piece(const q35_tokenizer *t, int prev, int token, int special, char *buf,
                     size_t cap);

/* ---- wpm.c ---- */
/* Appends the WordPiece ids of the text s[0..n) to *ids (grown as needed). */
int tok_wpm_text(const q35_tokenizer *t, const char *s, size_t n, int **ids, int *n_ids, int *cap);

/* ---- tokenizer.c ---- */
void tok_free(q35_tokenizer *t);

#endif
