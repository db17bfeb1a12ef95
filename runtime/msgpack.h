/* msgpack.h: Flax's msgpack checkpoints (flax.serialization): the reader
 * (msgpack.c, a format of format.h) and the writer (msgpack_write.c). A
 * file is a tree of maps with string keys; an array is ext type 1 (a NumPy
 * scalar ext 3) whose payload is msgpack of [shape, dtype name, bytes];
 * arrays over 2^30 bytes are maps {"__msgpack_chunked_array__": true,
 * "shape": {...}, "chunks": {...}}. Tensor names join the keys with "/". */
#ifndef SURG_MSGPACK_H
#define SURG_MSGPACK_H

#include <stdbool.h>
#include <stddef.h>

#include "support/arena.h"
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

/* One path of MP_TREE_KEY: what is there (MP_TREE_ARRAY, MP_TREE_SCALAR,
 * or the hex of a kept value), and a kept value's msgpack bytes (else
 * NULL). */
typedef struct mp_tree_entry {
    const char *path, *mark;
    const unsigned char *raw;
    size_t len;
} mp_tree_entry;

/* The bytes of one kept value, from its hex, into `ar`: 1, or 0 when the
 * text is not the hex of one leaf (mp_leaf_len), -1 when out of memory. */
int mp_tree_value(const char *hex, arena *ar, const unsigned char **raw, size_t *len);
/* The tree's text read into *out (malloc'd, in the order given; the
 * strings and bytes in `ar`): NULL, or why it is not what the reader
 * writes (then *out is NULL). */
const char *mp_tree_read(const char *text, arena *ar, mp_tree_entry **out, size_t *n);
/* Path a is path b, or holds it (b is inside a's map). */
bool mp_path_holds(const char *a, const char *b);

/* The NumPy dtype name of `dt` ("float32"), or NULL when NumPy (with
 * ml_dtypes) has no name for it. */
const char *mp_dtype_name(surg_dtype dt);

#endif
