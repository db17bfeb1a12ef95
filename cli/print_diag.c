/* print_diag.c: printing diagnostics the way a C compiler does, as JSON
 * lines, or as GitHub Actions annotations. */
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

/* A JSON string: quotes, backslashes and control characters escaped, a
 * byte that is not UTF-8 written as U+FFFD. */
void put_json_str(FILE *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', out);
    while (*p) {
        unsigned c = *p;
        size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 && c >= 0xc2 ? 2
                                : (c & 0xf0) == 0xe0              ? 3
                                : (c & 0xf8) == 0xf0 && c <= 0xf4 ? 4
                                                                  : 0;
        bool ok = len > 0;
        for (size_t k = 1; ok && k < len; k++)
            ok = (p[k] & 0xc0) == 0x80;
        if (ok && len == 3)
            ok = !(c == 0xe0 && p[1] < 0xa0) && !(c == 0xed && p[1] >= 0xa0);
        if (ok && len == 4)
            ok = !(c == 0xf0 && p[1] < 0x90) && !(c == 0xf4 && p[1] >= 0x90);
        if (!ok) {
            fputs("\\ufffd", out);
            p++;
        } else if (c == '"' || c == '\\') {
            fprintf(out, "\\%c", c);
            p++;
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(out, "\\u%04x", c);
            p++;
        } else {
            fwrite(p, 1, len, out);
            p += len;
        }
    }
    fputc('"', out);
}

static const char *severity_name(surg_severity s)
{
    return s == SURG_ERROR ? "error" : s == SURG_WARNING ? "warning" : "note";
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

/* As a C compiler prints it (the library's text, which every caller shares). */
static void print_human(FILE *out, const surg_diag *d, bool color)
{
    char *text = surg_diag_text(d, color);
    fputs(text ? text : "surg: error: out of memory\n", out);
    free(text);
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
