/* tokenizer.h — every tokenizer q35 reads, and what the rest of q35 uses
 * of them (the public calls are in q35.h: q35_tokenizer_load, _encode,
 * _decode, _decode_ids, the special ids and the end-of-generation set).
 *
 * Readers: llama2.c's tokenizer .bin (+ a SentencePiece .model beside it),
 * a GGUF file's tokenizer.ggml.* keys (whatever its architecture),
 * tokenizer.json (+ tokenizer_config.json in a Hugging Face folder).
 * Encoders: SentencePiece BPE by piece scores (spm.c), BPE by merge ranks
 * with tokenizers' pipeline of normalizers and pre-tokenizers (bpe.c,
 * normalize.c, pretok.c). See docs/ARCHITECTURE.md.
 *
 * Pieces of SentencePiece vocabularies read from .bin and GGUF "llama"
 * store spaces as ' ' (llama2.c's convention; U+2581 is converted).
 * Byte-level vocabularies store each piece as the bytes it stands for. */
#ifndef Q35_TOKENIZER_TOKENIZER_H
#define Q35_TOKENIZER_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "q35.h"

struct q35_gguf;
struct q35_gguf_writer;

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

/* Builds a SentencePiece tokenizer from n pieces. pieces[i] points to
 * lens[i] bytes (may contain any byte; copied). types may be NULL: then
 * kinds are inferred as for llama2.c files (see spm.c). bos/eos/unk may be
 * -1 if absent. Q35_TOKENIZE_ADD_SPECIAL adds BOS. */
int q35_tokenizer_new(q35_tokenizer **out, int n, const char *const *pieces,
                      const uint32_t *lens, const float *scores,
                      const int32_t *types, int bos, int eos, int unk,
                      const q35_tokenizer_opts *opts, q35_error *err);

/* Loads a llama2.c tokenizer .bin. If a SentencePiece .model file with the
 * same stem lies beside it, its normalizer options are used; otherwise
 * add_dummy_prefix = 1, remove_extra_whitespaces = 0 (llama2.c's encoder).
 * expected_vocab > 0 requires exactly that many pieces. */
int q35_tokenizer_load_llama2c(q35_tokenizer **out, const char *path,
                               int expected_vocab, q35_error *err);

/* The tokenizer in a GGUF file's tokenizer.ggml.* keys (model "llama",
 * "gpt2" or "gemma4"); *out stays NULL without an error when the file has
 * no tokenizer.ggml.model. path names the file in errors. */
int q35_tokenizer_from_gguf(q35_tokenizer **out, const struct q35_gguf *g, const char *path,
                            q35_error *err);
int q35_tokenizer_load_gguf(q35_tokenizer **out, const char *path, q35_error *err);

/* A tokenizer.json (len bytes at json, not NUL-terminated; name is used in
 * errors) with the bos/eos names of a tokenizer_config.json (config, may be
 * NULL; config_name names it). For the fuzzer and the loaders alike. */
int q35_tokenizer_from_json(q35_tokenizer **out, const char *json, size_t len, const char *name,
                            const char *config, size_t config_len, const char *config_name,
                            q35_error *err);
/* A tokenizer.json file, with tokenizer_config.json beside it if present. */
int q35_tokenizer_load_json(q35_tokenizer **out, const char *path, q35_error *err);
/* A Hugging Face folder: tokenizer.json and, if present,
 * tokenizer_config.json. Q35_ERR_IO when the folder has no tokenizer.json. */
int q35_tokenizer_load_hf(q35_tokenizer **out, const char *dir, q35_error *err);

/* Sets the tokenizer.ggml.* keys that describe tok (a const
 * q35_tokenizer *) on wr: q35_gguf_save_model's key writer. */
int q35_tokenizer_gguf_keys(const void *tok, struct q35_gguf_writer *wr, q35_error *err);

const q35_tokenizer_opts *q35_tokenizer_options(const q35_tokenizer *t);
/* The stored piece string of id (not NUL-terminated) and its kind. */
const char *q35_tokenizer_piece(const q35_tokenizer *t, int id, uint32_t *len);
int q35_tokenizer_piece_type(const q35_tokenizer *t, int id);
float q35_tokenizer_score(const q35_tokenizer *t, int id);
/* "SentencePiece BPE", "byte-level BPE" or "BPE". */
const char *q35_tokenizer_kind(const q35_tokenizer *t);

#endif
