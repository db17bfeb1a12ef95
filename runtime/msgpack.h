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

/* The metadata in which the values that are not arrays are kept: a JSON
 * object of their paths and the hex of their msgpack bytes, in file order
 * ({"step": "0c", "opt_state/1": "80"}). */
#define MP_LEAVES_KEY "msgpack.leaves"

/* The length of the one msgpack value at p (n bytes) that a leaf may be —
 * nil, a boolean, a number, a string, bytes, an ext, an empty map or array
 * — or 0 when p does not begin with one. */
size_t mp_leaf_len(const unsigned char *p, size_t n);

/* The NumPy dtype name of `dt` ("float32"), or NULL when NumPy (with
 * ml_dtypes) has no name for it. */
const char *mp_dtype_name(surg_dtype dt);

#endif
