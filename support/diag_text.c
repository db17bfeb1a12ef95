/* diag_text.c: a diagnostic as text, the way a C compiler prints it — for
 * the command, and for every other caller (the Python package) to print it
 * the same. */
#include <limits.h>

#include "support/buf.h"
#include "surg/surg.h"

/* Text that may hold names from a hostile file: control characters are
 * written as \xNN, never sent to the terminal. */
static void put_safe(buf *out, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p < 0x20 || *p == 0x7F)
            buf_printf(out, "\\x%02x", *p);
        else
            buf_putc(out, (char)*p);
    }
}

static const char *severity_name(surg_severity s)
{
    return s == SURG_ERROR ? "error" : s == SURG_WARNING ? "warning" : "note";
}

static const char *severity_color(surg_severity s)
{
    return s == SURG_ERROR ? "\033[1;31m" : s == SURG_WARNING ? "\033[1;35m"
                                                               : "\033[1;36m";
}

/* Display column (0-based) after the first `chars` characters of a line,
 * with tabs advancing to the next multiple of 8; counting stops at column
 * `most`. */
static unsigned display_column(const char *line, unsigned chars, unsigned most)
{
    unsigned col = 0, seen = 0;
    for (const unsigned char *p = (const unsigned char *)line; *p && seen < chars && col < most;
         p++) {
        if ((*p & 0xC0) == 0x80)
            continue;
        col = *p == '\t' ? (col / 8 + 1) * 8 : col + 1;
        seen++;
    }
    return col;
}

/* A line wider than this many columns is shown as a window of it around
 * the caret, the cut ends marked "...", so a diagnostic costs the same on a
 * 40 KB line as on a short one. */
#define EXCERPT_WIDTH 160u
#define EXCERPT_BEFORE 40u /* columns of a window before the caret */

/* Columns [lo, hi) of the line, tabs expanded and control characters shown
 * as '?' (one column, as counted). */
static void put_columns(buf *out, const char *line, unsigned lo, unsigned hi)
{
    unsigned col = 0;
    int shown = 0; /* whether the character the bytes continue was */
    for (const char *p = line; *p && col < hi + 1; p++) {
        unsigned char c = (unsigned char)*p;
        if ((c & 0xC0) == 0x80) {
            if (shown)
                buf_putc(out, (char)c);
            continue;
        }
        if (col >= hi)
            break;
        if (c == '\t') {
            unsigned next = (col / 8 + 1) * 8;
            for (unsigned k = col; k < next && k < hi; k++)
                if (k >= lo)
                    buf_putc(out, ' ');
            col = next;
            shown = 0;
            continue;
        }
        shown = col >= lo;
        if (shown)
            buf_putc(out, c < 0x20 || c == 0x7F ? '?' : (char)c);
        col++;
    }
}

/* The source line with tabs expanded, then a caret under the first column
 * of the span and tildes to its end (on that line). */
static void put_excerpt(buf *out, const surg_diag *d, int color)
{
    /* Past the caret, only as far as a window could reach is looked at. */
    unsigned from = display_column(d->source_line, d->col - 1, UINT_MAX);
    unsigned most = from < UINT_MAX - EXCERPT_WIDTH - 8 ? from + EXCERPT_WIDTH + 8 : UINT_MAX;
    unsigned width = display_column(d->source_line, UINT_MAX, most);
    unsigned to = d->end_line == d->line && d->end_col > d->col
                      ? display_column(d->source_line, d->end_col - 1, most)
                      : from + 1;
    unsigned lo = 0, hi = width;
    if (width > EXCERPT_WIDTH) {
        lo = from > EXCERPT_BEFORE ? from - EXCERPT_BEFORE : 0;
        if (lo > width - EXCERPT_WIDTH)
            lo = width - EXCERPT_WIDTH;
        hi = lo + EXCERPT_WIDTH;
    }
    buf_printf(out, "%5u | %s", d->line, lo ? "..." : "");
    put_columns(out, d->source_line, lo, hi);
    buf_puts(out, hi < width ? "..." : "");
    if (to > hi)
        to = hi > from ? hi : from + 1;
    buf_printf(out, "\n      | %s%*s%s^", lo ? "   " : "", (int)(from - lo), "",
               color ? "\033[1;32m" : "");
    for (unsigned c = from + 1; c < to; c++)
        buf_putc(out, '~');
    buf_puts(out, color ? "\033[0m\n" : "\n");
}

char *surg_diag_text(const surg_diag *d, int color)
{
    const char *bold = color ? "\033[1m" : "", *reset = color ? "\033[0m" : "";
    buf out;
    buf_init(&out);
    buf_puts(&out, bold);
    put_safe(&out, d->file ? d->file : "surg");
    buf_putc(&out, ':');
    if (d->line)
        buf_printf(&out, "%u:%u:", d->line, d->col);
    buf_printf(&out, " %s%s:%s %s", color ? severity_color(d->severity) : "",
               severity_name(d->severity), reset, bold);
    put_safe(&out, d->message);
    buf_printf(&out, "%s\n", reset);
    if (d->line && d->source_line)
        put_excerpt(&out, d, color);
    for (size_t i = 0; i < d->n_notes; i++) {
        buf_printf(&out, "%snote:%s ", color ? severity_color(SURG_NOTE) : "", reset);
        put_safe(&out, d->notes[i]);
        buf_putc(&out, '\n');
    }
    return buf_take(&out);
}
