/* readfile.h: opening and reading files, each failure reported naming the
 * file. */
#ifndef SURG_READFILE_H
#define SURG_READFILE_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "surg/surg.h"

/* Open a regular file read-only and give its size. */
surg_status rf_open_regular(surg_sink *sink, const char *path, int *fd,
                            uint64_t *size);
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

#endif
