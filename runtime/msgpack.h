/* msgpack.h: Flax's msgpack checkpoints (flax.serialization): the reader
 * (msgpack.c, a format of format.h) and the writer (msgpack_write.c). A
 * file is a tree of maps with string keys; an array is ext type 1 (a NumPy
 * scalar ext 3) whose payload is msgpack of [shape, dtype name, bytes];
 * arrays over 2^30 bytes are maps {"__msgpack_chunked_array__": true,
 * "shape": {...}, "chunks": {...}}. Tensor names join the keys with "/". */
#ifndef SURG_MSGPACK_H
#define SURG_MSGPACK_H

#include "surg/surg.h"

/* Flax's chunking threshold: an array of more bytes is written in chunks. */
#define MP_MAX_CHUNK_BYTES (1ull << 30)

/* The NumPy dtype name of `dt` ("float32"), or NULL when NumPy (with
 * ml_dtypes) has no name for it. */
const char *mp_dtype_name(surg_dtype dt);

#endif
