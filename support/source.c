/* source.c: line tables and span diagnostics. */
#include "support/source.h"

#include <stdarg.h>
#include <string.h>

#include "support/buf.h"
#include "support/diag.h"

int src_init(src_file *f, arena *ar, const char *path, const char *text,
             uint32_t len)
{
    uint32_t n = 1;
    for (uint32_t i = 0; i < len; i++)
        n += text[i] == '\n';
    *f = (src_file){.path = path, .text = text, .len = len, .n_lines = n};
    f->line_starts = ar_array(ar, n, sizeof *f->line_starts);
    if (!f->line_starts)
        return -1;
    uint32_t k = 0;
    f->line_starts[k++] = 0;
    for (uint32_t i = 0; i < len; i++)
        if (text[i] == '\n')
            f->line_starts[k++] = i + 1;
    return 0;
}

static uint32_t line_of(const src_file *f, uint32_t offset)
{
    uint32_t lo = 0, hi = f->n_lines;
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (f->line_starts[mid] <= offset)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

void src_position(const src_file *f, uint32_t offset, uint32_t *line,
                  uint32_t *col)
{
    if (offset > f->len)
        offset = f->len;
    uint32_t l = line_of(f, offset);
    uint32_t c = 1;
    for (uint32_t i = f->line_starts[l]; i < offset; i++)
        c += ((unsigned char)f->text[i] & 0xC0) != 0x80;
    *line = l + 1;
    *col = c;
}

void src_report(const src_file *f, surg_sink *sink, surg_severity sev,
                const char *code, src_span span, const char *const *notes,
                size_t n_notes, const char *fmt, ...)
{
    buf msg, line;
    buf_init(&msg);
    buf_init(&line);
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&msg, fmt, ap);
    va_end(ap);
    surg_diag d = {.severity = sev, .code = code, .file = f->path,
                   .notes = notes, .n_notes = n_notes};
    src_position(f, span.start, &d.line, &d.col);
    src_position(f, span.end > span.start ? span.end : span.start + 1,
                 &d.end_line, &d.end_col);
    uint32_t l = d.line - 1;
    uint32_t from = f->line_starts[l];
    uint32_t to = l + 1 < f->n_lines ? f->line_starts[l + 1] - 1 : f->len;
    if (to > from && f->text[to - 1] == '\r')
        to--;
    buf_append(&line, f->text + from, to - from);
    d.source_line = line.failed ? "" : line.data ? line.data : "";
    d.message = msg.failed ? "(out of memory while describing an error)"
                           : msg.data;
    dg_emit(sink, &d);
    buf_free(&msg);
    buf_free(&line);
}
