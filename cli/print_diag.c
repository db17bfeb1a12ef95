/* print_diag.c: printing diagnostics the way a C compiler does, as JSON
 * lines, or as GitHub Actions annotations. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

void put_safe(FILE *out, const char *s, bool keep_newlines)
{
    /* Runs of safe bytes in one write: a plan of 100,000 tensors is MBs. */
    const unsigned char *p = (const unsigned char *)(s ? s : ""), *run = p;
    for (;; p++) {
        bool bad = (*p < 0x20 && !(keep_newlines && *p == '\n')) || *p == 0x7F;
        if (!bad && *p)
            continue;
        fwrite(run, 1, (size_t)(p - run), out);
        if (!*p)
            return;
        fprintf(out, "\\x%02x", *p);
        run = p + 1;
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

static void print_json(FILE *out, const surg_diag *d)
{
    char *line = surg_diag_json(d);
    fputs(line ? line : "{\"file\":\"surg\",\"severity\":\"error\",\"code\":\"nomem\","
                        "\"message\":\"out of memory\",\"notes\":[]}",
          out);
    fputc('\n', out);
    free(line);
}

/* GitHub's workflow commands escape %, CR and LF in the message, and also
 * ':' and ',' in properties. */
static void gh_escape(FILE *out, const char *s, bool property)
{
    for (; s && *s; s++) {
        if (*s == '%')
            fputs("%25", out);
        else if (*s == '\r')
            fputs("%0D", out);
        else if (*s == '\n')
            fputs("%0A", out);
        else if (property && *s == ':')
            fputs("%3A", out);
        else if (property && *s == ',')
            fputs("%2C", out);
        else if ((unsigned char)*s < 0x20 || *s == 0x7F)
            fprintf(out, "\\x%02x", (unsigned char)*s);
        else
            fputc(*s, out);
    }
}

static void print_github(FILE *out, const surg_diag *d)
{
    fprintf(out, "::%s file=", d->severity == SURG_NOTE ? "notice"
                                                       : severity_name(d->severity));
    gh_escape(out, d->file, true);
    if (d->line)
        fprintf(out, ",line=%u,col=%u,endLine=%u,endColumn=%u", d->line, d->col,
                d->end_line, d->end_col);
    fputs("::", out);
    gh_escape(out, d->message, false);
    for (size_t i = 0; i < d->n_notes; i++) {
        fputs("%0Anote: ", out);
        gh_escape(out, d->notes[i], false);
    }
    fputc('\n', out);
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
static void put_columns(FILE *out, const char *line, unsigned lo, unsigned hi)
{
    unsigned col = 0;
    bool shown = false; /* whether the character the bytes continue was */
    for (const char *p = line; *p && col < hi + 1; p++) {
        unsigned char c = (unsigned char)*p;
        if ((c & 0xC0) == 0x80) {
            if (shown)
                fputc(c, out);
            continue;
        }
        if (col >= hi)
            break;
        if (c == '\t') {
            unsigned next = (col / 8 + 1) * 8;
            for (unsigned k = col; k < next && k < hi; k++)
                if (k >= lo)
                    fputc(' ', out);
            col = next;
            shown = false;
            continue;
        }
        shown = col >= lo;
        if (shown)
            fputc(c < 0x20 || c == 0x7F ? '?' : c, out);
        col++;
    }
}

/* The source line with tabs expanded, then a caret under the first column
 * of the span and tildes to its end (on that line). */
static void print_excerpt(FILE *out, const surg_diag *d, bool color)
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
    const char *cut = lo ? "..." : "";
    fprintf(out, "%5u | %s", d->line, cut);
    put_columns(out, d->source_line, lo, hi);
    fputs(hi < width ? "..." : "", out);
    if (to > hi)
        to = hi > from ? hi : from + 1;
    fprintf(out, "\n      | %s%*s%s^", lo ? "   " : "", (int)(from - lo), "",
            color ? "\033[1;32m" : "");
    for (unsigned c = from + 1; c < to; c++)
        fputc('~', out);
    fputs(color ? "\033[0m\n" : "\n", out);
}

static void print_human(FILE *out, const surg_diag *d, bool color)
{
    const char *bold = color ? "\033[1m" : "", *reset = color ? "\033[0m" : "";
    fputs(bold, out);
    put_safe(out, d->file ? d->file : "surg", false);
    fputc(':', out);
    if (d->line)
        fprintf(out, "%u:%u:", d->line, d->col);
    fprintf(out, " %s%s:%s %s", color ? severity_color(d->severity) : "",
            severity_name(d->severity), reset, bold);
    put_safe(out, d->message, false);
    fprintf(out, "%s\n", reset);
    if (d->line && d->source_line)
        print_excerpt(out, d, color);
    for (size_t i = 0; i < d->n_notes; i++) {
        fprintf(out, "%snote:%s ", color ? severity_color(SURG_NOTE) : "", reset);
        put_safe(out, d->notes[i], false);
        fputc('\n', out);
    }
}

static void print_to(FILE *out, const surg_diag *d, const diag_printer *p)
{
    switch (p->format) {
    case DIAG_JSON: print_json(out, d); break;
    case DIAG_GITHUB: print_github(out, d); break;
    case DIAG_HUMAN: print_human(out, d, p->color); break;
    }
}

/* Each diagnostic is built in memory and written at once: standard error is
 * unbuffered, and byte by byte a long line costs a system call a byte. */
static void print_diag(const surg_diag *d, void *user)
{
    diag_printer *p = user;
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (mem) {
        print_to(mem, d, p);
        if (fclose(mem) == 0)
            fwrite(text, 1, len, p->out);
        else
            print_to(p->out, d, p);
        free(text);
    } else {
        print_to(p->out, d, p);
    }
    fflush(p->out);
}

surg_sink diag_sink(diag_printer *p)
{
    return (surg_sink){.fn = print_diag, .user = p};
}

bool diag_parse_format(const char *name, diag_format *out)
{
    static const struct {
        const char *name;
        diag_format f;
    } names[] = {{"human", DIAG_HUMAN}, {"json", DIAG_JSON}, {"github", DIAG_GITHUB}};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strcmp(name, names[i].name) == 0) {
            *out = names[i].f;
            return true;
        }
    return false;
}
