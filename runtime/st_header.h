/* st_header.h: the JSON header of a safetensors file (and the schema file,
 * which is the same JSON without offsets), parsed and validated into tensor
 * entries. Nothing here reads tensor data. */
#ifndef SURG_ST_HEADER_H
#define SURG_ST_HEADER_H

#include <stdbool.h>
#include <stdint.h>

#include "support/arena.h"
#include "surg/surg.h"

/* The reference implementation refuses larger headers; so do we. */
#define ST_MAX_HEADER 100000000u

typedef struct st_entry {
    surg_tensor_info info;
    uint64_t begin, end; /* byte range inside the data region */
} st_entry;

/* The entries, names, shapes and metadata strings live in the arena given
 * to st_parse_header (the names inside the header text itself, decoded in
 * place); the metadata table is malloc'd (st_header_free). */
typedef struct st_header {
    st_entry *entries; /* in order of data offsets (schema: of the text) */
    size_t n;
    surg_meta_entry *meta; /* sorted by key */
    size_t n_meta;
} st_header;

typedef enum st_mode {
    ST_SAFETENSORS, /* data_offsets required, checked against data_len */
    ST_SCHEMA,      /* data_offsets ignored if present */
} st_mode;

/* Parse and validate `len` bytes of header JSON, which must live in `ar`
 * (its strings are decoded in place and kept). For ST_SAFETENSORS the
 * byte ranges must tile [0, data_len) exactly. A tensor name given twice
 * is left for ck_table.c to find, as it sorts the names anyway. Every problem is reported to
 * the sink naming `file` (and the tensor). Tables live in `ar`. */
surg_status st_parse_header(arena *ar, surg_sink *sink, const char *file,
                            char *json, size_t len, uint64_t data_len,
                            st_mode mode, st_header *out);

void st_header_free(st_header *h);

/* nelems and nbytes of a dtype and shape, or false on overflow or a sub-byte
 * dtype whose elements do not fill whole bytes (*partial set then). */
bool st_tensor_size(surg_dtype dt, uint32_t rank, const uint64_t *shape,
                    uint64_t *nelems, uint64_t *nbytes, bool *partial);

#endif
