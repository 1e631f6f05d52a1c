/* spmodel.h — the few facts q35 reads out of a SentencePiece .model file.
 *
 * A .model is a protobuf ModelProto: field 1 repeats one SentencePiece per
 * vocabulary entry, field 3 is the NormalizerSpec (1 name, 2
 * precompiled_charsmap, 3 add_dummy_prefix, 4 remove_extra_whitespaces).
 * The wire format is walked with every length checked against the bytes
 * left; anything malformed is an error naming the file and byte offset.
 */
#ifndef Q35_TOKENIZER_SPMODEL_H
#define Q35_TOKENIZER_SPMODEL_H

#include <stddef.h>
#include <stdint.h>

#include "q35.h"

typedef struct q35_spmodel_info {
    int n_pieces;                 /* how many ModelProto.pieces entries */
    int add_dummy_prefix;         /* NormalizerSpec field 3 (default 1) */
    int remove_extra_whitespaces; /* NormalizerSpec field 4 (default 1) */
    char name[64];                /* NormalizerSpec.name, "" if absent;
                                     truncated, NUL-terminated */
    uint64_t charsmap_bytes;      /* length of precompiled_charsmap
                                     (0: no rules, i.e. identity) */
} q35_spmodel_info;

/* Parses size bytes of a ModelProto; path is only used in messages. */
int q35_spmodel_parse(const uint8_t *data, size_t size, const char *path,
                      q35_spmodel_info *info, q35_error *err);

/* Reads and parses the file at path. */
int q35_spmodel_read(const char *path, q35_spmodel_info *info, q35_error *err);

#endif
