/* vocab.c — the piece table every reader fills: storage, the hash index,
 * and the special tokens llama.cpp recognises by their spelling
 * (end-of-turn pieces, the end-of-generation set). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "core/hash.h"
#include "tokenizer/tok_internal.h"

static void *alloc_array(uint64_t count, uint64_t size) {
    uint64_t bytes;
    if (q35_mul_u64(count, size, &bytes) || bytes > SIZE_MAX) return NULL;
    return calloc(1, bytes ? (size_t)bytes : 1);
}

int tok_grow(void *v, int *cap, int n, size_t size, int first) {
    if (n < *cap) return Q35_OK;
    if (*cap > INT_MAX / 2) return Q35_ERR_NOMEM;
    int c = *cap ? 2 * *cap : first;
    void *old, *g;
    memcpy(&old, v, sizeof old); /* v is a T **: read and written as bytes */
    if (!(g = realloc(old, (size_t)c * size))) return Q35_ERR_NOMEM;
    memcpy(v, &g, sizeof g);
    *cap = c;
    return Q35_OK;
}

q35_tokenizer *tok_alloc(int n, uint64_t total_bytes) {
    q35_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->n = n;
    t->bytes = alloc_array(total_bytes + 1, 1);
    t->off = alloc_array((uint64_t)n, sizeof *t->off);
    t->len = alloc_array((uint64_t)n, sizeof *t->len);
    t->score = alloc_array((uint64_t)n, sizeof *t->score);
    t->type = alloc_array((uint64_t)n, sizeof *t->type);
    t->flags = alloc_array((uint64_t)n, sizeof *t->flags);
    t->bos = t->eos = t->eot = t->eom = t->unk = t->bpe_unk = -1;
    for (int b = 0; b < 256; b++) t->byte_id[b] = t->raw_byte_id[b] = -1;
    t->added_raw.n = t->added_norm.n = 0;
    memset(t->added_raw.root_child, 0xff, sizeof t->added_raw.root_child);
    memset(t->added_norm.root_child, 0xff, sizeof t->added_norm.root_child);
    if (!t->bytes || !t->off || !t->len || !t->score || !t->type || !t->flags) {
        tok_free(t);
        return NULL;
    }
    return t;
}

void tok_set_piece(q35_tokenizer *t, int i, const char *s, uint32_t len, uint64_t *at) {
    t->off[i] = *at;
    t->len[i] = len;
    if (len) memcpy(t->bytes + *at, s, len);
    t->bytes[*at + len] = '\0';
    *at += (uint64_t)len + 1;
    if (len > t->max_piece_len) t->max_piece_len = len;
}

int tok_index(q35_tokenizer *t, int want) {
    uint64_t count = 0;
    for (int i = 0; i < t->n; i++) count += (t->flags[i] & want) != 0;
    uint64_t cap = 16;
    while (cap < 2 * count) cap *= 2;
    free(t->slot);
    t->slot = malloc((size_t)cap * sizeof *t->slot);
    if (!t->slot) return Q35_ERR_NOMEM;
    memset(t->slot, 0xff, (size_t)cap * sizeof *t->slot); /* all -1 */
    t->mask = cap - 1;
    for (int id = 0; id < t->n; id++) {
        if (!(t->flags[id] & want)) continue;
        const char *s = t->bytes + t->off[id];
        if (tok_lookup(t, s, t->len[id]) >= 0) continue; /* duplicate: first wins */
        uint64_t i = q35_hash_bytes(s, t->len[id]) & t->mask;
        while (t->slot[i] >= 0) i = (i + 1) & t->mask;
        t->slot[i] = id;
    }
    return Q35_OK;
}

int tok_lookup(const q35_tokenizer *t, const char *s, size_t n) {
    if (!t->slot) return -1;
    for (uint64_t i = q35_hash_bytes(s, n) & t->mask;; i = (i + 1) & t->mask) {
        int id = t->slot[i];
        if (id < 0) return -1;
        if (t->len[id] == n && memcmp(t->bytes + t->off[id], s, n) == 0) return id;
    }
}

int tok_find(const q35_tokenizer *t, const char *s) {
    size_t n = strlen(s);
    for (int i = 0; i < t->n; i++)
        if (t->len[i] == n && memcmp(t->bytes + t->off[i], s, n) == 0) return i;
    return -1;
}

int tok_byte_piece(const char *s, size_t n) {
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

/* ---- end of generation ----------------------------------------------------
 *
 * llama.cpp (src/llama-vocab.cpp, load) finds the end-of-turn token by its
 * spelling when the file names none, and stops generation at every piece
 * spelled as one of EOG_TEXT, at EOS, EOT and EOM. Two of its exceptions
 * are kept: <|end|> is not an end when <|return|> and <|call|> (gpt-oss)
 * or <|calls|> and <|flush|> (solar-open) exist, and </s> is not one when
 * <|tool_response> does (gemma4). In GGUF vocabularies the pieces so found
 * become control (special) pieces, as llama.cpp makes them; tokenizer.json
 * keeps its own added-token flags (tokenizers does not look at spellings). */

static const char *const EOT_TEXT[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
    "<EOT>", "_<EOT>", "[EOT]", "<\xef\xbd\x9c\x65nd\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
    "<end_of_utterance>"};

static const char *const EOG_TEXT[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<\xef\xbd\x9c\x65nd\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", "[e~["};

static int in_list(const q35_tokenizer *t, int id, const char *const *list, size_t n) {
    for (size_t k = 0; k < n; k++)
        if (strlen(list[k]) == t->len[id] && memcmp(t->bytes + t->off[id], list[k], t->len[id]) == 0)
            return 1;
    return 0;
}

static void make_special(q35_tokenizer *t, int id) {
    if (t->type[id] == Q35_PIECE_NORMAL || t->type[id] == Q35_PIECE_USER_DEFINED)
        t->type[id] = Q35_PIECE_CONTROL;
    t->flags[id] |= PF_SPECIAL;
}

int tok_finish_specials(q35_tokenizer *t, int by_spelling) {
    const size_t n_eot = sizeof EOT_TEXT / sizeof EOT_TEXT[0];
    const size_t n_eog = by_spelling ? sizeof EOG_TEXT / sizeof EOG_TEXT[0] : 0;
    for (int i = 0; by_spelling && i < t->n && t->eot < 0; i++)
        if (in_list(t, i, EOT_TEXT, n_eot)) t->eot = i;
    if (t->eot >= 0 && by_spelling == 2) make_special(t, t->eot);
    for (int i = 0; by_spelling && i < t->n && t->eom < 0; i++)
        if (t->len[i] == 10 && memcmp(t->bytes + t->off[i], "<|eom_id|>", 10) == 0) t->eom = i;

    uint8_t *mark = calloc((size_t)t->n, 1);
    if (!mark) return Q35_ERR_NOMEM;
    int end = -1, has_return = 0, has_call = 0, has_flush = 0, has_tool_response = 0, s_close = -1;
    for (int i = 0; i < t->n; i++) {
        if (!in_list(t, i, EOG_TEXT, n_eog)) continue;
        mark[i] = 1;
        if (by_spelling == 2) make_special(t, i);
    }
    if (t->eos >= 0) mark[t->eos] = 1;
    if (t->eot >= 0) mark[t->eot] = 1;
    if (t->eom >= 0) mark[t->eom] = 1;
    for (int i = 0; i < t->n; i++) {
        if (!mark[i]) continue;
        const char *s = t->bytes + t->off[i];
        size_t n = t->len[i];
#define IS(lit) (n == sizeof lit - 1 && memcmp(s, lit, n) == 0)
        if (IS("<|return|>")) has_return = 1;
        else if (IS("<|call|>") || IS("<|calls|>")) has_call = 1;
        else if (IS("<|flush|>")) has_flush = 1;
        else if (IS("<|end|>")) end = i;
        else if (IS("<|tool_response>")) has_tool_response = 1;
        else if (IS("</s>")) s_close = i;
#undef IS
    }
    if (end >= 0 && ((has_return && has_call) || (has_call && has_flush))) mark[end] = 0;
    if (has_tool_response && s_close >= 0) mark[s_close] = 0;
    int k = 0;
    for (int i = 0; i < t->n; i++) k += mark[i];
    free(t->eog);
    t->eog = malloc((size_t)(k ? k : 1) * sizeof *t->eog);
    if (!t->eog) {
        free(mark);
        return Q35_ERR_NOMEM;
    }
    t->n_eog = 0;
    for (int i = 0; i < t->n; i++)
        if (mark[i]) t->eog[t->n_eog++] = i;
    free(mark);
    return Q35_OK;
}
