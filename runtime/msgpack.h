/* msgpack.h: Flax's msgpack checkpoints (flax.serialization): the reader
 * (msgpack.c, a format of format.h) and the writer (msgpack_write.c). A
 * file is a tree of maps with string keys; an array is ext type 1 (a NumPy
 * scalar ext 3) whose payload is msgpack of [shape, dtype name, bytes];
 * arrays over 2^30 bytes are maps {"__msgpack_chunked_array__": true,
 * "shape": {...}, "chunks": {...}}. Tensor names join the keys with "/". */
#ifndef SURG_MSGPACK_H
#define SURG_MSGPACK_H

#include <stddef.h>

#include "surg/surg.h"

/* Flax's chunking threshold: an array of more bytes is written in chunks. */
#define MP_MAX_CHUNK_BYTES (1ull << 30)

/* The metadata in which the reader keeps the tree (the format's
 * paths_meta, format.h): a JSON object of every path in file order — each
 * tensor's, "" for an array (ext 1, or chunked), "s" for a NumPy scalar
 * (ext 3); each value that is not an array, the hex of its msgpack bytes
 * ({"step": "0c", "params/w": "", "opt_state/1": "80"}). A recipe moves the
 * paths (compiler/paths.c); the writer puts the keys of each map in the
 * order of their paths here, and the values back at theirs. */
#define MP_TREE_KEY "msgpack.tree"
#define MP_TREE_ARRAY ""
#define MP_TREE_SCALAR "s"

/* The length of the one msgpack value at p (n bytes) that a leaf may be —
 * nil, a boolean, a number, a string, bytes, an ext, an empty map or array
 * — or 0 when p does not begin with one. */
size_t mp_leaf_len(const unsigned char *p, size_t n);

/* The NumPy dtype name of `dt` ("float32"), or NULL when NumPy (with
 * ml_dtypes) has no name for it. */
const char *mp_dtype_name(surg_dtype dt);

#endif
