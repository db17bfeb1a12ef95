/* st_write.h: writing safetensors, one file or sharded, byte for byte as the
 * reference writer lays it out (unless the copies are laid out to share the
 * input's blocks, stw_output.share_block) — or, for an output named `*.npz`, NumPy's
 * archive (npz_write.c) or Flax's msgpack (msgpack_write.c) through the same layout. The caller supplies each
 * tensor's bytes through a callback, so data streams from wherever it comes
 * from. */
#ifndef SURG_ST_WRITE_H
#define SURG_ST_WRITE_H

#include "support/buf.h"
#include "runtime/outfile.h"
#include "runtime/outpath.h"

/* Where a tensor's bytes already are, whole and in order: `off` in the
 * input file `fd` (-1: nowhere, they are made), `size` bytes long. */
typedef struct stw_source {
    int fd;
    uint64_t off;
    uint64_t file_size;
} stw_source;

/* Tensors f->idx[first..first+n) of a file, copied from one range of an
 * input file and laid out at an offset congruent to it modulo the block
 * size (st_share.h): from `dst` on, the output's blocks can be the
 * input's from `src` on. `to_eof`: the range ends both files. */
typedef struct stw_run {
    int fd;
    uint64_t src, dst, len;
    size_t first, n;
    bool to_eof;
} stw_run;

/* Write the bytes of tensors[item] (exactly its nbytes) to `out`. */
typedef surg_status (*stw_emit_fn)(void *ctx, size_t item, of_file *out,
                                   surg_sink *sink);

typedef struct stw_output {
    const surg_tensor_info *tensors; /* any order; names unique */
    size_t n;
    const surg_meta_entry *meta; /* sorted by key; "format" added if absent */
    size_t n_meta;
    bool no_format;              /* ...unless the recipe dropped it */
    uint64_t max_shard_size; /* 0: one file */
    stw_emit_fn emit;
    void *ctx;
    /* .npz and .msgpack only: tensors[i] repeats the bytes of tensors[same_as[i]] (a tied
     * name, written as an array of its own: neither has metadata), or
     * SIZE_MAX. NULL: none does. The writer copies them; the caller never
     * writes them. */
    const size_t *same_as;
    bool force_zip64; /* .npz: ZIP64 records even where sizes do not need them (tests) */
    /* .msgpack: arrays of more bytes are written in chunks (0: Flax's 2^30;
     * tests make it small) */
    uint64_t chunk_bytes;
    /* The files the run reads (NULL: none known): no output name may be
     * one of them, nor any stale name it would remove (outpath.h). */
    const outp_reads *reads;
    /* The format to write ("orbax", as --out-format calls it), or NULL: the
     * name says. */
    const char *format;
    /* The value of OUTP_MARK_KEY in the safetensors metadata (a PEFT
     * adapter's OUTP_PEFT_MARK_VALUE), or NULL: OUTP_MARK_VALUE in the files
     * of a sharded output, nothing in others. */
    const char *mark;
    /* Per tensor, where its bytes are (NULL: nowhere known), and the block
     * size the safetensors layout keeps copies congruent to (0: none, the
     * reference's layout). */
    const stw_source *src;
    uint32_t share_block;
    /* The plan's digest (surg_plan_digest), written as OUTP_PLAN_KEY in the
     * files of a sharded output, or NULL. */
    const char *digest;
    /* One part of a sharded output (count 0: all of it): partition.h. */
    surg_part part;
} stw_output;

typedef struct stw_layout stw_layout;

/* A format written through the layout below other than safetensors itself
 * (its fmt_reader's `writer`): its steps, each at the moment the layout
 * takes the same step for safetensors. Its own state is lay->state. */
typedef struct stw_writer {
    /* The output is a directory (outp_kind OUTP_DIR): the layout makes it
     * (lay->dir, a temporary directory renamed into place whole) and the
     * writer's `open` makes every file in it, lay->files[].of included,
     * with of_dir_mkdir and of_dir_file; lay->files[].path are then paths
     * inside it. */
    bool dir;
    /* Lay the output out (one file: stw_one_file). */
    surg_status (*make)(surg_sink *sink, const char *out_path, const stw_output *out,
                        stw_layout *lay);
    /* The file is created: write what precedes and surrounds the tensors. */
    surg_status (*open)(stw_layout *lay, surg_sink *sink);
    /* Every tensor is written: what comes last (repeats, CRCs, directories). */
    surg_status (*finish)(stw_layout *lay, surg_sink *sink);
    /* The CRC-32 of tensors[i] as written; NULL: the format needs none. */
    void (*set_crc)(stw_layout *lay, size_t i, uint32_t crc);
    void (*free)(stw_layout *lay);
} stw_writer;

surg_status stw_write(surg_sink *sink, const char *out_path,
                      const stw_output *out);
/* The writer of the one-file format `out_path` names, or NULL for
 * safetensors (and a name that says nothing). Every such format has no
 * place for ties: a tied name is written as an array of its own
 * (stw_output.same_as). `format`: as stw_output.format (checked already). */
const stw_writer *stw_writer_of(const char *out_path, const char *format);

/* Where the shards go: a directory, or `DIR/PREFIX.safetensors.index.json`.
 * dir is NULL for an output of one file. */
typedef struct shard_names {
    char *dir;
    char *prefix; /* "model" */
    bool made_dir; /* by stw_layout_open: removed again if nothing is committed */
} shard_names;

/* The name of shard i (from 0) of m, as surg spells it: PREFIX.safetensors
 * when m is 1, else PREFIX-NNNNN-of-MMMMM.safetensors (five digits or more,
 * counting from 1). */
void stw_put_shard_name(buf *b, const char *prefix, uint64_t i, uint64_t m);
/* The shard `name` is, spelled exactly so: its i and m. */
bool stw_shard_number(const char *prefix, const char *name, uint64_t *i, uint64_t *m);

/* The directory and prefix of a sharded output at `out_path` (malloc'd). */
surg_status stw_shard_place(surg_sink *sink, const char *out_path, shard_names *sn);

/* One output file: its tensors in data order, its header, its size. */
typedef struct stw_file {
    char *path;
    size_t *idx;
    size_t n;
    buf header; /* the 8-byte length and the padded JSON */
    uint64_t size;
    of_file *of;
    stw_run *runs; /* copies whose blocks can be shared, in data order */
    size_t n_runs;
    bool elsewhere; /* another part's (partition.h): laid out, never made here */
} stw_file;

/* The whole output laid out before anything is written: which file holds
 * each tensor and at what offset, so tensors can be written in any order
 * and in parallel. */
struct stw_layout {
    const stw_output *out;
    size_t *order;      /* tensors in byte order of names */
    stw_file *files;
    size_t n_files;
    uint32_t *file_of;  /* per tensor */
    uint64_t *offset;   /* per tensor: where its data starts in its file */
    shard_names sn;
    char *index_path;   /* of a sharded output of several files, else NULL */
    of_file *index;
    char **stale;       /* files of an earlier surg output the new one does not
                           write again: removed once it is in place (index first) */
    size_t n_stale;
    bool synced, committed;
    const stw_writer *writer; /* NULL: safetensors */
    void *state;              /* the writer's own */
    char *dir_path;           /* a directory output (writer->dir): where it goes */
    of_dir *dir;              /* and, once open, its temporary directory */
};

/* Lay the output out and check every name it writes before anything is
 * read or written (outp_check_layout); nothing is created yet. A part
 * (out->part) lays out the whole output and marks the files of the other
 * parts `elsewhere`. */
surg_status stw_layout_make(surg_sink *sink, const char *out_path, const stw_output *out,
                            stw_layout *lay);
/* The files of a sharded output at max_shard_size (out->max_shard_size,
 * not 0) as stw_layout_make lays them out, without looking at any path
 * (surg plan): lay->files' tensors, headers and sizes. */
surg_status stw_layout_shards(surg_sink *sink, const stw_output *out, stw_layout *lay);
/* The index of a sharded output, as Hugging Face writes it: the n tensor
 * names in byte order, the base name of each one's file, and the bytes of
 * their data. */
surg_status stw_index_text(buf *b, const char *const *names, const char *const *files, size_t n,
                           uint64_t total);
/* The one file of an output that is never sharded (.npz, .msgpack):
 * lay->files[0] named out_path, with room for every tensor in its idx and
 * an empty header. */
surg_status stw_one_file(stw_layout *lay, surg_sink *sink, const char *out_path);
/* The value of the output's metadata `key`, or NULL. */
const char *stw_meta(const stw_output *out, const char *key);
/* A warning (`code`) naming the metadata a format without it drops: "WHAT:
 * the metadata "k", ... is not written", unless it is only the format tag,
 * the ties (written as arrays), a shard's mark or `kept` (NULL: none), which
 * the format keeps its own way. */
/* Refuse the tensors whose dtype an output format cannot hold (`holds`
 * false), before anything is written: one tensor is one error naming it;
 * several are one error with their count by dtype, the first names and one
 * fix (`map "**" = cast(x, f32)` when every other tensor is f32 already),
 * `code` and "which `what`" saying why ("which .npy cannot hold"). */
surg_status stw_refuse_dtypes(surg_sink *sink, const char *code, const char *out_path,
                              const stw_output *out, bool (*holds)(surg_dtype),
                              const char *what);

/* Does the layout make any file here (a part may own none: partition.h)? */
bool stw_layout_makes_any(const stw_layout *lay);

void stw_warn_metadata(surg_sink *sink, const char *out_path, const stw_output *out,
                       const char *code, const char *what, const char *kept);
/* Make the output directory if it is missing, create the temporary files,
 * reserve their size, write their headers (and the index). */
surg_status stw_layout_open(stw_layout *lay, surg_sink *sink);
/* Does the layout need each tensor's CRC-32 (an .npz does), and take it:
 * the CRC of tensors[i]'s bytes, as written. Tensors whose CRC is not given
 * are read back from the file when it is synced. */
bool stw_layout_wants_crc(const stw_layout *lay);
void stw_layout_set_crc(stw_layout *lay, size_t i, uint32_t crc);
/* Sync every file (once); then rename everything into place, shards before
 * the index (syncing first when not yet synced). The stale files of an
 * earlier output go after that, by outp_remove_stale (when every output of
 * the run is in place). */
surg_status stw_layout_sync(stw_layout *lay, surg_sink *sink);
surg_status stw_layout_commit(stw_layout *lay, surg_sink *sink);
/* Remove whatever was not committed. */
void stw_layout_free(stw_layout *lay);

/* The header of one file holding tensors[idx[0..n)], and the order the data
 * follows it (the reference's: dtype alignment, largest first, then name).
 * `hdr` gets the 8-byte length and the padded JSON. */
surg_status stw_header(const stw_output *out, size_t *idx, size_t n, buf *hdr);

#endif
