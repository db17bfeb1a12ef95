/* format.h: the format interface. Each format surg reads is a reader in a
 * file of its own that says which paths are its and opens one file to a
 * table of tensors; readers know nothing of checkpoints. checkpoint.c
 * chooses the reader, and the checkpoint's table is assembled from the
 * readers' tables (ck_table.c), for one file, a sharded set (shard.c) or
 * mounted parts (ck_parts.c). The formats are listed once, in
 * SURG_FORMATS. */
#ifndef SURG_FORMAT_H
#define SURG_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "support/arena.h"
#include "runtime/decode.h"
#include "runtime/safetensors.h"
#include "support/tensor_name.h"

/* One file opened. Its tensors are in h[0], in place in `file` (entry
 * ranges count from file.data_start), or in h[1], decoded on demand: entry
 * k of h[1] is made by src[k] at its range in a scratch file of
 * scratch_size bytes that goes beside the file (the ranges in increasing
 * order, each in pages of its own). A reader that never decodes leaves src
 * NULL, and no scratch file is made. Metadata is h[0].meta (sorted by key;
 * malloc'd, as st_header_free frees it); ties are names stored as another
 * tensor (alias -> stored as, sorted by alias), which a reader leaves out
 * of its metadata. Names, shapes, ties and decoders live in the arena
 * given to the reader, which lives as long as the checkpoint; src is
 * malloc'd, and so are the entries when own_entries says so (else they
 * live in that arena too): both are freed with the table. */
typedef struct fmt_table {
    st_file file;
    st_header h[2];
    dc_source **src;
    uint64_t scratch_size;
    surg_meta_entry *ties;
    size_t n_ties;
    bool own_entries;
    /* What else the reader read, in the arena: files (opened, or to be
     * read on demand) besides `file`, and a directory whose every file it
     * may read (a checkpoint that is a directory), or NULL. No output may
     * replace one of them or go inside the directory (outpath.c). */
    const char **reads;
    size_t n_reads;
    const char *root;
    /* What the decoders hold (an Orbax item's key-value store), released
     * with the checkpoint, or by fmt_table_free if no checkpoint took it
     * (close set to NULL by whoever did). */
    void (*close)(void *ctx);
    void *close_ctx;
} fmt_table;

/* Open the file at `path` (kept: the table points at it) into `out`, an
 * empty table; on failure every problem is reported, naming the file. */
typedef surg_status fmt_open_fn(arena *keep, surg_sink *sink, const char *path,
                                fmt_table *out);

/* Open the checkpoint that is the directory `dir` (kept) into *n tables
 * (malloc'd, each freed with fmt_table_free, then the array), assembled
 * as one checkpoint as a sharded set's are. */
typedef surg_status fmt_open_dir_fn(arena *keep, surg_sink *sink, const char *dir,
                                    fmt_table **tables, size_t *n);

/* What a reader says about its format. */
typedef struct fmt_reader {
    /* What --format calls it ("npz"). */
    const char *id;
    /* The ends of the names it answers to, NULL-terminated: "x.npz". */
    const char *const *suffixes;
    /* Whether the first bytes of a file are its, for a file whose name says
     * nothing (NULL: by name only). At most FMT_HEAD_BYTES are given. */
    bool (*sniff)(const unsigned char *head, size_t n);
    fmt_open_fn *open; /* NULL: a directory format (open_dir), or surg only writes it */
    /* A format whose checkpoints are directories (Orbax): whether `dir` is
     * one of its own (consulted before any format's dir_file), and how it
     * opens (NULL: its checkpoints are files). */
    bool (*sniff_dir)(const char *dir);
    fmt_open_dir_fn *open_dir;
    /* How "cannot tell the format" names it ("a NumPy .npz or .npy"; NULL
     * when another reader's words name it already). */
    const char *called;
    /* The name Hugging Face's save_pretrained gives it in a directory
     * ("model.safetensors", beside NAME.index.json when sharded), or NULL. */
    const char *dir_file;
    /* Whether a sharded index may name files of it. */
    bool shards;
    /* As an output: whether surg writes it, by what (NULL: the safetensors
     * layout itself, st_write.c; else the format's own writer through that
     * layout, as npz_write.c and msgpack_write.c, or orbax_write.c for a
     * directory), the rules its tensor names obey then, and else why such
     * a name is refused (NULL: as a name that says nothing surg writes). */
    bool writes;
    const struct stw_writer *writer;
    tn_format names;
    const char *unwritten;
    /* The key of the metadata, if any, in which the reader keeps what is
     * not a tensor at its path ("msgpack.tree"): a JSON object of paths
     * (tensor names, or the paths of values that are not tensors) and
     * strings, in the file's order. A recipe moves each path as it moves
     * the tensor of that name, or, for a value, as rename, drop and keep
     * match it (compiler/paths.c); the format's writer reads it back. */
    const char *paths_meta;
} fmt_reader;

/* X(ID, checkpoint kind, reader): every format, in the order a name is
 * tried; the first is the default where a name says nothing (a shard of an
 * index, an output). Each reader is defined in its own file. */
#define SURG_FORMATS(X)                                     \
    X(SAFETENSORS, SURG_CKPT_SAFETENSORS, fmt_safetensors)  \
    X(NPZ, SURG_CKPT_NPZ, fmt_npz)                          \
    X(NPY, SURG_CKPT_NPY, fmt_npy)                          \
    X(TORCH, SURG_CKPT_TORCH, fmt_torch)                    \
    X(MSGPACK, SURG_CKPT_MSGPACK, fmt_msgpack)              \
    X(ORBAX, SURG_CKPT_ORBAX, fmt_orbax)                    \
    X(PEFT, SURG_CKPT_PEFT, fmt_peft)                       \
    X(SCHEMA, SURG_CKPT_SCHEMA, fmt_schema)

typedef enum fmt_id {
#define FMT_X_ENUM(id, kind, reader) FMT_##id,
    SURG_FORMATS(FMT_X_ENUM)
#undef FMT_X_ENUM
    FMT_COUNT,
    FMT_NONE = FMT_COUNT
} fmt_id;

#define FMT_X_DECLARE(id, kind, reader) extern const fmt_reader reader;
SURG_FORMATS(FMT_X_DECLARE)
#undef FMT_X_DECLARE

/* The table, by id. */
extern const fmt_reader *const fmt_readers[FMT_COUNT];
extern const surg_ckpt_kind fmt_kinds[FMT_COUNT];

enum { FMT_HEAD_BYTES = 64 };

/* The format --format calls `id`, or FMT_NONE. */
fmt_id fmt_by_id(const char *id);
/* The first format whose suffixes end `path`, or FMT_NONE. */
fmt_id fmt_by_name(const char *path);
/* The first format whose sniff knows the first bytes of the regular file
 * at `path`, or FMT_NONE (also when it cannot be read: opening it says
 * why). Nothing is read when no reader sniffs. */
fmt_id fmt_by_content(const char *path);
/* The first format whose sniff_dir claims the directory `dir`, or FMT_NONE. */
fmt_id fmt_by_dir(const char *dir);
/* The format of a shard named `name`: the first that shards and answers to
 * the name, else the default. */
fmt_id fmt_of_shard(const char *name);
/* The format an output named `path` is written in: the one its name says
 * when surg writes it, else the default (a name surg refuses is refused by
 * outp_kind_of, which tells why). */
fmt_id fmt_output(const char *path);
/* The same when the caller named the format (`forced`, FMT_NONE: by the
 * name); outp_format and outp_kind_of refuse what does not fit. */
fmt_id fmt_output_as(const char *path, fmt_id forced);

/* Whether metadata of this key is a reader's paths_meta. */
bool fmt_paths_meta(const char *key);

/* Open `path` as format `f` into `out` (made empty first). */
/* A git-lfs pointer file at `path` is an error ("ck-lfs-pointer": run git
 * lfs pull); anything else, or a file that cannot be read, is SURG_OK (the
 * reader then says what it is). Every file a checkpoint is read from is
 * checked (fmt_open, an index, a file whose format is unknown). */
surg_status fmt_check_lfs(surg_sink *sink, const char *path);
surg_status fmt_open(fmt_id f, arena *keep, surg_sink *sink, const char *path, fmt_table *out);
/* Open the directory `dir` as format `f` (one with open_dir) into *n
 * tables; free them with fmt_tables_free. */
surg_status fmt_open_dir(fmt_id f, arena *keep, surg_sink *sink, const char *dir,
                         fmt_table **tables, size_t *n);
void fmt_tables_free(fmt_table *tables, size_t n);
/* Room for one more entry of h[which] (and, for h[1], of src), the
 * arrays malloc'd and grown as cap[which] says; NULL when out of memory. */
st_entry *fmt_add_entry(fmt_table *t, int which, size_t cap[2]);
/* Free what the table holds; its file is closed unless it was taken
 * (file.fd set to -1 and file.map to NULL by whoever took it). */
void fmt_table_free(fmt_table *t);

#endif
