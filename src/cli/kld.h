/* kld.h — the KL-divergence base file of `q35 perplexity`
 * (--kl-divergence-base writes it, --kl-divergence compares against it;
 * layout in docs/FORMAT.md): a 64-byte header, then one record per scored
 * position holding the base model's log-probabilities — all of them, or
 * the top k with their token ids and the mass of the rest (the tail). */
#ifndef Q35_CLI_KLD_H
#define Q35_CLI_KLD_H

#include <stddef.h>
#include <stdint.h>

#define KLD_HEADER_BYTES 64
#define KLD_VERSION 1
#define KLD_DEFAULT_K 128

typedef struct kld_header {
    uint32_t vocab;     /* vocabulary size */
    uint32_t k;         /* log-probs per record; 0 = the whole distribution */
    uint32_t n_docs;    /* documents scored */
    uint32_t ctx;       /* context the documents were truncated at */
    uint64_t n_pos;     /* positions scored (records) */
    uint64_t hash;      /* kld_token_hash of the documents' tokens */
    uint32_t rec_bytes; /* kld_record_bytes(vocab, k) */
} kld_header;

/* The k to store for a requested k: 0 (the whole distribution) when that
 * is no bigger than a top-k record or k >= vocab, else k. */
uint32_t kld_choose_k(uint32_t vocab, uint32_t k);
/* Bytes of one record: 4 * vocab for k = 0, else 8 + 4k + k * id bytes
 * (2 when vocab <= 65536, else 4). */
size_t kld_record_bytes(uint32_t vocab, uint32_t k);

void kld_header_encode(const kld_header *h, uint8_t out[KLD_HEADER_BYTES]);
/* Checks magic, version and internal consistency; on failure returns -1
 * with *why a phrase naming what is wrong. */
int kld_header_decode(const uint8_t in[KLD_HEADER_BYTES], kld_header *h, const char **why);

/* FNV-1a over every document's length and token ids (u32 little-endian). */
uint64_t kld_token_hash(int n_docs, int *const *ids, const int *lens);

/* Per-thread scratch for records: a top-k list and a vocabulary mask. */
typedef struct kld_scratch {
    uint32_t V, k;
    double *lp;       /* V log-probs of the position at hand */
    int *top;         /* k ids, best first */
    unsigned char *in_top; /* V flags */
} kld_scratch;
int kld_scratch_init(kld_scratch *s, uint32_t V, uint32_t k);
void kld_scratch_free(kld_scratch *s);

/* Log-softmax of logits into s->lp (double). */
void kld_log_softmax(kld_scratch *s, const float *logits);
/* Writes the record of s->lp, whose actual next token is `next`. */
void kld_make_record(kld_scratch *s, int next, uint8_t *rec);

/* Checks one record: ids in range, log-probs finite and <= 0, tail in
 * [0, 1]. Returns -1 with *why on the first fault. */
int kld_check_record(const uint8_t *rec, uint32_t vocab, uint32_t k, const char **why);

/* One position compared: the base record against s->lp (the model under
 * test; its log-probs are rounded to f32 like the base's, so a model
 * compared with itself gives exactly 0). Returns -1 with *why on a bad
 * record (kld_check_record). */
typedef struct kld_pos {
    double kld;               /* KL(base || model) over the record's buckets */
    double nll_base, nll_q;   /* -log p(next) */
    double p_base, p_q;       /* p(next) */
    int same_top;             /* both rank the same token first */
} kld_pos;
int kld_compare_record(kld_scratch *s, const uint8_t *rec, int next, kld_pos *out,
                       const char **why);

/* Prints llama-perplexity's statistics over n positions (in place: sorts
 * copies it makes). Returns -1 when out of memory. */
int kld_report(const kld_pos *pos, size_t n, uint32_t k, const char *base_path);

#endif
