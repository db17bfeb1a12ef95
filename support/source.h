/* source.h: a recipe's text, and turning byte offsets into line:column only
 * when a diagnostic is printed (locations are byte spans everywhere else). */
#ifndef SURG_SOURCE_H
#define SURG_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "support/arena.h"
#include "surg/surg.h"

typedef struct src_span {
    uint32_t start, end; /* byte offsets, end exclusive */
} src_span;

typedef struct src_file {
    const char *path;
    const char *text; /* NUL-terminated */
    uint32_t len;
    uint32_t *line_starts; /* offset of each line's first byte */
    uint32_t n_lines;
} src_file;

/* Index the lines of text (which lives as long as the arena). */
int src_init(src_file *f, arena *ar, const char *path, const char *text,
             uint32_t len);

/* 1-based line and column (in characters, a tab counting one) of an offset. */
void src_position(const src_file *f, uint32_t offset, uint32_t *line,
                  uint32_t *col);

/* Report a diagnostic at a span, with optional notes. */
void src_report(const src_file *f, surg_sink *sink, surg_severity sev,
                const char *code, src_span span, const char *const *notes,
                size_t n_notes, const char *fmt, ...)
    __attribute__((format(printf, 8, 9)));

#endif
