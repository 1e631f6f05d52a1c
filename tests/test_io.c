/* test_io.c — the llama2.c reader on every layout: the real legacy and
 * version-2 files, and version-1, version-2 and untied-legacy files that
 * this test writes from stories260K (there is no real one of those in
 * ../shared): each must give the same tensors (version 2 within its
 * int8 rounding). */
#include <stdint.h>
#include <unistd.h>

#include "core/checked.h"
#include "harness.h"
#include "io/llama2c.h"

static char tmpdir[256];

static const float *tensor(const q35_weights *w, const char *name) {
    const q35_tensor *t = q35_weights_find(w, name);
    return t ? t->data : NULL;
}

static uint64_t numel(const q35_tensor *t) {
    return (uint64_t)t->ne[0] * (uint64_t)t->ne[1] * (uint64_t)t->ne[2] * (uint64_t)t->ne[3];
}

/* Writes w's tensors in version-1 or version-2 order. */
static void write_ak42(const char *path, const q35_weights *w, int version, int group) {
    const q35_config *c = &w->cfg;
    FILE *f = fopen(path, "wb");
    unsigned char h[256] = {0};
    int32_t v[9] = {0x616b3432, version, c->dim, c->hidden_dim, c->n_layers, c->n_heads,
                    c->n_kv_heads, c->vocab_size, c->seq_len};
    memcpy(h, v, sizeof v);
    h[36] = 1; /* shared classifier */
    memcpy(h + 37, &group, 4);
    fwrite(h, 1, 256, f);
    char name[64];
    const char *norms[] = {"attn_norm", "ffn_norm"};
    for (int n = 0; n < 2; n++)
        for (int l = 0; l < c->n_layers; l++) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, norms[n]);
            fwrite(tensor(w, name), 4, (size_t)c->dim, f);
        }
    fwrite(tensor(w, "output_norm.weight"), 4, (size_t)c->dim, f);
    const char *mats[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_down", "ffn_up"};
    for (int m = -1; m < 7; m++)
        for (int l = 0; l < (m < 0 ? 1 : c->n_layers); l++) {
            if (m < 0) snprintf(name, sizeof name, "token_embd.weight");
            else snprintf(name, sizeof name, "blk.%d.%s.weight", l, mats[m]);
            const q35_tensor *t = q35_weights_find(w, name);
            const float *x = t->data;
            uint64_t n = numel(t);
            if (version == 1) {
                fwrite(x, 4, n, f);
                continue;
            }
            int8_t *q = malloc(n);
            float *s = malloc(n / (uint64_t)group * 4);
            for (uint64_t g = 0; g < n / (uint64_t)group; g++) {
                float amax = 0;
                for (int i = 0; i < group; i++) amax = fmaxf(amax, fabsf(x[g * group + i]));
                s[g] = amax / 127.0f;
                for (int i = 0; i < group; i++)
                    q[g * group + i] = (int8_t)lrintf(s[g] ? x[g * group + i] / s[g] : 0);
            }
            fwrite(q, 1, n, f);
            fwrite(s, 4, n / (uint64_t)group, f);
            free(q);
            free(s);
        }
    fclose(f);
}

int main(void) {
    char path[1024], p[512];
    q35_error err = {0};
    snprintf(tmpdir, sizeof tmpdir, "/tmp/q35-test-io-XXXXXX");
    if (!mkdtemp(tmpdir)) return 2;

    q35_weights legacy;
    CHECK(q35_llama2c_load(&legacy, shared_path(path, sizeof path, "models/stories260K/stories260K.bin"), &err) == 0);
    CHECK(legacy.cfg.dim == 64 && legacy.cfg.hidden_dim == 172 && legacy.cfg.n_layers == 5 &&
          legacy.cfg.n_heads == 8 && legacy.cfg.n_kv_heads == 4 && legacy.cfg.vocab_size == 512 &&
          legacy.cfg.seq_len == 512 && legacy.cfg.shared_classifier == 1);
    CHECK(legacy.n_tensors == 2 + 9 * 5);
    /* fp32 weights are mapped, not copied */
    const q35_tensor *emb = q35_weights_find(&legacy, "token_embd.weight");
    CHECK(emb && (const uint8_t *)emb->data == legacy.file.data + 28);
    CHECK(legacy.n_owned == 0);

    /* version 1: same tensors */
    snprintf(p, sizeof p, "%s/v1.bin", tmpdir);
    write_ak42(p, &legacy, 1, 0);
    q35_weights v1;
    CHECK(q35_llama2c_load(&v1, p, &err) == 0);
    int same = v1.n_tensors == legacy.n_tensors;
    for (int i = 0; same && i < legacy.n_tensors; i++) {
        const q35_tensor *a = &legacy.tensors[i], *b = q35_weights_find(&v1, a->name);
        same = b && numel(a) == numel(b) && memcmp(a->data, b->data, a->nbytes) == 0;
    }
    CHECKF(same, "version 1 file's tensors differ from the legacy file's");

    /* version 2: expanded to q * scale, within half an int8 step */
    snprintf(p, sizeof p, "%s/v2.bin", tmpdir);
    write_ak42(p, &legacy, 2, 64);
    q35_weights v2;
    CHECK(q35_llama2c_load(&v2, p, &err) == 0);
    double worst = 0;
    for (int i = 0; i < legacy.n_tensors; i++) {
        const q35_tensor *a = &legacy.tensors[i], *b = q35_weights_find(&v2, a->name);
        if (!b) { worst = 1e9; break; }
        const float *x = a->data, *y = b->data;
        for (uint64_t j = 0; j < numel(a); j++) worst = fmax(worst, fabs((double)x[j] - y[j]));
    }
    CHECKF(worst < 0.02, "version 2 round trip error %g", worst);
    CHECK(strstr(v2.format, "v2") != NULL);

    /* an untied legacy file (negative vocab_size, classifier after the RoPE tables) */
    size_t len;
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(len + emb->nbytes);
    CHECK(fread(b, 1, len, f) == len);
    fclose(f);
    int32_t neg = -512;
    memcpy(b + 20, &neg, 4);
    memcpy(b + len, emb->data, emb->nbytes);
    snprintf(p, sizeof p, "%s/untied.bin", tmpdir);
    f = fopen(p, "wb");
    fwrite(b, 1, len + emb->nbytes, f);
    fclose(f);
    free(b);
    q35_weights untied;
    CHECK(q35_llama2c_load(&untied, p, &err) == 0);
    CHECK(untied.cfg.shared_classifier == 0 && untied.cfg.vocab_size == 512);
    const q35_tensor *out = q35_weights_find(&untied, "output.weight");
    CHECK(out && memcmp(out->data, emb->data, emb->nbytes) == 0);

    /* the real version-2 model */
    q35_weights s3;
    CHECK(q35_llama2c_load(&s3, shared_path(path, sizeof path, "models/stories3M/stories3M-q80.bin"), &err) == 0);
    CHECK(s3.cfg.dim == 192 && s3.cfg.n_kv_heads == 2 && s3.cfg.vocab_size == 4096);
    uint64_t n = 0;
    for (int i = 0; i < s3.n_tensors; i++) n += numel(&s3.tensors[i]);
    CHECKF(n == 3145728 + 13 * 192, "stories3M has %llu parameters", (unsigned long long)n);

    /* checked arithmetic */
    uint64_t r;
    CHECK(q35_mul_u64(UINT64_MAX / 2, 3, &r) == 1);
    CHECK(q35_mul3_u64(1ull << 40, 1ull << 20, 1ull << 4, &r) == 1);
    CHECK(q35_add_u64(UINT64_MAX, 1, &r) == 1);
    CHECK(q35_mul3_u64(1000, 1000, 1000, &r) == 0 && r == 1000000000ull);

    q35_weights_free(&legacy);
    q35_weights_free(&v1);
    q35_weights_free(&v2);
    q35_weights_free(&untied);
    q35_weights_free(&s3);
    snprintf(p, sizeof p, "rm -rf '%s'", tmpdir);
    CHECK(system(p) == 0);
    TEST_END();
}
