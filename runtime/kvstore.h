/* kvstore.h: the keys and values an Orbax item keeps its arrays in: an
 * OCDBT database (ocdbt.c), or a plain directory where a key is a path
 * under it (kv_dir.c). A value is bytes the store holds (inline in a b-tree
 * node), or a range of a file under the store's root. Keys are bytes
 * ordered as memcmp orders them; the zarr arrays read them ("a/.zarray",
 * "a/0.0", "b.c/c/0/1"). Stores only read: nothing under the root is ever
 * written. */
#ifndef SURG_KVSTORE_H
#define SURG_KVSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "surg/surg.h"

typedef struct kv_value {
    const unsigned char *bytes; /* inline, living as long as the store; or NULL */
    const char *file;           /* else the file (a path, living as long as the store;
                                 * a directory store's until the same thread's next
                                 * get or list: several threads may get at once) */
    uint64_t offset, length;    /* the range of the file; length also for inline bytes */
} kv_value;

typedef struct kv_store kv_store;

/* Called for each key in order; nonzero stops the walk (and is returned). */
typedef int kv_each_fn(void *ctx, const char *key, size_t key_len, const kv_value *v);

typedef struct kv_ops {
    /* The value of `key` (*found false when there is none: not an error). */
    surg_status (*get)(kv_store *s, const char *key, surg_sink *sink, kv_value *v, bool *found);
    /* Every key that starts with `prefix` ("" for all), in order. */
    surg_status (*list)(kv_store *s, const char *prefix, surg_sink *sink, kv_each_fn *each,
                        void *ctx, int *stopped);
    void (*close)(kv_store *s);
    /* Optional: open the file of value `v` (from this store's get or list)
     * for reading, refusing what is not a regular file, and give its size.
     * A directory store opens it again beneath its root without following
     * links; without this op the path is opened as it is. */
    surg_status (*open_file)(kv_store *s, const kv_value *v, surg_sink *sink, int *fd,
                             uint64_t *size);
} kv_ops;

struct kv_store {
    const kv_ops *ops;
    const char *root; /* the directory, for messages */
};

/* An OCDBT database whose manifest.ocdbt is in `dir` (ocdbt.c). */
surg_status kv_open_ocdbt(const char *dir, surg_sink *sink, kv_store **out);
/* A directory: key "a/0.0" is the file dir/a/0.0 (kv_dir.c). */
surg_status kv_open_dir(const char *dir, surg_sink *sink, kv_store **out);

static inline surg_status kv_get(kv_store *s, const char *key, surg_sink *sink, kv_value *v,
                                 bool *found)
{
    return s->ops->get(s, key, sink, v, found);
}

/* Read `n` bytes of value `v` from byte `at` into `buf` (a file value is
 * read with pread, the file opened and closed here; inline bytes are
 * copied). Reading past the value is an error naming it. */
surg_status kv_read(const kv_value *v, uint64_t at, void *buf, size_t n, const char *what,
                    surg_sink *sink);

/* A value read in pieces, its file opened once (on the first read) and kept
 * open until kv_reader_close. `store` may be NULL (the path is opened as it
 * is); `what` names the value in messages. */
typedef struct kv_reader {
    kv_store *store;
    kv_value v;
    const char *what;
    int fd;
} kv_reader;

void kv_reader_init(kv_reader *r, kv_store *store, const kv_value *v, const char *what);
/* `n` bytes from byte `at` of the value; reading past it is an error. */
surg_status kv_reader_read(kv_reader *r, uint64_t at, void *buf, size_t n, surg_sink *sink);
void kv_reader_close(kv_reader *r);

static inline void kv_close(kv_store *s)
{
    if (s)
        s->ops->close(s);
}

#endif
