/* readfile.h: opening and reading files, each failure reported naming the
 * file. Files named by the user are read only if they are regular files;
 * every read is bounded by a limit while it reads. */
#ifndef SURG_READFILE_H
#define SURG_READFILE_H

#include <stddef.h>
#include <stdint.h>

#include "support/arena.h"
#include "surg/surg.h"

/* Open a regular file read-only and give its size. Anything else (a FIFO,
 * a device, a socket, a directory) is refused with code "not-regular"
 * ("is a FIFO, not a regular file") without blocking and without reading
 * it. */
surg_status rf_open_regular(surg_sink *sink, const char *path, int *fd,
                            uint64_t *size);
/* What kind of file a st_mode says: "a FIFO", "a character device", ... */
const char *rf_kind_of(unsigned mode);
/* Read exactly len bytes at off; a short read means the file shrank. */
surg_status rf_read_exact(surg_sink *sink, const char *path, int fd, void *dst,
                          size_t len, uint64_t off);
/* Read a whole small file (an index, a schema, a recipe) into memory the
 * caller frees, NUL-terminated; files above `limit` bytes are refused. */
surg_status rf_read_all(surg_sink *sink, const char *path, size_t limit,
                        char **data, size_t *len);
/* The same into memory of `ar`, which then owns it. */
surg_status rf_read_into(arena *ar, surg_sink *sink, const char *path, size_t limit,
                         char **data, size_t *len);
/* Read an open stream (a pipe, a terminal, any descriptor) to its end into
 * memory the caller frees, NUL-terminated; `name` names it in diagnostics.
 * Reading stops as soon as more than `limit` bytes came ("too-large"), so
 * an endless stream costs at most limit + 1 bytes of memory. */
surg_status rf_read_stream(surg_sink *sink, const char *name, int fd, size_t limit,
                           char **data, size_t *len);

#endif
