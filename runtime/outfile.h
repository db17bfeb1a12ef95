/* outfile.h: an output file, or a directory of files, that appears whole or
 * not at all. It is written under a temporary name in its destination
 * directory, synced, and renamed into place; until then a signal handler
 * can remove it. */
#ifndef SURG_OUTFILE_H
#define SURG_OUTFILE_H

#include <stdbool.h>
#include <stdint.h>

#include "surg/surg.h"

typedef struct of_file of_file;

surg_status of_create(surg_sink *sink, const char *final_path, of_file **out);
surg_status of_write(of_file *f, surg_sink *sink, const void *data, size_t len);
/* Copy len bytes at off of src_fd: copy_file_range where the kernel offers
 * it, plain reads and writes otherwise. */
surg_status of_copy(of_file *f, surg_sink *sink, int src_fd, uint64_t off,
                    uint64_t len);
/* Reserve the file's final size on disk, so a full disk shows at once
 * (where the file system can; elsewhere nothing happens). */
surg_status of_reserve(of_file *f, surg_sink *sink, uint64_t size);
/* The same but for the n_skip ranges [skip[2i], skip[2i+1]) (in order,
 * apart), left as holes: their blocks are to be shared with an input's. */
surg_status of_reserve_around(of_file *f, surg_sink *sink, uint64_t size, const uint64_t *skip,
                              size_t n_skip);
/* Write, or copy from another file, at an offset: for writers that fill
 * one file from several threads. */
surg_status of_pwrite(of_file *f, surg_sink *sink, const void *data, size_t len, uint64_t off);
surg_status of_copy_at(of_file *f, surg_sink *sink, int src_fd, uint64_t src_off, uint64_t len,
                       uint64_t dst_off);
/* The open file, for reading back what was written (or copying within it). */
int of_fd(const of_file *f);
/* Start writing what is written so far to disk, without waiting for it
 * (Linux; elsewhere nothing): writes then overlap the computing, and the
 * final fsync has little left to do. */
void of_start_writeback(of_file *f);
/* fsync and close; the file keeps its temporary name. */
surg_status of_finish(of_file *f, surg_sink *sink);
/* Rename into place, sync the directory, and free. */
surg_status of_commit(of_file *f, surg_sink *sink);
/* Remove the temporary file and free; safe on NULL. */
void of_abort(of_file *f);

/* A directory output (an Orbax checkpoint): made as `.NAME.surg-tmp-XXXXXX`
 * beside final_path, filled with directories and files (of_file, written
 * as any other, then finished by of_dir_sync), and renamed into place
 * whole. Every directory and file of it is on the signal handler's list
 * until then. */
typedef struct of_dir of_dir;

surg_status of_dir_create(surg_sink *sink, const char *final_path, of_dir **out);
/* Make the directory `rel` (its parent made already) in it. */
surg_status of_dir_mkdir(of_dir *d, surg_sink *sink, const char *rel);
/* Create the file `rel` in it; the directory owns it (never of_commit or
 * of_abort it). */
surg_status of_dir_file(of_dir *d, surg_sink *sink, const char *rel, of_file **out);
/* The temporary directory's path. */
const char *of_dir_temp_path(const of_dir *d);
/* fsync and close every file (of_finish), then fsync every directory,
 * innermost first (once). */
surg_status of_dir_sync(of_dir *d, surg_sink *sink);
/* Sync, then rename into place. Something at final_path is replaced only
 * when it is a directory and `replaceable` says so (NULL: never): then the
 * two are exchanged (renameat2's RENAME_EXCHANGE; where the file system
 * has none, the earlier one is moved aside first), and what the earlier
 * one held is removed — its regular files and directories of regular
 * files, nothing else (a warning names where the rest is left). */
surg_status of_dir_commit(of_dir *d, surg_sink *sink, bool (*replaceable)(const char *path));
/* Remove whatever of it is not committed, and free; safe on NULL. */
void of_dir_abort(of_dir *d);

#endif
