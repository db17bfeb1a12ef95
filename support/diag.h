/* diag.h: reporting problems to a surg_sink. The library never prints; it
 * builds a surg_diag and hands it to the sink's callback. */
#ifndef SURG_DIAG_H
#define SURG_DIAG_H

#include "surg/surg.h"

/* Report a problem with a whole file (no line and column): a binary
 * checkpoint, an index, an output path. */
void dg_file(surg_sink *sink, surg_severity sev, const char *code,
             const char *file, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* The same with notes. */
void dg_file_notes(surg_sink *sink, surg_severity sev, const char *code,
                   const char *file, const char *const *notes, size_t n_notes,
                   const char *fmt, ...) __attribute__((format(printf, 7, 8)));

/* Hand a finished diagnostic to the sink and count it. */
void dg_emit(surg_sink *sink, const surg_diag *d);

/* An error from errno for a system call on a file: "cannot open: No such
 * file or directory". Returns SURG_EIO. */
surg_status dg_errno(surg_sink *sink, const char *file, const char *what,
                     int err);

/* Out of memory while working on a file. Returns SURG_ENOMEM. */
surg_status dg_nomem(surg_sink *sink, const char *file);

#endif
