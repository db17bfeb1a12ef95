/* safetensors.h: one safetensors file on disk: its validated header, and its
 * data mapped only when asked for. */
#ifndef SURG_SAFETENSORS_H
#define SURG_SAFETENSORS_H

#include "runtime/st_header.h"

typedef struct st_file {
    const char *path;
    int fd;
    uint64_t size;       /* of the whole file */
    uint64_t data_start; /* 8 + header length */
    void *map;           /* whole file, mapped on first data access */
    uint64_t bytes_read; /* by read calls: the length field and the header */
    int64_t mtime_ns;    /* when opened: a change while it is read is seen */
    bool scratch;        /* ours: tensors decoded into it (checkpoint.h), it changes */
} st_file;

/* Open `path` (a regular file, read-only) into f, noting its size and
 * modification time so that a change while it is read is seen. */
surg_status st_file_open(surg_sink *sink, const char *path, st_file *f);

/* Open `path`, read its 8-byte length and header (never the data), and
 * validate them. On success the file stays open until st_close. */
surg_status st_open(arena *ar, surg_sink *sink, const char *path, st_file *f,
                    st_header *h);
void st_close(st_file *f);

/* Is the file as it was when opened (same size, same modification time)?
 * If not, an error naming it. A scratch file is always. */
surg_status st_unchanged(const st_file *f, surg_sink *sink);

/* Map the file (once) so tensor data can be read in place. A file not
 * opened (a scratch file not made yet) is left unmapped. */
surg_status st_map(st_file *f, surg_sink *sink);

#endif
