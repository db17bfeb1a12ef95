/* lsp_text.c: `surg lsp`'s documents and positions: LSP lines and code
 * units (UTF-16 by default, or UTF-8 bytes when negotiated) to byte offsets
 * of a document and back, and file: URIs to paths. */
#include <stdlib.h>
#include <string.h>

#include "lsp.h"

static size_t cp_len(unsigned char c)
{
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

/* Code units of the character whose UTF-8 form has `len` bytes. */
static uint32_t cp_units(size_t len, int units)
{
    return units == 8 ? (uint32_t)len : units == 16 && len == 4 ? 2 : 1;
}

/* d->lines, made once per text: a publish looks up every diagnostic's
 * lines, which must not cost a pass over the text each. False when out of
 * memory. */
static bool lines_of(lsp_doc *d)
{
    if (d->lines)
        return true;
    size_t n = 1;
    for (const char *p = d->text; (p = memchr(p, '\n', d->len - (size_t)(p - d->text)));)
        n++, p++;
    if (!(d->lines = malloc(n * sizeof *d->lines)))
        return false;
    d->lines[0] = 0;
    d->n_lines = 1;
    for (size_t i = 0; i < d->len; i++)
        if (d->text[i] == '\n')
            d->lines[d->n_lines++] = i + 1;
    return true;
}

static size_t line_start(const lsp_doc *d, uint32_t line)
{
    if (lines_of((lsp_doc *)d))
        return line < d->n_lines ? d->lines[line] : d->len;
    size_t i = 0; /* out of memory: the slow way */
    for (uint32_t l = 0; l < line; l++) {
        const char *nl = memchr(d->text + i, '\n', d->len - i);
        if (!nl)
            return d->len;
        i = (size_t)(nl - d->text) + 1;
    }
    return i;
}

size_t lsp_offset_at(const lsp_doc *d, int units, uint32_t line, uint32_t ch)
{
    size_t i = line_start(d, line);
    for (uint32_t u = 0; i < d->len && d->text[i] != '\n';) {
        size_t n = cp_len((unsigned char)d->text[i]);
        u += cp_units(n, units);
        if (u > ch)
            break;
        i += n;
    }
    return i < d->len ? i : d->len;
}

static void position_at(const lsp_doc *d, int units, size_t off, uint32_t *line, uint32_t *ch)
{
    *line = 0;
    size_t start = 0;
    if (lines_of((lsp_doc *)d)) { /* the last line starting at or before off */
        size_t lo = 0, hi = d->n_lines;
        while (hi - lo > 1) {
            size_t mid = lo + (hi - lo) / 2;
            if (d->lines[mid] <= off)
                lo = mid;
            else
                hi = mid;
        }
        *line = (uint32_t)lo;
        start = d->lines[lo];
    } else {
        for (size_t i = 0; i < off && i < d->len; i++)
            if (d->text[i] == '\n') {
                (*line)++;
                start = i + 1;
            }
    }
    *ch = 0;
    for (size_t i = start; i < off && i < d->len;) {
        size_t n = cp_len((unsigned char)d->text[i]);
        *ch += cp_units(n, units);
        i += n;
    }
}

size_t lsp_offset_of_col(const lsp_doc *d, uint32_t line, uint32_t col)
{
    size_t i = line_start(d, line ? line - 1 : 0);
    for (uint32_t c = 1; c < col && i < d->len && d->text[i] != '\n'; c++)
        i += cp_len((unsigned char)d->text[i]);
    return i < d->len ? i : d->len;
}

void lsp_put_range(FILE *f, const lsp_doc *d, int units, size_t from, size_t to)
{
    uint32_t l0, c0, l1, c1;
    position_at(d, units, from, &l0, &c0);
    position_at(d, units, to, &l1, &c1);
    fprintf(f, "{\"start\":{\"line\":%u,\"character\":%u},\"end\":{\"line\":%u,\"character\":%u}}",
            l0, c0, l1, c1);
}

/* ---- documents --------------------------------------------------------- */

char *lsp_strndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

char *lsp_uri_path(const char *uri)
{
    if (strncmp(uri, "file://", 7) != 0)
        return lsp_strndup(uri, strlen(uri));
    const char *p = uri + 7;
    p = strchr(p, '/') ? strchr(p, '/') : p; /* file://host/path: the host goes */
    char *out = malloc(strlen(p) + 1), *o = out;
    if (!out)
        return NULL;
    for (; *p; p++) {
        int hi, lo;
        if (*p == '%' && (hi = hex_digit(p[1])) >= 0 && (lo = hex_digit(p[2])) >= 0 &&
            (hi || lo)) {
            *o++ = (char)(hi * 16 + lo);
            p += 2;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return out;
}

lsp_doc *lsp_find_doc(lsp_server *s, const surg_json *params)
{
    const surg_json *uri = surg_json_get(surg_json_get(params, "textDocument"), "uri");
    if (!uri || uri->kind != SURG_JSON_STRING)
        return NULL;
    for (lsp_doc *d = s->docs; d; d = d->next)
        if (strcmp(d->uri, uri->string) == 0)
            return d;
    return NULL;
}

void lsp_doc_free(lsp_doc *d)
{
    free(d->uri);
    free(d->path);
    free(d->text);
    free(d->lines);
    free(d);
}

void lsp_doc_set_text(lsp_doc *d, char *text, size_t len)
{
    free(d->text);
    free(d->lines);
    d->text = text;
    d->len = len;
    d->lines = NULL;
    d->n_lines = 0;
}


bool lsp_get_position(const surg_json *pos, uint32_t *line, uint32_t *ch)
{
    const surg_json *l = surg_json_get(pos, "line"), *c = surg_json_get(pos, "character");
    if (!l || !c || l->kind != SURG_JSON_NUMBER || c->kind != SURG_JSON_NUMBER ||
        !(l->number >= 0 && l->number <= UINT32_MAX) || !(c->number >= 0 && c->number <= UINT32_MAX))
        return false;
    *line = (uint32_t)l->number;
    *ch = (uint32_t)c->number;
    return true;
}
