/* spmodel.c — a bounds-checked walk over a SentencePiece .model protobuf
 * (see spmodel.h). Only the piece count and the NormalizerSpec are kept;
 * every other field is skipped by its wire type. */
#include "tokenizer/spmodel.h"

#include <string.h>

#include "core/error.h"
#include "core/mapfile.h"

/* Protobuf wire types. Groups (3, 4) are deprecated and never used by
 * sentencepiece, so they count as malformed here. */
enum { WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_LEN = 2, WIRE_FIXED32 = 5 };

/* A cursor over bytes [p, end); start is where the file begins (offsets in
 * messages are counted from it). */
typedef struct pb_reader {
    const uint8_t *start, *p, *end;
} pb_reader;

/* One field as read: its number, wire type and value. Varints and fixed
 * numbers land in v; length-delimited fields in data/len. */
typedef struct pb_field {
    uint64_t num;
    int wire;
    uint64_t v;
    const uint8_t *data;
    uint64_t len;
} pb_field;

/* Reads a varint (at most 10 bytes). Returns 0, or -1 if it is cut off or
 * too long. */
static int pb_varint(pb_reader *r, uint64_t *v) {
    uint64_t x = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (r->p == r->end) return -1;
        uint8_t c = *r->p++;
        x |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

/* Reads the next field. Returns 1 with f filled, 0 at the end of the
 * bytes, -1 on malformed input with *why saying what is wrong. */
static int pb_next(pb_reader *r, pb_field *f, const char **why) {
    if (r->p == r->end) return 0;
    uint64_t key;
    if (pb_varint(r, &key) != 0) {
        *why = "field key cut off or too long";
        return -1;
    }
    f->num = key >> 3;
    f->wire = (int)(key & 7);
    f->v = 0;
    f->data = NULL;
    f->len = 0;
    if (f->num == 0) {
        *why = "field number 0";
        return -1;
    }
    size_t left;
    switch (f->wire) {
    case WIRE_VARINT:
        if (pb_varint(r, &f->v) != 0) {
            *why = "varint cut off or too long";
            return -1;
        }
        return 1;
    case WIRE_FIXED64:
    case WIRE_FIXED32: {
        size_t n = f->wire == WIRE_FIXED64 ? 8 : 4;
        if ((size_t)(r->end - r->p) < n) {
            *why = "fixed-width value cut off";
            return -1;
        }
        for (size_t i = 0; i < n; i++) f->v |= (uint64_t)r->p[i] << (8 * i);
        r->p += n;
        return 1;
    }
    case WIRE_LEN:
        if (pb_varint(r, &f->len) != 0) {
            *why = "length cut off or too long";
            return -1;
        }
        left = (size_t)(r->end - r->p);
        if (f->len > left) {
            *why = "length runs past the end of its message";
            return -1;
        }
        f->data = r->p;
        r->p += f->len;
        return 1;
    default:
        *why = "unknown or group wire type";
        return -1;
    }
}

static int malformed(q35_error *err, const char *path, const pb_reader *r,
                     const char *why) {
    return q35_fail(err, Q35_ERR_FORMAT,
                    "%s: not a valid SentencePiece model: %s at byte %llu",
                    path, why, (unsigned long long)(r->p - r->start));
}

static int wrong_wire(q35_error *err, const char *path, const pb_reader *r,
                      const char *what) {
    return q35_fail(err, Q35_ERR_FORMAT,
                    "%s: not a valid SentencePiece model: %s has the wrong "
                    "wire type (byte %llu)",
                    path, what, (unsigned long long)(r->p - r->start));
}

/* Reads one NormalizerSpec message (data, len) into info. */
static int parse_normalizer(const uint8_t *start, const uint8_t *data,
                            uint64_t len, const char *path,
                            q35_spmodel_info *info, q35_error *err) {
    pb_reader r = {start, data, data + len};
    pb_field f;
    const char *why = NULL;
    int got;
    while ((got = pb_next(&r, &f, &why)) == 1) {
        switch (f.num) {
        case 1: { /* name */
            if (f.wire != WIRE_LEN)
                return wrong_wire(err, path, &r, "normalizer_spec.name");
            size_t n = f.len < sizeof info->name - 1 ? (size_t)f.len
                                                     : sizeof info->name - 1;
            memcpy(info->name, f.data, n);
            info->name[n] = '\0';
            break;
        }
        case 2: /* precompiled_charsmap */
            if (f.wire != WIRE_LEN)
                return wrong_wire(err, path, &r,
                                  "normalizer_spec.precompiled_charsmap");
            info->charsmap_bytes = f.len;
            break;
        case 3:
            if (f.wire != WIRE_VARINT)
                return wrong_wire(err, path, &r,
                                  "normalizer_spec.add_dummy_prefix");
            info->add_dummy_prefix = f.v != 0;
            break;
        case 4:
            if (f.wire != WIRE_VARINT)
                return wrong_wire(err, path, &r,
                                  "normalizer_spec.remove_extra_whitespaces");
            info->remove_extra_whitespaces = f.v != 0;
            break;
        default:
            break; /* other fields: already skipped by pb_next */
        }
    }
    return got < 0 ? malformed(err, path, &r, why) : Q35_OK;
}

int q35_spmodel_parse(const uint8_t *data, size_t size, const char *path,
                      q35_spmodel_info *info, q35_error *err) {
    memset(info, 0, sizeof *info);
    info->add_dummy_prefix = 1;
    info->remove_extra_whitespaces = 1;
    if (size == 0)
        return q35_fail(err, Q35_ERR_FORMAT,
                        "%s: empty file, not a SentencePiece model", path);

    pb_reader r = {data, data, data + size};
    pb_field f;
    const char *why = NULL;
    int got;
    while ((got = pb_next(&r, &f, &why)) == 1) {
        if (f.num == 1) { /* one SentencePiece */
            if (f.wire != WIRE_LEN) return wrong_wire(err, path, &r, "piece");
            if (info->n_pieces == INT32_MAX)
                return malformed(err, path, &r, "too many pieces");
            info->n_pieces++;
        } else if (f.num == 3) { /* NormalizerSpec (repeats merge) */
            if (f.wire != WIRE_LEN)
                return wrong_wire(err, path, &r, "normalizer_spec");
            int rc = parse_normalizer(data, f.data, f.len, path, info, err);
            if (rc) return rc;
        }
    }
    if (got < 0) return malformed(err, path, &r, why);
    if (info->n_pieces == 0)
        return q35_fail(err, Q35_ERR_FORMAT,
                        "%s: not a valid SentencePiece model: it holds no "
                        "pieces", path);
    return Q35_OK;
}

int q35_spmodel_read(const char *path, q35_spmodel_info *info,
                     q35_error *err) {
    q35_mapfile mf;
    int rc = q35_mapfile_open(&mf, path, err);
    if (rc) return rc;
    rc = q35_spmodel_parse(mf.data, (size_t)mf.size, path, info, err);
    q35_mapfile_close(&mf);
    return rc;
}
