/* zarr.h: zarr arrays — v2 (`.zarray`) and v3 (`zarr.json`, with
 * `sharding_indexed`) — read from a key-value store (kvstore.h) and decoded
 * into plain little-endian C-order bytes, a bounded piece at a time. Orbax
 * keeps every array of a checkpoint so (one OCDBT store, or one directory
 * per array). The metadata is read once, at open, and says all a reader
 * needs to describe the tensor (dtype, shape, bytes); the chunks are read
 * only when the tensor is decoded. */
#ifndef SURG_ZARR_H
#define SURG_ZARR_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/decode.h"
#include "runtime/kvstore.h"
#include "support/arena.h"
#include "surg/surg.h"

#define ZARR_MAX_META (1u << 20) /* bytes of a .zarray or zarr.json */
#define ZARR_MAX_B2B 4           /* bytes-to-bytes codecs in one chain */

/* A bytes-to-bytes codec: a codec_kind (codec.h) or this. */
enum { ZARR_CRC32C = 16 };

/* How one stored chunk's bytes become its elements. */
typedef struct zarr_chain {
    /* The chunk's elements are in C order over the dimensions taken in
     * this order (rank entries: v3 transpose, or a v2 order "F" chunk's
     * reversed dimensions); NULL: C order. */
    const uint32_t *perm;
    bool big;      /* elements stored big-endian */
    uint8_t n_b2b; /* compressors and checksums, in the order they were applied */
    uint8_t b2b[ZARR_MAX_B2B];
} zarr_chain;

typedef struct zarr_array {
    const char *name;    /* the key prefix ("a", "b.c"; "" at the store's root) */
    const char *root;    /* the store's, for messages */
    int format;          /* 2 or 3 */
    surg_dtype dtype;
    unsigned esize;      /* bytes per element */
    uint32_t rank;
    const uint64_t *shape; /* rank entries (NULL for rank 0) */
    const uint64_t *chunk; /* the regular grid's chunk shape (sharded: the shard's) */
    uint64_t nelems, nbytes;
    uint64_t n_chunks;     /* chunks (or shards) in the grid */
    unsigned char fill[16]; /* one element, little-endian */
    char sep;              /* between a chunk key's indices */
    bool key_c;            /* v3 default keys: "c/0/1", "c" at rank 0 */
    zarr_chain chain;      /* a chunk's (sharded: an inner chunk's) */
    /* sharding_indexed: the shards hold inner chunks of this shape, and an
     * index of (offset, nbytes) per inner chunk, little- or big-endian,
     * with or without a CRC-32C, at the start or the end of the shard. */
    bool sharded;
    const uint64_t *inner;
    uint64_t n_inner;      /* inner chunks per shard */
    bool index_big, index_crc, index_at_start;
} zarr_array;

/* Parse the metadata of `n` bytes at `text` (format 2: .zarray, 3:
 * zarr.json) into *out, allocated in `keep` with everything it points at.
 * `name` is the array's key prefix, `root` names the store; errors name
 * "PREFIX/.zarray in ROOT" and the field. Strict: unknown v2 keys, v3 keys
 * that must be understood, dtypes surg lacks, codecs other than those of
 * docs/formats.md, shapes whose sizes overflow or whose grid is too large
 * are refused. */
surg_status zarr_parse(arena *keep, const char *text, size_t n, int format, const char *name,
                       const char *root, surg_sink *sink, zarr_array **out);

/* Read and parse the metadata of the array at key prefix `name` of the
 * store: NAME/zarr.json or NAME/.zarray (format 3, 2, or 0 for whichever
 * is there — both is an error). *out NULL with no error: neither is. */
surg_status zarr_open(arena *keep, kv_store *store, const char *name, int format,
                      surg_sink *sink, zarr_array **out);

/* Write the whole array (a->nbytes bytes, little-endian, C order) at
 * dst_off of dst_fd: every chunk in grid order, decoded, clipped at the
 * array's edges, transposed and swapped as stored; a missing chunk (or an
 * empty inner chunk of a shard) is written as the fill value, or is an
 * error naming the array and the chunk key when missing_is_fill is false.
 * Chunks stored in another order than C are staged in an unlinked
 * temporary file in tmp_dir (NULL: $TMPDIR or /tmp). Memory: a few buffers
 * of a MiB, whatever the sizes. */
surg_status zarr_decode(const zarr_array *a, kv_store *store, bool missing_is_fill, int dst_fd,
                        uint64_t dst_off, const char *tmp_dir, surg_sink *sink);

/* A dc_source that decodes the array on demand (dc_decode calls
 * zarr_decode): name, rank, shape, esize, nbytes and the decoder set, the
 * context allocated in `keep`. The store must outlive the source. */
surg_status zarr_source(arena *keep, const zarr_array *a, kv_store *store, bool missing_is_fill,
                        const char *tensor_name, dc_source *out, surg_sink *sink);

/* The zarr v2 dtype string of a dtype ("<f4", "|b1", "bfloat16"), or NULL
 * when zarr v2 has none; zarr v3's name ("float32"), likewise. */
const char *zarr_v2_dtype(surg_dtype dt);
const char *zarr_v3_dtype(surg_dtype dt);

#endif
