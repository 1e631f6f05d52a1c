/* kquant.c — ggml's block types read into fp32 (see kquant.h). One struct
 * per block, its size fixed by a static_assert; each block is copied out
 * of the file (tensor data need not be aligned) before it is read. Every
 * weight is (scale) * (integer) or (scale) * (integer) - (offset), with
 * the scales computed once per (sub-)block in float from fp16 fields, as
 * ggml computes them; the source is built without contraction into FMA
 * (-std=c11), as libggml's reference functions are. */
#include "format/kquant.h"

#include <assert.h>
#include <string.h>

#include "format/dtype.h"

#define SUPER 256 /* weights per K-quant super-block */

/* ---- 32-weight blocks ---------------------------------------------------- */

typedef struct {
    uint16_t d;        /* fp16 scale */
    uint8_t qs[16];    /* byte j: weight j (low nibble), weight j + 16 (high) */
} block_q4_0;
static_assert(sizeof(block_q4_0) == 18, "Q4_0 block is 18 bytes");

typedef struct {
    uint16_t d, m;     /* fp16 scale and offset: x = d * q + m */
    uint8_t qs[16];
} block_q4_1;
static_assert(sizeof(block_q4_1) == 20, "Q4_1 block is 20 bytes");

typedef struct {
    uint16_t d;
    uint8_t qh[4];     /* bit j (little-endian u32): the fifth bit of weight j */
    uint8_t qs[16];
} block_q5_0;
static_assert(sizeof(block_q5_0) == 22, "Q5_0 block is 22 bytes");

typedef struct {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[16];
} block_q5_1;
static_assert(sizeof(block_q5_1) == 24, "Q5_1 block is 24 bytes");

typedef struct {
    uint16_t d;
    int8_t qs[32];
} block_q8_0;
static_assert(sizeof(block_q8_0) == 34, "Q8_0 block is 34 bytes");

typedef struct {
    uint16_t d;
    uint8_t qs[16];    /* indices into the 16 non-uniform levels */
} block_iq4_nl;
static_assert(sizeof(block_iq4_nl) == 18, "IQ4_NL block is 18 bytes");

/* ---- 256-weight super-blocks --------------------------------------------- */

typedef struct {
    uint8_t scales[16]; /* per 16 weights: scale (low nibble), min (high nibble) */
    uint8_t qs[64];     /* 2-bit codes */
    uint16_t d, dmin;   /* fp16 super-block factors of the scales and mins */
} block_q2_k;
static_assert(sizeof(block_q2_k) == 84, "Q2_K block is 84 bytes");

typedef struct {
    uint8_t hmask[32];  /* the third bit of each code */
    uint8_t qs[64];     /* the low two bits */
    uint8_t scales[12]; /* 16 signed 6-bit scales, biased by 32 */
    uint16_t d;
} block_q3_k;
static_assert(sizeof(block_q3_k) == 110, "Q3_K block is 110 bytes");

typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12]; /* 8 6-bit scales and 8 6-bit mins, one pair per 32 */
    uint8_t qs[128];    /* 4-bit codes */
} block_q4_k;
static_assert(sizeof(block_q4_k) == 144, "Q4_K block is 144 bytes");

typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[32];     /* the fifth bit of each code */
    uint8_t qs[128];
} block_q5_k;
static_assert(sizeof(block_q5_k) == 176, "Q5_K block is 176 bytes");

typedef struct {
    uint8_t ql[128];    /* low four bits of each 6-bit code */
    uint8_t qh[64];     /* high two bits */
    int8_t scales[16];  /* one signed 8-bit scale per 16 weights */
    uint16_t d;
} block_q6_k;
static_assert(sizeof(block_q6_k) == 210, "Q6_K block is 210 bytes");

typedef struct {
    uint16_t d;
    uint16_t scales_h;  /* high two bits of the 8 sub-block scales */
    uint8_t scales_l[4];/* low four bits, two per byte */
    uint8_t qs[128];
} block_iq4_xs;
static_assert(sizeof(block_iq4_xs) == 136, "IQ4_XS block is 136 bytes");

/* IQ4_NL's and IQ4_XS's 16 levels (ggml's kvalues_iq4nl). */
static const int8_t iq4_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                      1,    13,   25,  38,  53,  69,  89,  113};

static float half(uint16_t h) { return q35_f16_to_f32(h); }

/* ---- the 32-weight types ------------------------------------------------- */

void q35_q4_0_to_f32(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    block_q4_0 b;
    for (int64_t i = 0; i < n / 32; i++, p += sizeof b, dst += 32) {
        memcpy(&b, p, sizeof b);
        const float d = half(b.d);
        for (int j = 0; j < 16; j++) {
            dst[j] = (float)((b.qs[j] & 15) - 8) * d;
            dst[j + 16] = (float)((b.qs[j] >> 4) - 8) * d;
        }
    }
}

void q35_q4_1_to_f32(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    block_q4_1 b;
    for (int64_t i = 0; i < n / 32; i++, p += sizeof b, dst += 32) {
        memcpy(&b, p, sizeof b);
        const float d = half(b.d), m = half(b.m);
        for (int j = 0; j < 16; j++) {
            dst[j] = (float)(b.qs[j] & 15) * d + m;
            dst[j + 16] = (float)(b.qs[j] >> 4) * d + m;
        }
    }
}

/* The 5-bit codes of a Q5 block: the nibble, and bit j (weights 0..15) or
 * bit j + 16 (weights 16..31) of qh as the fifth bit. */
static void q5_codes(const uint8_t qh_bytes[4], const uint8_t qs[16], int codes[32]) {
    uint32_t qh;
    memcpy(&qh, qh_bytes, 4);
    for (int j = 0; j < 16; j++) {
        codes[j] = (qs[j] & 15) | (int)((qh >> j) & 1) << 4;
        codes[j + 16] = (qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
    }
}

void q35_q5_0_to_f32(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    block_q5_0 b;
    int q[32];
    for (int64_t i = 0; i < n / 32; i++, p += sizeof b, dst += 32) {
        memcpy(&b, p, sizeof b);
        const float d = half(b.d);
        q5_codes(b.qh, b.qs, q);
        for (int j = 0; j < 32; j++) dst[j] = (float)(q[j] - 16) * d;
    }
}

void q35_q5_1_to_f32(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    block_q5_1 b;
    int q[32];
    for (int64_t i = 0; i < n / 32; i++, p += sizeof b, dst += 32) {
        memcpy(&b, p, sizeof b);
        const float d = half(b.d), m = half(b.m);
        q5_codes(b.qh, b.qs, q);
        for (int j = 0; j < 32; j++) dst[j] = (float)q[j] * d + m;
    }
}

void q35_q8_0_to_f32(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    block_q8_0 b;
    for (int64_t i = 0; i < n / 32; i++, p += sizeof b, dst += 32) {
        memcpy(&b, p, sizeof b);
        const float d = half(b.d);
        for (int j = 0; j < 32; j++) dst[j] = (float)b.qs[j] * d;
    }
}

void q35_iq4_nl_to_f32(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    block_iq4_nl b;
    for (int64_t i = 0; i < n / 32; i++, p += sizeof b, dst += 32) {
        memcpy(&b, p, sizeof b);
        const float d = half(b.d);
        for (int j = 0; j < 16; j++) {
            dst[j] = d * (float)iq4_levels[b.qs[j] & 15];
            dst[j + 16] = d * (float)iq4_levels[b.qs[j] >> 4];
        }
    }
}

/* ---- the K-quants ---------------------------------------------------------
 * A super-block's 256 weights are 2 halves of 128; within a half, the
 * codes of 32 bytes are read 4 times (2 bits at shifts 0, 2, 4, 6 for
 * Q2_K/Q3_K), or 2 times (the nibbles of 32 bytes for Q4_K/Q5_K), each
 * pass giving 32 consecutive weights. */

/* Q4_K/Q5_K: 8 scales and 8 mins of 6 bits in 12 bytes. Pairs 0..3: the
 * low 6 bits of bytes k (scale) and k + 4 (min). Pairs 4..7: the nibbles
 * of byte k + 4 (scale low, min low) and the top two bits of bytes k - 4
 * (scale) and k (min) as their bits 4..5. */
static void k_scale_min(const uint8_t s[12], int k, int *scale, int *min) {
    if (k < 4) {
        *scale = s[k] & 63;
        *min = s[k + 4] & 63;
    } else {
        *scale = (s[k + 4] & 15) | (s[k - 4] >> 6) << 4;
        *min = (s[k + 4] >> 4) | (s[k] >> 6) << 4;
    }
}

void q35_q2_k_to_f32(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    block_q2_k b;
    for (int64_t i = 0; i < n / SUPER; i++, p += sizeof b) {
        memcpy(&b, p, sizeof b);
        const float d = half(b.d), dmin = half(b.dmin);
        int sub = 0; /* 16 groups of 16 weights, each its own scale byte */
        for (int h = 0; h < 2; h++) {
            const uint8_t *q = b.qs + 32 * h;
            for (int shift = 0; shift < 8; shift += 2)
                for (int part = 0; part < 2; part++, sub++) {
                    const float dl = d * (float)(b.scales[sub] & 15);
                    const float ml = dmin * (float)(b.scales[sub] >> 4);
                    for (int l = 0; l < 16; l++)
                        *dst++ = dl * (float)((q[16 * part + l] >> shift) & 3) - ml;
                }
        }
    }
}

/* Q3_K's 16 scales: the low nibble from bytes 0..7 (scales 0..7 the low
 * nibbles, 8..15 the high), bits 4..5 from byte 8 + k % 4 at shift
 * 2 * (k / 4); stored plus 32. */
static int q3_k_scale(const uint8_t s[12], int k) {
    const int low = k < 8 ? s[k] & 15 : s[k - 8] >> 4;
    const int high = (s[8 + k % 4] >> (2 * (k / 4))) & 3;
    return (low | high << 4) - 32;
}

void q35_q3_k_to_f32(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    block_q3_k b;
    for (int64_t i = 0; i < n / SUPER; i++, p += sizeof b) {
        memcpy(&b, p, sizeof b);
        const float d = half(b.d);
        int sub = 0, bit = 0; /* the hmask bit runs over the 8 passes */
        for (int h = 0; h < 2; h++) {
            const uint8_t *q = b.qs + 32 * h;
            for (int shift = 0; shift < 8; shift += 2, bit++)
                for (int part = 0; part < 2; part++, sub++) {
                    const float dl = d * (float)q3_k_scale(b.scales, sub);
                    for (int l = 16 * part; l < 16 * part + 16; l++) {
                        const int code = ((q[l] >> shift) & 3) - ((b.hmask[l] >> bit) & 1 ? 0 : 4);
                        *dst++ = dl * (float)code;
                    }
                }
        }
    }
}

void q35_q4_k_to_f32(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    block_q4_k b;
    for (int64_t i = 0; i < n / SUPER; i++, p += sizeof b) {
        memcpy(&b, p, sizeof b);
        const float d = half(b.d), dmin = half(b.dmin);
        for (int c = 0; c < 4; c++) { /* 4 chunks of 64: 32 bytes, low then high nibbles */
            const uint8_t *q = b.qs + 32 * c;
            for (int nib = 0; nib < 2; nib++) {
                int sc, mn;
                k_scale_min(b.scales, 2 * c + nib, &sc, &mn);
                const float dl = d * (float)sc, ml = dmin * (float)mn;
                for (int l = 0; l < 32; l++) *dst++ = dl * (float)((q[l] >> (4 * nib)) & 15) - ml;
            }
        }
    }
}

void q35_q5_k_to_f32(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    block_q5_k b;
    for (int64_t i = 0; i < n / SUPER; i++, p += sizeof b) {
        memcpy(&b, p, sizeof b);
        const float d = half(b.d), dmin = half(b.dmin);
        for (int c = 0; c < 4; c++) {
            const uint8_t *q = b.qs + 32 * c;
            for (int nib = 0; nib < 2; nib++) {
                const int bit = 2 * c + nib; /* of qh[l], the fifth bit */
                int sc, mn;
                k_scale_min(b.scales, bit, &sc, &mn);
                const float dl = d * (float)sc, ml = dmin * (float)mn;
                for (int l = 0; l < 32; l++) {
                    const int code = ((q[l] >> (4 * nib)) & 15) + ((b.qh[l] >> bit) & 1) * 16;
                    *dst++ = dl * (float)code - ml;
                }
            }
        }
    }
}

/* Q6_K: per half of 128, weight 32 * k + l (k = 0..3, l = 0..31) takes
 * the low (k = 0, 1) or high (k = 2, 3) nibble of ql[l + 32 * (k & 1)]
 * and bits 2k..2k+1 of qh[l]; its scale is scales[8 * half + 2 * k + l / 16]. */
void q35_q6_k_to_f32(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    block_q6_k b;
    for (int64_t i = 0; i < n / SUPER; i++, p += sizeof b) {
        memcpy(&b, p, sizeof b);
        const float d = half(b.d);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = b.ql + 64 * h, *qh = b.qh + 32 * h;
            const int8_t *sc = b.scales + 8 * h;
            for (int k = 0; k < 4; k++)
                for (int l = 0; l < 32; l++) {
                    const int low = (ql[l + 32 * (k & 1)] >> (4 * (k >> 1))) & 15;
                    const int code = (low | ((qh[l] >> (2 * k)) & 3) << 4) - 32;
                    dst[128 * h + 32 * k + l] = d * (float)sc[2 * k + l / 16] * (float)code;
                }
        }
        dst += SUPER;
    }
}

void q35_iq4_xs_to_f32(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    block_iq4_xs b;
    for (int64_t i = 0; i < n / SUPER; i++, p += sizeof b) {
        memcpy(&b, p, sizeof b);
        const float d = half(b.d);
        for (int s = 0; s < 8; s++) { /* 8 sub-blocks of 32 with 6-bit scales biased by 32 */
            const int ls = ((b.scales_l[s / 2] >> (4 * (s % 2))) & 15) | ((b.scales_h >> (2 * s)) & 3) << 4;
            const float dl = d * (float)(ls - 32);
            const uint8_t *q = b.qs + 16 * s;
            for (int j = 0; j < 16; j++) {
                dst[j] = dl * (float)iq4_levels[q[j] & 15];
                dst[j + 16] = dl * (float)iq4_levels[q[j] >> 4];
            }
            dst += 32;
        }
    }
}
