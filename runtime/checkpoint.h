/* checkpoint.h: the insides of a surg_ckpt, for the runtime modules that read
 * or write one (the writer, later the executor). */
#ifndef SURG_CHECKPOINT_H
#define SURG_CHECKPOINT_H

#include "decode.h"
#include "safetensors.h"

struct surg_ckpt {
    arena ar;
    surg_ckpt_kind kind;
    const char *path;
    surg_tensor_info *tensors; /* sorted by name */
    uint32_t *file_of;         /* which of files[] holds tensor i */
    uint64_t *offset;          /* absolute byte offset of tensor i there */
    size_t n;
    st_file *files;
    size_t n_files;
    surg_meta_entry *meta; /* sorted by key */
    size_t n_meta;
    surg_meta_entry *ties; /* "surg.ties" read: alias -> stored, sorted by alias */
    size_t n_ties;
    surg_ckpt **parts; /* of surg_ckpt_open_parts: their files are ours now */
    const char **part_prefix;
    size_t n_parts;
    /* Tensors whose file does not hold their plain bytes (NumPy arrays
     * deflated, big-endian or in Fortran order): dec[i] says how to make
     * them, and file_of/offset name their place in a scratch file, which is
     * created (sparse, unlinked, in scratch_dir) when the first is decoded.
     * NULL when every tensor is in place. */
    dc_source **dec;
    const char *scratch_dir; /* NULL: $TMPDIR or /tmp */
};

/* A tensor's place in its file, for byte-range copies. */
static inline const st_file *ck_file_of(const surg_ckpt *ck, size_t i)
{
    return &ck->files[ck->file_of[i]];
}

/* Does tensor i still need decoding before its bytes can be read? */
static inline bool ck_needs_decode(const surg_ckpt *ck, size_t i)
{
    return ck->dec && ck->dec[i] && !ck->dec[i]->done;
}

/* Create the scratch file that tensor i is decoded into, if not yet there.
 * Not thread-safe: the runtime makes them all before its threads start. */
surg_status ck_scratch_open(surg_ckpt *ck, size_t i, surg_sink *sink);
/* Decode tensor i into its scratch file (made already). Threads may decode
 * different tensors at once. */
surg_status ck_decode(surg_ckpt *ck, size_t i, surg_sink *sink);
/* Both, when needed: tensor i's bytes are then at offset[i] in its file. */
surg_status ck_ready(surg_ckpt *ck, size_t i, surg_sink *sink);

/* NumPy inputs (npz.c): an .npz archive, one .npy array. */
surg_status npz_open(surg_ckpt *ck, surg_sink *sink);
surg_status npy_open(surg_ckpt *ck, surg_sink *sink);

/* PyTorch inputs (torch.c): a torch.save zip archive, named *.pt, *.pth,
 * *.bin or *.pth.tar (pt_wanted), or the shards a sharded index names. */
surg_status pt_open(surg_ckpt *ck, surg_sink *sink);
bool pt_wanted(const char *path);
/* Shard i of n is files[2i] (its archive) and files[2i + 1] (its scratch
 * file); the ties of every shard are recorded together. */
surg_status pt_open_shards(surg_ckpt *ck, surg_sink *sink, const char *const *paths, size_t n);

/* One torch.save file's tables: h[0] its tensors in place in the archive,
 * h[1] those decoded into a scratch file (entry k made by src[k], placed in
 * increasing order), and the names tied to a stored tensor. */
typedef struct pt_tables {
    st_header h[2];
    dc_source **src;
    uint64_t scratch_size;
    surg_meta_entry *ties; /* alias -> stored as, by alias */
    size_t n_ties;
} pt_tables;

/* Read the torch.save file at `path` into `file` (opened here) and `out`;
 * what the tables point at lives in ck's arena. */
surg_status pt_read(surg_ckpt *ck, surg_sink *sink, const char *path, st_file *file,
                    pt_tables *out);
void pt_tables_free(pt_tables *t);
/* Ties as the "surg.ties" metadata of h (nothing when n is 0). */
surg_status pt_ties_meta(surg_ckpt *ck, surg_sink *sink, const surg_meta_entry *ties, size_t n,
                         st_header *h);

/* Sharded checkpoints: the index's directory and its shard files. */
surg_status ck_open_sharded(surg_ckpt *ck, surg_sink *sink,
                            const char *index_path);

/* Turn per-file headers into the checkpoint's name-sorted table; a name
 * found twice is an error naming both files. */
surg_status ck_collect(surg_ckpt *ck, surg_sink *sink, st_header *headers);

/* The same for a reader whose tensors are partly in place in files[0]
 * (headers[0]) and partly decoded on demand (headers[1], placed in a
 * scratch file of scratch_size bytes in increasing order, entry k made by
 * src[k]): files[1] becomes that scratch file (created when first needed)
 * and dec[] points each decoded tensor at its source. */
surg_status ck_collect_scratch(surg_ckpt *ck, surg_sink *sink, st_header *headers,
                               dc_source **src, uint64_t scratch_size);
/* Its two steps, for readers of several files: files[f] becomes a scratch
 * file of `size` bytes for the tensors of `of` decoded; after ck_collect,
 * each tensor in a scratch file f gets dec[i] = srcs[f][k], k its entry in
 * headers[f]. */
surg_status ck_scratch_file(surg_ckpt *ck, surg_sink *sink, size_t f, const char *of,
                            uint64_t size);
surg_status ck_link_decoded(surg_ckpt *ck, surg_sink *sink, const st_header *headers,
                            dc_source **const *srcs);

/* Join a directory and a file name in the checkpoint's arena. */
char *ck_join(arena *ar, const char *dir, const char *name);

#endif
