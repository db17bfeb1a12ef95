/* outpath.h: every output path checked before anything is read or written:
 * the format its name asks for, that it replaces no file the run reads and
 * no node that is not a regular file, and which files of an earlier surg
 * output in its directory go once the new output is in place. */
#ifndef SURG_OUTPATH_H
#define SURG_OUTPATH_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "surg/surg.h"
#include "runtime/format.h"

/* What marks every file of a sharded output as surg's: this key and value
 * in each shard's `__metadata__` and in the index's "metadata". */
#define OUTP_MARK_KEY "surg.output"
#define OUTP_MARK_VALUE "sharded"
/* And this key, the plan's digest, which all the files of one sharded
 * output share (surg_plan_digest). */
#define OUTP_PLAN_KEY "surg.plan"

/* What marks a directory output as surg's (an Orbax checkpoint): this
 * value of OUTP_MARK_KEY in the "custom_metadata" of its
 * _CHECKPOINT_METADATA. */
#define OUTP_DIR_MARK_FILE "_CHECKPOINT_METADATA"
#define OUTP_DIR_MARK_VALUE "orbax"

/* What marks a PEFT adapter directory as surg's: this value of
 * OUTP_MARK_KEY in the metadata of its adapter_model.safetensors. */
#define OUTP_PEFT_MARK_VALUE "peft"

typedef enum outp_kind {
    OUTP_FILE,    /* one file, of the format its name says (fmt_output) */
    OUTP_SHARDED, /* a directory, or DIR/PREFIX.safetensors.index.json */
    OUTP_DIR,     /* a directory written whole by its format's writer (Orbax) */
} outp_kind;

/* The files a run reads, by device and inode (spellings do not matter);
 * a directory marked `tree` is one whose every file the run may read (an
 * Orbax checkpoint): nothing may be written inside it. */
typedef struct outp_file {
    dev_t dev;
    ino_t ino;
    char *path;
    bool tree;
} outp_file;

typedef struct outp_reads {
    outp_file *v;
    size_t n, cap;
} outp_reads;

void outp_reads_free(outp_reads *r);
/* Add the file at `path` (following links); a path that names nothing
 * adds nothing. */
surg_status outp_reads_add(outp_reads *r, surg_sink *sink, const char *path);
/* Add every file a checkpoint was read from: its index or schema, its
 * shards, the file a directory resolved to, each part's; and the
 * directories it reads every file of (an Orbax checkpoint's). */
surg_status outp_reads_add_ckpt(outp_reads *r, surg_sink *sink, const surg_ckpt *ck);
/* The file of `reads` that `path` is (as it stands, or where it leads), or
 * the directory of `reads` marked `tree` that it is or is inside, or
 * NULL. */
const outp_file *outp_reads_find(const outp_reads *r, const char *path);

/* The output format --out-format `name` gives (NULL: FMT_NONE, by the
 * names), or an error listing those surg writes. */
surg_status outp_format(surg_sink *sink, const char *name, fmt_id *out);

/* The format the name `path` asks for (or `forced`, unless the name says
 * another), with or without sharding; an error naming the path
 * (SURG_EUSAGE, or SURG_EIO for a directory that cannot be looked at) when
 * surg does not write such an output. */
surg_status outp_kind_of(surg_sink *sink, const char *path, uint64_t max_shard_size,
                         fmt_id forced, outp_kind *kind);
/* The directory a directory output at `path` makes: without trailing
 * slashes; malloc'd (NULL when out of memory). */
char *outp_dir_target(const char *path);
/* Is the directory at `path` (not a link) an earlier directory output of
 * surg: an Orbax checkpoint marked as OUTP_DIR_MARK_VALUE says, or a PEFT
 * adapter marked as OUTP_PEFT_MARK_VALUE says? */
bool outp_dir_is_ours(const char *path);

/* Is `name` one that a sharded output with this prefix writes:
 * PREFIX.safetensors, PREFIX.safetensors.index.json or
 * PREFIX-NNNNN-of-MMMMM.safetensors (five digits or more each)? */
bool outp_owns(const char *prefix, const char *name);

/* Is the file at `path` (one the prefix owns) part of an earlier sharded
 * output of surg: a regular file, not a link, whose safetensors header (or,
 * for the index, JSON) is valid and carries the mark above? */
bool outp_is_ours(const char *path);

struct stw_layout;

/* Before anything is read: every file the layout writes (and the directory
 * it may make) is checked against `reads` (NULL: none) and for what stands
 * at its name; for a sharded output, every name of its prefix that the new
 * output does not write is listed in lay->stale if it is surg's (else an
 * error says what to do). */
surg_status outp_check_layout(surg_sink *sink, const char *out_path, struct stw_layout *lay,
                              const outp_reads *reads);
/* Several outputs of one run: none writes a name another writes or owns. */
surg_status outp_check_apart(surg_sink *sink, struct stw_layout *const *lays,
                             const char *const *paths, size_t n);
/* After the new output is committed: remove lay->stale (the index first),
 * each checked again, and sync the directory. */
surg_status outp_remove_stale(struct stw_layout *lay, surg_sink *sink, const outp_reads *reads);

#endif
