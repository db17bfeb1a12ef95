/* print_diag.c: printing diagnostics the way a C compiler does, as JSON
 * lines, or as GitHub Actions annotations. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

void put_safe(FILE *out, const char *s, bool keep_newlines)
{
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if ((*p < 0x20 && !(keep_newlines && *p == '\n')) || *p == 0x7F)
            fprintf(out, "\\x%02x", *p);
        else
            fputc(*p, out);
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
 * with tabs advancing to the next multiple of 8. */
static unsigned display_column(const char *line, unsigned chars)
{
    unsigned col = 0, seen = 0;
    for (const unsigned char *p = (const unsigned char *)line; *p && seen < chars; p++) {
        if ((*p & 0xC0) == 0x80)
            continue;
        col = *p == '\t' ? (col / 8 + 1) * 8 : col + 1;
        seen++;
    }
    return col;
}

/* The source line with tabs expanded, then a caret under the first column
 * of the span and tildes to its end (on that line). */
static void print_excerpt(FILE *out, const surg_diag *d, bool color)
{
    fprintf(out, "%5u | ", d->line);
    unsigned col = 0;
    for (const char *p = d->source_line; *p; p++) {
        if (*p == '\t') {
            unsigned next = (col / 8 + 1) * 8;
            fprintf(out, "%*s", (int)(next - col), "");
            col = next;
        } else if ((unsigned char)*p < 0x20 || *p == 0x7F) {
            fputc('?', out); /* one column, as counted */
            col++;
        } else {
            fputc(*p, out);
            col += ((unsigned char)*p & 0xC0) != 0x80;
        }
    }
    unsigned from = display_column(d->source_line, d->col - 1);
    unsigned to = d->end_line == d->line && d->end_col > d->col
                      ? display_column(d->source_line, d->end_col - 1)
                      : from + 1;
    fprintf(out, "\n      | %*s%s^", (int)from, "", color ? "\033[1;32m" : "");
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

static void print_diag(const surg_diag *d, void *user)
{
    diag_printer *p = user;
    switch (p->format) {
    case DIAG_JSON: print_json(p->out, d); break;
    case DIAG_GITHUB: print_github(p->out, d); break;
    case DIAG_HUMAN: print_human(p->out, d, p->color); break;
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
