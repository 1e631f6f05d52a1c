/* tokenizer.h — SentencePiece-style BPE tokenizer (LLaMA family).
 *
 * Pieces are stored with spaces as ' ' (llama2.c's convention; loaders of
 * formats that use U+2581 convert it). Encoding follows the sentencepiece
 * library's BPE: normalise (identity rules; optional dummy-prefix space and
 * extra-whitespace removal), split into characters, merge the adjacent pair
 * whose concatenation is a piece with the highest score (leftmost on ties),
 * then map each symbol to its id; symbols not in the vocabulary become
 * byte tokens <0xNN> where the vocabulary has them, else the unknown id
 * (consecutive unknowns collapse into one, as sentencepiece does).
 */
#ifndef Q35_TOKENIZER_TOKENIZER_H
#define Q35_TOKENIZER_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "q35.h"

/* Piece kinds, numbered as sentencepiece / GGUF token_type. */
enum q35_piece_type {
    Q35_PIECE_NORMAL = 1,
    Q35_PIECE_UNKNOWN = 2,
    Q35_PIECE_CONTROL = 3,
    Q35_PIECE_USER_DEFINED = 4,
    Q35_PIECE_UNUSED = 5,
    Q35_PIECE_BYTE = 6
};

typedef struct q35_tokenizer_opts {
    int add_dummy_prefix;         /* prepend a space to non-empty text */
    int remove_extra_whitespaces; /* drop leading/trailing spaces, fold runs */
} q35_tokenizer_opts;

typedef struct q35_tokenizer q35_tokenizer;

/* Builds a tokenizer from n pieces. pieces[i] points to lens[i] bytes (may
 * contain any byte; copied). types may be NULL: then kinds are inferred as
 * for llama2.c files (see tokenizer.c). bos/eos/unk may be -1 if absent. */
int q35_tokenizer_new(q35_tokenizer **out, int n, const char *const *pieces,
                      const uint32_t *lens, const float *scores,
                      const int32_t *types, int bos, int eos, int unk,
                      const q35_tokenizer_opts *opts, q35_error *err);

/* Loads a llama2.c tokenizer .bin (int32 max_token_length, then per piece:
 * float score, int32 length, bytes). If a SentencePiece .model file with the
 * same stem lies beside it, its normalizer options are used; otherwise
 * add_dummy_prefix = 1, remove_extra_whitespaces = 0 (llama2.c's encoder).
 * expected_vocab > 0 requires exactly that many pieces. */
int q35_tokenizer_load_llama2c(q35_tokenizer **out, const char *path,
                               int expected_vocab, q35_error *err);

void q35_tokenizer_free(q35_tokenizer *t);

int q35_tokenizer_n_vocab(const q35_tokenizer *t);
int q35_tokenizer_bos(const q35_tokenizer *t);
int q35_tokenizer_eos(const q35_tokenizer *t);
const q35_tokenizer_opts *q35_tokenizer_options(const q35_tokenizer *t);

/* Encodes len bytes of text (need not be NUL-terminated; invalid UTF-8
 * bytes are read as U+FFFD, as sentencepiece does). On success *ids is
 * malloc'ed with *n_ids ids (possibly 0; then *ids may be NULL). */
int q35_tokenizer_encode(const q35_tokenizer *t, const char *text, size_t len,
                         int add_bos, int **ids, int *n_ids, q35_error *err);

/* The bytes that token stands for after prev (a leading space is dropped
 * right after BOS; byte tokens give their byte; control tokens give "").
 * Writes at most cap-1 bytes plus NUL; returns the byte count written. */
size_t q35_tokenizer_decode(const q35_tokenizer *t, int prev, int token,
                            char *buf, size_t cap);

/* The stored piece string of id (not NUL-terminated) and its kind. */
const char *q35_tokenizer_piece(const q35_tokenizer *t, int id, uint32_t *len);
int q35_tokenizer_piece_type(const q35_tokenizer *t, int id);
float q35_tokenizer_score(const q35_tokenizer *t, int id);

#endif
