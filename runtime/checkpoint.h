/* checkpoint.h: the insides of a surg_ckpt, for the runtime modules that
 * assemble one (ck_table.c, shard.c, ck_parts.c), read its tensors' bytes
 * (ck_scratch.c, the writer, the executor) or list its files (outpath.c).
 * checkpoint.c opens one by its path; the formats' readers (format.h) know
 * nothing of it. */
#ifndef SURG_CHECKPOINT_H
#define SURG_CHECKPOINT_H

#include "runtime/decode.h"
#include "runtime/format.h"
#include "runtime/safetensors.h"

/* A path the checkpoint reads besides its files[]: a file, or a directory
 * whose every file it may read (`tree`). */
typedef struct ck_read {
    const char *path;
    bool tree;
} ck_read;

struct surg_ckpt {
    arena ar;
    surg_ckpt_kind kind;
    const char *path;          /* the file opened: a directory's is the file in it */
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
     * deflated, big-endian or in Fortran order, strided PyTorch views):
     * dec[i] says how to make them, and file_of/offset name their place in
     * a scratch file, which is created (sparse, unlinked, in scratch_dir)
     * when the first is decoded. NULL when every tensor is in place. */
    dc_source **dec;
    const char *scratch_dir; /* NULL: $TMPDIR or /tmp */
    /* What the readers read besides files[] (fmt_table.reads, .root). */
    ck_read *reads;
    size_t n_reads;
    /* What the readers' decoders hold, released on closing (fmt_table.close). */
    struct ck_closer {
        void (*close)(void *ctx);
        void *ctx;
    } *closers;
    size_t n_closers;
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

/* ---- assembling (ck_table.c) -------------------------------------------- */

/* The checkpoint's table made from n readers' tables, in order: each
 * table's file becomes the next of files[] (taken: the table no longer
 * closes it), followed by its scratch file if it may decode; the tensors
 * sorted by name (a name found twice is an error naming both files), the
 * files' metadata merged (the first value kept where two differ, with a
 * warning), the readers' ties recorded as "surg.ties" metadata, and the
 * ties read. The tables are still the caller's to free. */
surg_status ck_assemble(surg_ckpt *ck, surg_sink *sink, fmt_table *tables, size_t n);

/* A sharded set (shard.c): the index at ck->path (`weight_map` from tensor
 * name to shard file) beside its shards, which must agree with it. */
surg_status ck_open_index(surg_ckpt *ck, surg_sink *sink);

/* ---- tensors decoded on demand (ck_scratch.c) ---------------------------- */

/* Create the scratch file that tensor i is decoded into, if not yet there.
 * Not thread-safe: the runtime makes them all before its threads start. */
surg_status ck_scratch_open(surg_ckpt *ck, size_t i, surg_sink *sink);
/* Decode tensor i into its scratch file (made already). Threads may decode
 * different tensors at once. */
surg_status ck_decode(surg_ckpt *ck, size_t i, surg_sink *sink);
/* Both, when needed: tensor i's bytes are then at offset[i] in its file. */
surg_status ck_ready(surg_ckpt *ck, size_t i, surg_sink *sink);

#endif
