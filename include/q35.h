/* q35.h — the public API of libq35.
 *
 * A model (q35_model) is immutable once loaded and may be shared by many
 * sessions; a session (q35_session) holds one conversation's KV cache,
 * scratch buffers and position. Every call that can fail returns a status
 * (0 = success) and fills a q35_error with a one-line message naming the
 * file, field or argument at fault. Wherever a function takes a
 * `q35_error *err`, err may be NULL: the status alone is returned. The
 * library never prints, never exits and never aborts on bad input, and
 * reads no environment variable: settings arrive in the params structs
 * below (start from their *_default_params(), then set what you need).
 * There is no global mutable state.
 */
#ifndef Q35_H
#define Q35_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ---------------------------------------------------------- */
enum q35_status {
    Q35_OK = 0,
    Q35_ERR_IO = 1,       /* a file cannot be opened, read or mapped */
    Q35_ERR_FORMAT = 2,   /* a file's contents are malformed or inconsistent */
    Q35_ERR_ARG = 3,      /* a caller's argument is out of range */
    Q35_ERR_NOMEM = 4,    /* an allocation failed */
    Q35_ERR_UNSUPPORTED = 5, /* well-formed, but not something q35 runs */
    Q35_ERR_DEVICE = 6    /* a GPU operation failed (a kernel fault, a lost device) */
};

typedef struct q35_error {
    int code;       /* one of enum q35_status */
    char msg[512];  /* one line, no trailing newline */
} q35_error;

/* ---- output files ---------------------------------------------------- */
/* Every file q35 writes goes through q35_outfile. What it does depends on
 * what is at the path when it is opened:
 *   nothing, or a regular file: the bytes go to a temporary file beside it
 *     ("PATH.tmp-XXXXXX"), which is synced and renamed over PATH when
 *     complete: a reader sees the old file or the whole new one. A replaced
 *     file's permission bits are kept; a new file gets 0644.
 *   a symbolic link: followed (all the way); its target is replaced so, in
 *     the target's folder, and the link stays a link. A dangling link is
 *     refused, as GNU cp does (the name it points to may no longer mean
 *     what it meant).
 *   a character or block device, a FIFO or a socket: the bytes are written
 *     into it directly, with no temporary file and no rename (so
 *     /dev/stdout or a pipe works); a FIFO without a reader waits for one,
 *     as a shell's redirection does. A writer that seeks (opts.seeks) is
 *     refused such a target, with one line naming its kind.
 *   a folder: refused.
 * Every error is one line naming the path and the failing call's errno
 * text ("No space left on device"); on any failure no temporary file is
 * left and the path is what it was. */
typedef struct q35_outfile q35_outfile;

typedef struct q35_outfile_opts {
    int seeks;         /* the writer writes out of order (q35_outfile_pwrite):
                          devices, FIFOs and sockets are refused */
    uint64_t size;     /* bytes the file will hold, when known (0: unknown):
                          a file must fit in its folder's free space beside
                          the one it replaces (checked before creating it) */
    int fail_errno;    /* tests only: a write that would take the file past
                          fail_at bytes writes up to there, then fails with
                          this errno (0: never) */
    uint64_t fail_at;
} q35_outfile_opts;

/* What q35_outfile_open would refuse, found without creating anything
 * (for a check before long work): a folder, a dangling link, a device,
 * FIFO or socket for a writer that seeks, a folder not writable, a file
 * larger than the free space (opts->size). opts may be NULL (defaults). */
int q35_outfile_check(const char *path, const q35_outfile_opts *opts, q35_error *err);
/* Opens path for writing as above. */
int q35_outfile_open(q35_outfile **out, const char *path, const q35_outfile_opts *opts,
                     q35_error *err);
/* Appends n bytes. */
int q35_outfile_write(q35_outfile *f, const void *p, uint64_t n, q35_error *err);
/* Writes n bytes at offset off (a writer that seeks; any number of threads
 * at once, to distinct ranges). */
int q35_outfile_pwrite(q35_outfile *f, const void *p, uint64_t n, uint64_t off, q35_error *err);
/* Syncs, closes and renames the temporary file over the path (for a
 * stream: closes it). Frees f, also when it fails (then as abort). */
int q35_outfile_commit(q35_outfile *f, q35_error *err);
/* Gives up: closes and removes the temporary file; frees f (NULL: no-op). */
void q35_outfile_abort(q35_outfile *f);
/* n bytes in the unit that shows the number, as the messages give sizes:
 * "512 bytes", "1.5 KiB", "124.0 KiB", "3.2 GiB" (up to EiB). */
void q35_bytes_text(uint64_t n, char *buf, size_t cap);

/* ---- models ---------------------------------------------------------- */
typedef struct q35_config {
    int dim;         /* transformer width */
    int hidden_dim;  /* feed-forward width */
    int n_layers;
    int n_heads;     /* query heads */
    int n_kv_heads;  /* key/value heads (grouped-query attention) */
    int vocab_size;
    int seq_len;     /* longest context the model was trained for */
    int head_dim;    /* dim / n_heads */
    float rms_eps;   /* RMSNorm epsilon */
    float rope_theta;/* RoPE base frequency */
    int shared_classifier; /* 1 when the classifier is the token embedding */
} q35_config;

typedef struct q35_model q35_model;

/* Flags for q35_model_params.flags (and q35_model_open). */
#define Q35_OPEN_INSPECT 1u /* read and check the file only: tensors keep their
                               stored types, a missing tokenizer is no error;
                               no session can run such a model */

/* How a model is loaded. */
typedef struct q35_model_params {
    const char *tokenizer_path; /* NULL: the file's own tokenizer (GGUF,
                                   tokenizer.json) or a llama2.c tokenizer
                                   beside the model (docs/ARCHITECTURE.md) */
    unsigned flags;             /* Q35_OPEN_* */
    const char *kernels;        /* the kernel set the model is prepared for and
                                   its sessions use unless they say otherwise:
                                   NULL or "" the fastest this CPU runs;
                                   "scalar", "avx2", "avx512", "neon" */
    int r16;                    /* 1 (default): repack Q3_5-family matrices into
                                   R16 order where the kernels run it; 0: keep
                                   the rows */
    int64_t mem_available;      /* the memory check before loading: 0 (default)
                                   measures (MemAvailable, cgroup limit); > 0
                                   assumes that many bytes; < 0 skips it */
    int layer_first;            /* pipeline parallel: hold only layers layer_first
                                   .. layer_first + layer_count - 1 (plus the
                                   embedding when the first is 0, the final norm
                                   and classifier when the last is the model's
                                   last); their tensors alone are read, expanded,
                                   repacked and counted by the memory check */
    int layer_count;            /* 0 (default): every layer */
    int tp_rank, tp_size;       /* tensor parallel: hold slice tp_rank of tp_size
                                   of every matrix (tp_size 0 or 1, the default:
                                   whole). Each matrix is split by its output rows:
                                   q/k/v by heads (whole groups of query heads per
                                   KV head where tp_size <= the KV heads), gate/up
                                   by hidden units, attn_output, ffn_down and the
                                   classifier by their outputs too; norms and the
                                   embedding are held whole. Sessions then need
                                   q35_session_params.tp_gather. Only the slice's
                                   rows of the Q3_5 family and F32 tensors are
                                   read; other types are converted whole */
    const char *convert_type;   /* the type matrices stored in a type q35 does
                                   not run (Q4_K, Q8_0, F16, ...) are converted
                                   into at load: "Q2_5", "Q3_5", "Q4_5", "Q8_S"
                                   or "F32". NULL (default): Q8_S for the
                                   block-quantized types, F32 for F16/BF16.
                                   See q35_model_conversion */
} q35_model_params;

q35_model_params q35_model_default_params(void);

/* Loads a model: a llama2.c checkpoint, a GGUF file, or a Hugging Face
 * folder (or its .safetensors file), as p says (NULL: the defaults).
 * Loading runs OpenMP teams of the calling thread, and OpenMP keeps them.
 * A program that then evaluates on another thread holds two teams. With more
 * OpenMP threads than cores, libgomp makes every barrier sleep after a short
 * spin. Such a program releases the loading thread's team first:
 * omp_pause_resource_all(omp_pause_hard) on the loading thread, as q35 serve
 * does (10% of its 8-stream decode time otherwise). */
int q35_model_load_params(q35_model **out, const char *model_path, const q35_model_params *p,
                          q35_error *err);
/* The same with the default params and the given tokenizer (may be NULL). */
int q35_model_load(q35_model **out, const char *model_path,
                   const char *tokenizer_path, q35_error *err);
/* The same with flags (Q35_OPEN_*). */
int q35_model_open(q35_model **out, const char *model_path,
                   const char *tokenizer_path, unsigned flags, q35_error *err);
/* Bytes a model of this file holding layers first .. first + count - 1
 * (one slice of tp_size, for tensor parallel; 0 or 1: whole) needs in
 * memory, as the check before loading counts them: weights (plus the
 * embedding on the first stage, the classifier on the last), one
 * session's KV cache for the default context, scratch. m may be opened
 * with Q35_OPEN_INSPECT: for planning a split before loading. */
uint64_t q35_model_need_bytes(const q35_model *m, int first, int count, int tp_size);
/* A hash of the file's header (up to where its tensor data starts) and
 * its tensor map (names, types, shapes, sizes), the same for any layer
 * range or slice loaded: processes that each load part of a model
 * compare it to know they read the same file. */
uint64_t q35_model_fingerprint(const q35_model *m);
/* What loading converted (params.convert_type): n_matrices matrices
 * (0: none) stored in the types `from` ("Q4_K/Q6_K") now run as `to`
 * ("Q8_S"; F16/BF16 matrices expanded to F32 by default are not counted).
 * The strings live as long as the model. */
typedef struct q35_conversion {
    int n_matrices;
    const char *from;
    const char *to;
} q35_conversion;
q35_conversion q35_model_conversion(const q35_model *m);
/* The params the model was loaded with (tokenizer_path not kept: NULL). */
q35_model_params q35_model_get_params(const q35_model *m);
void q35_model_free(q35_model *m);
const q35_config *q35_model_config(const q35_model *m);
/* Bytes of weights the forward pass reads per token. */
uint64_t q35_model_weight_bytes(const q35_model *m);
/* Number of weights (parameters) in the model. */
uint64_t q35_model_n_params(const q35_model *m);
/* "llama2.c legacy fp32", "GGUF v3", "safetensors", ... */
const char *q35_model_format(const q35_model *m);
/* The architecture, as GGUF names it: "llama", "qwen2", "qwen3", "gemma",
 * "gemma2", "gemma3", "phi3". */
const char *q35_model_arch(const q35_model *m);
/* The architecture and every variant of it the model uses ("gemma2, GQA
 * 8:4, rope neox, sliding window 4096 (every 2-th layer global), ...")
 * into buf (NUL-terminated, truncated to cap). */
void q35_model_describe(const q35_model *m, char *buf, size_t cap);

/* One tensor as the file stores it. */
typedef struct q35_tensor_desc {
    const char *name;   /* GGUF name, e.g. blk.0.attn_q.weight */
    const char *type;   /* "F32", "F16", "BF16", "Q8_0", "Q4_K", "IQ2_XXS", ... */
    int n_dims;
    int64_t ne[4];      /* ne[0] is the row length */
    uint64_t nbytes;    /* bytes stored */
    int readable;       /* 1 when q35 can compute with the stored type (as
                           stored, or converted at load); 0 for types it only
                           lists (the IQ1/IQ2/IQ3 grids, TQ, MXFP4, ...) */
} q35_tensor_desc;
int q35_model_n_tensors(const q35_model *m);
/* Fills d for tensor i (0 <= i < n_tensors); returns 0, or -1 if out of range. */
int q35_model_tensor(const q35_model *m, int i, q35_tensor_desc *d);

/* Writes the model (hyperparameters, tokenizer, every tensor) as a GGUF
 * file, front to back through q35_outfile ("output files" above: a file
 * atomically, a device or FIFO directly). type: "F32" or "F16" for the matrices (norms stay F32). */
int q35_model_save_gguf(const q35_model *m, const char *path, const char *type,
                        q35_error *err);

/* ---- tokens ----------------------------------------------------------
 * A tokenizer: the model's (q35_model_tokenizer) or one loaded on its own.
 * Every call here that takes a q35_error accepts err == NULL (the status
 * alone then says what happened). Ids are 0 .. q35_tokenizer_n_vocab - 1. */
typedef struct q35_tokenizer q35_tokenizer;

/* Loads a tokenizer: a tokenizer.json, a Hugging Face folder holding one
 * (and tokenizer_config.json for the bos/eos names), a GGUF file (its
 * tokenizer.ggml.* keys, whatever the model) or a llama2.c tokenizer .bin. */
int q35_tokenizer_load(q35_tokenizer **out, const char *path, q35_error *err);
void q35_tokenizer_free(q35_tokenizer *t);
/* The model's tokenizer (NULL for a model opened with Q35_OPEN_INSPECT
 * that has none); owned by the model. */
const q35_tokenizer *q35_model_tokenizer(const q35_model *m);
int q35_tokenizer_n_vocab(const q35_tokenizer *t);

/* Flags for q35_tokenizer_encode. */
#define Q35_TOKENIZE_ADD_SPECIAL 1u   /* add what the tokenizer adds around a text:
                                         BOS (and EOS) as the file says, or the
                                         ids of tokenizer.json's post-processor */
#define Q35_TOKENIZE_PARSE_SPECIAL 2u /* special tokens spelled in the text
                                         (<|im_start|>, <s>, ...) become those
                                         tokens (llama.cpp's parse_special);
                                         otherwise they are plain text */
/* Encodes text (len bytes, any bytes: invalid UTF-8 reads as U+FFFD).
 * On success *ids is malloc'ed (free() it; NULL when *n_ids is 0). */
int q35_tokenizer_encode(const q35_tokenizer *t, const char *text, size_t len, unsigned flags,
                         int **ids, int *n_ids, q35_error *err);

/* Flags for q35_tokenizer_decode_ids. */
#define Q35_DECODE_SPECIAL 1u /* special tokens give their text (else nothing) */
/* The exact bytes of n ids (a UTF-8 character split over tokens comes out
 * whole; bytes that form no character are given as they are). *text is
 * malloc'ed and NUL-terminated (free() it), *len its length (the bytes may
 * hold NULs). Q35_ERR_ARG names an id out of range. */
int q35_tokenizer_decode_ids(const q35_tokenizer *t, const int *ids, int n, unsigned flags,
                             char **text, size_t *len, q35_error *err);
/* Streaming: the bytes token adds to the text after prev (prev < 0, or a
 * special token: token starts the text). Special tokens give nothing.
 * Writes at most cap-1 of them and a NUL into buf and returns how many
 * there are (more than cap-1: truncated), as snprintf does. Written out in
 * order from prev = -1, the pieces of a sequence are its
 * q35_tokenizer_decode_ids bytes (flags 0). */
size_t q35_tokenizer_decode(const q35_tokenizer *t, int prev, int token, char *buf, size_t cap);

/* Special ids from the file; -1 when there is none. */
int q35_tokenizer_bos(const q35_tokenizer *t);
int q35_tokenizer_eos(const q35_tokenizer *t);
int q35_tokenizer_eot(const q35_tokenizer *t); /* end of turn (<|eot_id|>, <end_of_turn>, ...) */
/* Whether Q35_TOKENIZE_ADD_SPECIAL puts BOS in front. */
int q35_tokenizer_add_bos(const q35_tokenizer *t);
/* The end-of-generation set, ascending: EOS, EOT, and the tokens llama.cpp
 * ends generation at (<|im_end|>, <end_of_turn>, <|end|>, ...). */
int q35_tokenizer_n_eog(const q35_tokenizer *t);
const int *q35_tokenizer_eog(const q35_tokenizer *t);
int q35_tokenizer_is_eog(const q35_tokenizer *t, int id);

/* The same through a model (which must have a tokenizer). */
int q35_token_bos(const q35_model *m);
int q35_token_eos(const q35_model *m);
/* Encodes text (len bytes). On success *ids is malloc'ed (free() it) and
 * holds *n_ids token ids; add_special nonzero adds what the tokenizer adds
 * (Q35_TOKENIZE_ADD_SPECIAL: BOS for LLaMA-style tokenizers). */
int q35_tokenize(const q35_model *m, const char *text, size_t len, int add_special,
                 int **ids, int *n_ids, q35_error *err);
/* q35_tokenizer_decode with the model's tokenizer. */
size_t q35_detokenize(const q35_model *m, int prev, int token, char *buf,
                      size_t cap);
/* The same, whole however long the piece: *buf (malloc'ed, *cap bytes;
 * NULL and 0 to start) is grown as needed and holds the bytes and a NUL.
 * Returns how many bytes, or (size_t)-1 when out of memory (*buf kept). */
size_t q35_detokenize_all(const q35_model *m, int prev, int token, char **buf,
                          size_t *cap);
/* The stored text of token id (*len bytes, not NUL-terminated; owned by
 * the model), or NULL when id is out of range. */
const char *q35_token_text(const q35_model *m, int id, size_t *len);
/* 1 when generation ends at token: the model's end of turn or of text.
 * Every generation loop stops through this one test (the tokenizer's
 * end-of-generation set, q35_tokenizer_eog, and BOS, at which llama2.c's
 * stories end). */
int q35_token_is_eog(const q35_model *m, int token);

/* ---- sessions -------------------------------------------------------- */
typedef struct q35_session q35_session;

/* An observer of a session's forward pass (llama.cpp's cb_eval): the
 * inputs each weight matrix is about to multiply, as importance matrices
 * and calibration collect them. */
typedef struct q35_observer {
    /* n_tokens inputs of n floats (rows ld apart) to tensor `tensor` (its
     * index in q35_model_tensor), in token order; called from the thread
     * that runs the session, before the product. */
    void (*matrix_input)(void *user, int tensor, const float *x, int64_t n, int n_tokens,
                         int64_t ld);
    /* n_tokens more tokens were evaluated (may be NULL). */
    void (*tokens_done)(void *user, int n_tokens);
    void *user;
    int n_layers;  /* > 0: the session runs only its first n_layers layers
                      and computes no logits (q35_session_eval's *logits is
                      then NULL); 0: all */
} q35_observer;

/* How a session runs. */
typedef struct q35_session_params {
    int n_threads;        /* <= 0 (default): the number of cores */
    int n_batch;          /* prompt tokens evaluated together (default 128; 1: one
                             by one), see q35_session_set_batch */
    const char *kv_type;  /* the KV cache's element type: NULL or "auto" (default),
                             "f16", "f32", "q8" (q35_session_set_kv_type) */
    const char *kernels;  /* NULL (default): the model's kernel set; else a set
                             as in q35_model_params */
    int r16;              /* 1 (default): run R16 copies where the model has them;
                             0: read the rows even so */
    int n_ctx;            /* positions each sequence holds: 0 (default) the model's
                             context, at most 4096; at most the model's context */
    int n_seq;            /* sequences the session holds (q35_session_decode):
                             default 1 */
    int gelu_f16;         /* 1: GELU as llama.cpp's CPU backend computes it, through
                             an fp16 table (fp16(gelu(fp16(x)))), for comparing
                             with it; 0 (default): the exact function */
    int n_gpu_layers;     /* 0 (default): all on the CPU; see q35_session_new_gpu */
    /* CUDA backend settings (make cuda; ignored otherwise) */
    int cuda_graph;       /* 1 (default): replay the forward pass as a CUDA graph */
    int cuda_pdl;         /* 1: programmatic dependent launches (sm_90+); default 0 */
    int cuda_gemv;        /* the family GEMV kernel variant; -1 (default): its best */
    uint64_t cuda_max_bytes; /* tests: fail device allocations beyond this; 0: none */
    /* Tensor parallel (a model loaded with tp_size > 1): completes buffer
     * buf, n rows of width floats of which this process computed columns
     * lo[tp_rank] .. lo[tp_rank + 1] - 1 of every row (lo: tp_size + 1
     * offsets, lo[tp_size] = width), so that afterwards every process of
     * the group holds all of them; returns 0, or a q35_status with err
     * filled. Called from the thread that runs the session, by every
     * process of the group in the same order (each evaluates the same
     * batches): an allgather. */
    int (*tp_gather)(void *user, float *buf, int64_t width, int n, const int64_t *lo, q35_error *err);
    void *tp_user;
} q35_session_params;

q35_session_params q35_session_default_params(void);

/* A session of model m as p says (NULL: the defaults). */
int q35_session_new_params(q35_session **out, const q35_model *m, const q35_session_params *p,
                           q35_error *err);
/* The defaults with n_threads (<= 0: the number of cores). */
int q35_session_new(q35_session **out, const q35_model *m, int n_threads,
                    q35_error *err);
/* Attaches an observer (copied; NULL detaches). Only between tokens. */
void q35_session_set_observer(q35_session *s, const q35_observer *o);
void q35_session_free(q35_session *s);
/* A session whose forward pass runs on a CUDA GPU (q35 built with
 * `make cuda`): the first n_gpu_layers layers there, the rest on the CPU
 * with n_threads threads, as llama.cpp's -ngl. n_gpu_layers < 0 or >= the
 * model's layer count puts the whole model there (embedding and classifier
 * too); 0 gives a CPU session. The weights are copied to the device for
 * this session. A CPU-only build fails with Q35_ERR_UNSUPPORTED; no device
 * (Q35_ERR_UNSUPPORTED), too little device memory (Q35_ERR_NOMEM) and
 * device faults (Q35_ERR_DEVICE, also from q35_session_eval) come back as
 * one-line errors. Layers on the GPU do not feed an importance matrix. */
int q35_session_new_gpu(q35_session **out, const q35_model *m, int n_gpu_layers,
                        int n_threads, q35_error *err);
/* Where the session runs: "CPU (avx512)", or the GPU's name and how many
 * layers it holds. Valid while the session lives. */
const char *q35_session_device(const q35_session *s);
/* Forgets the context of every sequence (positions back to 0). */
void q35_session_reset(q35_session *s);
/* Forgets the context from position pos on (0 <= pos <= the position): the
 * next token is evaluated at pos, what came before stays in the KV cache. */
int q35_session_rewind(q35_session *s, int pos, q35_error *err);
/* Tokens in sequence 0's context. */
int q35_session_pos(const q35_session *s);
/* The positions each sequence holds (q35_session_params.n_ctx as taken). */
int q35_session_n_ctx(const q35_session *s);
/* Runs one token at the current position and advances it. On success
 * *logits points to vocab_size floats owned by the session, valid until the
 * next call. Fails with Q35_ERR_ARG when the context is full or the token is
 * out of range. */
int q35_session_eval(q35_session *s, int token, const float **logits,
                     q35_error *err);
/* Runs n > 0 tokens (a prompt) at positions pos .. pos+n-1 and advances
 * the position by n. all_logits (may be NULL) receives n * vocab_size
 * floats, row t the logits after tokens[t]; *logits (logits may be NULL)
 * points to the last token's logits, owned by the session. The results are
 * those of n calls of q35_session_eval (see q35_session_set_batch for when
 * bit for bit); the batch lets each weight
 * block be decoded once for many tokens. Fails like q35_session_eval, with
 * nothing evaluated, if any token is out of range or the tokens do not fit
 * in the context. */
int q35_session_eval_batch(q35_session *s, const int *tokens, int n, float *all_logits,
                           const float **logits, q35_error *err);
/* ---- several sequences at once (continuous batching) ---------------- */

/* Tokens of one or more sequences, evaluated together: each sequence's
 * tokens, in batch order, take its next positions. */
typedef struct q35_batch {
    int n_tokens;
    const int *token;       /* n_tokens ids */
    const int *seq;         /* each token's sequence, 0 .. n_seq-1 (NULL: all 0) */
    const uint8_t *logits;  /* nonzero where that token's logits are wanted (NULL: none) */
} q35_batch;

/* Evaluates batch b: the wanted tokens' logits go to the rows of out (one
 * row of vocab_size floats per wanted token, in batch order; out may be
 * NULL when none is wanted). All or nothing: a token out of range, a
 * sequence out of range or one whose context cannot hold its tokens fails
 * the batch (Q35_ERR_ARG) with nothing evaluated. A token's logits do not
 * depend on the other tokens of the batch: bit for bit where batches equal
 * token-by-token evaluation (q35_session_set_batch). */
int q35_session_decode(q35_session *s, const q35_batch *b, float *out, q35_error *err);
/* Pipeline parallel: the same for a model holding only some layers
 * (q35_model_params.layer_first/layer_count). x_in (n_tokens rows of dim
 * floats) enters its first layer, when that is not layer 0 (else the
 * tokens' embeddings do; x_in may be NULL); when its last layer is not the
 * model's last, x_out (n_tokens rows of dim) receives what leaves it and
 * out is unused; otherwise out receives the wanted logits as in
 * q35_session_decode. The batch's tokens give the positions (and the
 * embeddings on the first stage). Results are bit for bit those of one
 * session of the whole model. */
int q35_session_decode_layers(q35_session *s, const q35_batch *b, const float *x_in, float *x_out, float *out,
                              q35_error *err);
/* The layers a model holds: [*first, *first + *count). */
void q35_model_layers_held(const q35_model *m, int *first, int *count);
int q35_session_n_seq(const q35_session *s);
/* Tokens in sequence seq's context (-1 for no such sequence). */
int q35_session_seq_pos(const q35_session *s, int seq);
/* Forgets sequence seq's positions from p on (0 <= p <= its position; 0
 * frees it whole): its next token goes to position p. */
int q35_session_seq_trim(q35_session *s, int seq, int p, q35_error *err);

/* Prompt tokens q35_session_eval_batch runs together (default 128): each
 * weight is decoded once per batch. 1 runs them one by one. n_batch >= 1;
 * fp32 models' results do not depend on it, nor do Q3_5-family models'
 * where their matrices run in R16 order (AVX-512 with GFNI, unless
 * Q35_R16=0); elsewhere those differ by float rounding (a batch of 5 or
 * more tokens runs the reference's arithmetic, token by token the SIMD
 * row dot's). */
int q35_session_set_batch(q35_session *s, int n_batch, q35_error *err);
/* The KV cache's element type: "f32", "f16" (IEEE half: half the memory
 * and bandwidth; logits differ by rounding), "q8" (each row of head_dim
 * values as int8 codes and one fp32 scale, max |x| / 127: about a quarter
 * of f32's bytes; logits differ by more, docs/ARCHITECTURE.md) or
 * "auto"/NULL, the default:
 * f16 when the model has matrices in the Q3_5 family, f32 when it runs
 * all in fp32 (so fp32 runs match llama2.c to its last digits). Only
 * before the first token (or after q35_session_reset). */
int q35_session_set_kv_type(q35_session *s, const char *type, q35_error *err);
const char *q35_session_kv_type(const q35_session *s); /* "f32", "f16" or "q8" */
/* Bytes one cached row (one position of one KV head, keys or values) of
 * head_dim values takes in a cache of that type ("f32", "f16", "q8": the
 * codes and their fp32 scale); 0 for another name. */
size_t q35_kv_row_bytes(const char *type, int head_dim);

/* ---- quantization ---------------------------------------------------- */
/* Called after each tensor: tensors done and in all, its name, its bits per
 * weight and relative weight RMSE (0 for tensors kept in F32). */
typedef void (*q35_quant_progress)(void *user, int done, int total, const char *name,
                                   const char *type, double bpw, double rel_rmse);

/* Writes m with every 2-D tensor in `type` ("Q2_5", "Q3_5", "Q4_5",
 * "Q8_S"; 1-D tensors stay F32) as a self-contained GGUF file (hyper-
 * parameters and tokenizer inside), as q35_model_save_gguf writes.
 * imatrix_path (may be NULL) names a file written by q35_imatrix_save:
 * the quantizer then minimises the importance-weighted error. Reports
 * the totals in *bpw and *rel_rmse (over all 2-D tensors). */
int q35_quantize_model(const q35_model *m, const char *out_path, const char *type,
                       const char *imatrix_path, int n_threads, q35_quant_progress progress,
                       void *user, double *bpw, double *rel_rmse, q35_error *err);
/* The same with other types for the token embedding and the classifier
 * (llama.cpp's --token-embedding-type / --output-tensor-type): embed_type
 * for token_embd.weight, output_type for output.weight; NULL means `type`.
 * A model whose classifier is its embedding (no output.weight) gives
 * token_embd.weight output_type when embed_type is NULL. */
int q35_quantize_model_types(const q35_model *m, const char *out_path, const char *type,
                             const char *embed_type, const char *output_type,
                             const char *imatrix_path, int n_threads, q35_quant_progress progress,
                             void *user, double *bpw, double *rel_rmse, q35_error *err);

/* Importance matrix: per input channel of every matrix, the mean squared
 * activation the engine feeds it, collected by sessions it is attached to. */
typedef struct q35_imatrix q35_imatrix;
int q35_imatrix_new(q35_imatrix **out, const q35_model *m, q35_error *err);
/* The same that also keeps, per distinct matrix input, H = sum of x x^T
 * (n x n doubles: q, k and v share one, gate and up one) for GPTQ, updated
 * with n_threads threads. */
int q35_imatrix_new_hessian(q35_imatrix **out, const q35_model *m, int n_threads, q35_error *err);

/* Sequential calibration. The matrices are quantized in stages: stage 1
 * holds token_embd and layer 0's attn_q/k/v; then, per layer l, its
 * attn_output, its ffn_gate and ffn_up, its ffn_down, the next layer's
 * attn_q/k/v; the last stage output.weight. Stage s calibrates on a file
 * whose earlier stages are quantized and the rest is not, so each matrix
 * sees the inputs the quantized matrices before it give
 * (q35_quantize_model_opts runs the whole loop when given calib_docs). */
int q35_quant_stages(const q35_model *m);                     /* 4 n_layers + 1 */
int q35_quant_stage_of(const q35_model *m, const char *name); /* 1..stages; 0: not a matrix name */
/* A Hessian imatrix (as q35_imatrix_new_hessian) collecting only the
 * matrices of one stage. A session it is attached to runs only the layers
 * those matrices need, token by token, and computes no logits. */
int q35_imatrix_new_stage(q35_imatrix **out, const q35_model *m, int stage, int n_threads, q35_error *err);
/* Asymmetric calibration: rim (made from the unquantized model ref, for the
 * same stage) is attached to a session of ref that evaluates each token just
 * before the session of im. q35_imatrix_pair(im, rim) pairs each input x of
 * im's matrices with ref's input x_ref of the same matrix (by name) and
 * token, and im keeps K = sum of x_ref x^T beside H: quantizing then fits
 * the unquantized model's outputs W x_ref from the inputs x the quantized
 * matrices before it give. q35_imatrix_pair(im, NULL) ends the pairing
 * (before rim is freed) and keeps K. */
int q35_imatrix_new_reference(q35_imatrix **out, const q35_model *ref, int stage, q35_error *err);
int q35_imatrix_pair(q35_imatrix *im, const q35_imatrix *rim, q35_error *err);

/* Calibration progress: stage of stages, documents done of n_docs,
 * tokens so far in this stage. */
typedef void (*q35_calib_progress)(void *user, int stage, int stages, int docs_done, int n_docs, int64_t tokens);

/* End-to-end tuning progress: epoch of epochs, documents done of n_docs,
 * the mean KL divergence per position over the last step. */
typedef void (*q35_tune_progress)(void *user, int epoch, int epochs, int docs_done, int n_docs, double kl);

/* Every option of a quantization; zero-initialise, then set what you need. */
typedef struct q35_quant_options {
    const char *type;          /* "Q2_5", "Q3_5", "Q4_5" or "Q8_S" (required) */
    const char *embed_type;    /* token_embd.weight; NULL: see q35_quantize_model_types */
    const char *output_type;   /* output.weight (or a tied embedding); NULL: type */
    const char *tensor_types;  /* "PATTERN=TYPE,...": tensors whose name contains
                                  PATTERN get TYPE (first match wins); NULL: none */
    const char *imatrix_path;  /* importance file (q35_imatrix_save), or NULL */
    q35_imatrix *calib;        /* from q35_imatrix_new_hessian after calibration
                                  text ran through a session of this model or of
                                  another file of it (tensors matched by name):
                                  GPTQ error feedback on every matrix, importance
                                  from its diagonal */
    double damp;               /* GPTQ damping of H's diagonal; 0: 0.1 with calib_docs
                                  (0.3 for Q2_5), 0.03 with calib_fast or calib */
    double bpw_budget;         /* > 0: raise tensors not fixed above one type up
                                  (embedding/classifier, attn_v, attn_k, ffn_up,
                                  ffn_down, ...; first layers first) while all 2-D tensors stay
                                  within this many bits per weight */
    /* Calibration text, instead of calib: the quantizer runs these documents
       (each from BOS, at most the model's context; calib_tokens tokens in
       all, 0 = every one) through the model itself. Sequentially by default:
       each stage (q35_quant_stages) on a file whose earlier stages are
       quantized, paired with the unquantized model (asymmetric: the
       matrices fit the unquantized outputs); calib_fast: once, through the
       unquantized model. */
    const char *const *calib_docs;
    const size_t *calib_lens;
    int calib_n_docs;
    int64_t calib_tokens;
    int calib_fast;
    q35_calib_progress calib_progress; /* may be NULL; gets user */
    int tune_epochs;           /* with calib_docs, after quantizing: passes of
                                  end-to-end tuning of the block scales and norm
                                  weights on the same documents (codes fixed; KL
                                  to the unquantized model), then one pass of the
                                  norms with the scales rounded to the format.
                                  0: 2 where the tuner needs at most 4 GiB, else
                                  none; -1: none */
    double tune_lr;            /* its Adam step; 0: 0.005 */
    q35_tune_progress tune_progress; /* may be NULL; gets user */
    const char *scratch_dir;   /* with calib_docs: the folder for the stage files
                                  when out_path is a device, FIFO or socket
                                  (NULL: /tmp); else they go beside out_path's
                                  file, on its file system */
    int n_threads;             /* <= 0: 1 */
    q35_quant_progress progress;
    void *user;
} q35_quant_options;
int q35_quantize_model_opts(const q35_model *m, const char *out_path, const q35_quant_options *o,
                            double *bpw, double *rel_rmse, q35_error *err);
void q35_imatrix_free(q35_imatrix *im);
/* Every token the session evaluates from now on adds to im (NULL detaches). */
void q35_session_set_imatrix(q35_session *s, q35_imatrix *im);
/* Tokens collected so far. */
int64_t q35_imatrix_tokens(const q35_imatrix *im);
/* Saves as GGUF (one F32 vector per matrix, named like the matrix). */
int q35_imatrix_save(const q35_imatrix *im, const char *path, q35_error *err);

/* ---- synthetic models (speed work) ---------------------------------- */
/* The hyperparameters of a named shape: "tiny" (a few MB, for tests),
 * "tinyllama-1.1b", "llama2-7b", "llama3-8b", "mistral-7b", "llama2-70b",
 * "llama3.2-1b", "qwen2.5-7b", "qwen3-8b", "gemma2-9b", "gemma3-4b",
 * "phi3-mini" (exact: width, layers, heads, head size, KV heads, FFN
 * width, vocabulary, context, RoPE base, tied classifier). Returns 0, or
 * -1 for an unknown name. */
int q35_synth_shape(const char *name, q35_config *cfg);
/* The shape names, comma-separated ("tiny, tinyllama-1.1b, ..."). */
const char *q35_synth_shape_names(void);
/* The architecture of a named shape ("llama", "gemma2", ...), or NULL. */
const char *q35_synth_shape_arch(const char *name);

#define Q35_SYNTH_DRY_RUN 1u /* size the file only; write nothing */
/* Writes a model of shape cfg with random weights as a self-contained GGUF
 * (llama.* keys, a placeholder SentencePiece vocabulary of cfg->vocab_size
 * pieces with byte fallback, every tensor) that q35 and llama.cpp load.
 * type: the matrices' type, "F32", "F16", "Q2_5", "Q3_5", "Q4_5" or
 * "Q8_S" (norms stay F32). The same seed gives the same file. Tensors are
 * generated while they are written (at most 64 MiB held at once), as
 * q35_model_save_gguf writes (a file: after checking the file system has
 * room). *file_bytes (may be NULL) receives the file's size.
 * For speed work only: the weights mean nothing. */
int q35_synth_model(const char *path, const q35_config *cfg, const char *type, uint64_t seed,
                    unsigned flags, uint64_t *file_bytes, q35_error *err);
/* The same for named shape `shape` (its architecture and the variants of
 * the real model: windows, soft-caps, RoPE scaling, tied classifier) with
 * the numbers of cfg (NULL: the shape's own; q35_synth_shape gives them to
 * change). */
int q35_synth_model_shape(const char *path, const char *shape, const q35_config *cfg, const char *type,
                          uint64_t seed, unsigned flags, uint64_t *file_bytes, q35_error *err);

/* ---- utilities ------------------------------------------------------- */
/* "123", "512M", "1.5G", "2T" (powers of 1024; an optional "iB"/"B" after
 * the suffix) into *out; 0 on success, -1 if s is no size. */
int q35_parse_size(const char *s, uint64_t *out);

/* ---- sampling -------------------------------------------------------- */
typedef struct q35_sampler_params {
    float temperature;    /* 0 = greedy (argmax) */
    int top_k;            /* 0 = off */
    float top_p;          /* 1 = off */
    float min_p;          /* 0 = off */
    float repeat_penalty; /* 1 = off */
    int repeat_last_n;    /* how many recent tokens the penalty looks at */
    uint64_t seed;
} q35_sampler_params;

/* llama.cpp's defaults: temp 0.8, top-k 40, top-p 0.95, min-p 0.05,
 * repeat penalty 1.0 over the last 64 tokens; seed as given. */
q35_sampler_params q35_sampler_defaults(uint64_t seed);

typedef struct q35_sampler q35_sampler;
int q35_sampler_new(q35_sampler **out, const q35_sampler_params *p,
                    int vocab_size, q35_error *err);
void q35_sampler_free(q35_sampler *s);
/* Picks the next token. logits (vocab_size floats) are not modified.
 * history holds the n_history tokens seen so far (for the penalties). */
int q35_sampler_sample(q35_sampler *s, const float *logits,
                       const int *history, int n_history);
/* OpenAI's presence and frequency penalties, as llama.cpp applies them:
 * after the repeat penalty, each distinct token among the last
 * repeat_last_n of the history loses frequency x its count there, plus
 * presence, from its logit. 0 and 0 (the default) switch them off. */
int q35_sampler_set_penalties(q35_sampler *s, float presence, float frequency, q35_error *err);
/* Log-probabilities of the distribution the last q35_sampler_sample call
 * started its chain from: the log-softmax of the logits after the
 * penalties, at temperature 1, before top-k/top-p/min-p (so finite for
 * every token and the same at any temperature, greedy included). *lp
 * receives token's; top_ids/top_lp the k most likely tokens, most likely
 * first (ties: lower id first). Returns how many were written (min(k,
 * vocab_size)), or -1 before any draw or for a token out of range. */
int q35_sampler_logprobs(q35_sampler *s, int token, int k, float *lp, int *top_ids, float *top_lp);

/* ---- chat templates --------------------------------------------------- */
/* A Jinja chat template, rendered exactly as @huggingface/jinja 0.5.13
 * (the implementation transformers.js uses) renders it, with the strings
 * bos_token and eos_token stand for. Immutable once made: many threads
 * may render with one. */
typedef struct q35_chat_template q35_chat_template;

/* Limits on one rendering: a template that would run longer, nest deeper
 * or produce more fails with a one-line error. Zero fields take the
 * default in brackets. */
typedef struct q35_chat_limits {
    uint64_t max_steps;  /* evaluation steps [20,000,000] */
    int max_depth;       /* nested macro calls [100] */
    size_t max_output;   /* bytes of any string made [64 MiB] */
    size_t max_memory;   /* bytes allocated while rendering [256 MiB] */
} q35_chat_limits;

/* Parses a template from len bytes of source; name is used in errors (a
 * syntax error names its line). bos/eos start as "<s>" and "</s>". */
int q35_chat_template_parse(q35_chat_template **out, const char *source, size_t len,
                            const char *name, q35_error *err);
/* The template a model or tokenizer carries, with its BOS/EOS strings:
 * path is a GGUF file (tokenizer.chat_template), a tokenizer_config.json
 * (chat_template: a string, or a list of {name, template} whose "default"
 * is taken), a Hugging Face folder or a file in one (its
 * tokenizer_config.json, else chat_template.jinja), or a .jinja file.
 * Fails with Q35_ERR_UNSUPPORTED when the file has none. */
int q35_chat_template_load(q35_chat_template **out, const char *path, q35_error *err);
/* A built-in template by name (q35_chat_template_names) or a .jinja file. */
int q35_chat_template_named(q35_chat_template **out, const char *name_or_file, q35_error *err);
/* "chatml, llama3, ...": the built-in names. */
const char *q35_chat_template_names(void);
void q35_chat_template_free(q35_chat_template *t);
const char *q35_chat_template_source(const q35_chat_template *t);
const char *q35_chat_template_bos(const q35_chat_template *t);
const char *q35_chat_template_eos(const q35_chat_template *t);
/* Replaces the BOS/EOS strings (NULL keeps one). */
int q35_chat_template_set_tokens(q35_chat_template *t, const char *bos, const char *eos,
                                 q35_error *err);

/* Renders a conversation given as len bytes of JSON in the line format of
 * the oracle script (../shared/oracles/jinja-render.mjs):
 * {"messages": [{"role": ..., "content": ...}, ...], "add_generation_prompt":
 * bool, ...}, every further key (tools, date_string, enable_thinking, ...)
 * a variable of the template beside bos_token and eos_token. lim may be
 * NULL. *out is malloc'ed and NUL-terminated, *out_len (may be NULL) bytes. */
int q35_chat_render(const q35_chat_template *t, const char *conversation, size_t len,
                    const q35_chat_limits *lim, char **out, size_t *out_len, q35_error *err);
/* All in one call: template source, messages as a JSON list, the flag,
 * extra context as a JSON object (or NULL), the BOS/EOS strings (NULL:
 * ""). */
int q35_chat_format(const char *template_source, const char *messages_json,
                    int add_generation_prompt, const char *extra_json, const char *bos_token,
                    const char *eos_token, char **out, size_t *out_len, q35_error *err);
/* Token ids for rendered text: where the template's BOS or EOS string
 * appears in it, the model's BOS/EOS id (llama2.c's vocabularies spell
 * them differently), the rest with the tokenizer's special tokens
 * (<|im_start|>, <end_of_turn> ...) read as those tokens
 * (Q35_TOKENIZE_PARSE_SPECIAL); BOS first unless the text starts with it.
 * *ids as q35_tokenize. */
int q35_chat_tokenize(const q35_model *m, const q35_chat_template *t, const char *text,
                      size_t len, int **ids, int *n_ids, q35_error *err);

#ifdef __cplusplus
}
#endif
#endif
