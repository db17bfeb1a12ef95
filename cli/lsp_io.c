/* lsp_io.c: the Language Server Protocol's framing over a pair of file
 * descriptors — a header block naming Content-Length, then the body — read
 * with bounded memory whatever the other side sends; and the JSON-RPC
 * messages `surg lsp` sends. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <stdarg.h>
#include <stdio.h>

#include "lsp.h"

/* A header line, and the header block, may be this long; no real client
 * comes near. */
#define LINE_MAX_BYTES 1024
#define HEADER_LINES 32

/* Refill the buffer when it is used up: 1, or 0 at the end of the
 * stream, -1 on a read error. */
static int fill(lsp_in *in)
{
    if (in->pos < in->len)
        return 1;
    ssize_t r;
    do
        r = read(in->fd, in->buf, sizeof in->buf);
    while (r < 0 && errno == EINTR);
    if (r <= 0)
        return r == 0 ? 0 : -1;
    in->pos = 0;
    in->len = (size_t)r;
    return 1;
}

/* The next byte, -1 at the end of the stream, -2 on a read error. */
static int next_byte(lsp_in *in)
{
    int f = fill(in);
    if (f <= 0)
        return f == 0 ? -1 : -2;
    return (unsigned char)in->buf[in->pos++];
}

/* Copy (or, with dst NULL, skip) n bytes of the stream. */
static bool take(lsp_in *in, char *dst, size_t n)
{
    while (n) {
        if (fill(in) <= 0)
            return false;
        size_t have = in->len - in->pos;
        size_t k = have < n ? have : n;
        if (dst) {
            memcpy(dst, in->buf + in->pos, k);
            dst += k;
        }
        in->pos += k;
        n -= k;
    }
    return true;
}

/* One header line without its CR LF; -1 at the end of the stream before
 * any byte, -2 when it is cut off or too long. */
static int header_line(lsp_in *in, char *line, size_t *n)
{
    *n = 0;
    for (;;) {
        int c = next_byte(in);
        if (c < 0)
            return *n == 0 && c == -1 ? -1 : -2;
        if (c == '\n') {
            if (*n && line[*n - 1] == '\r')
                (*n)--;
            line[*n] = '\0';
            return 0;
        }
        if (*n + 1 >= LINE_MAX_BYTES)
            return -2;
        line[(*n)++] = (char)c;
    }
}

/* Content-Length's value: decimal digits only, no overflow. */
static bool parse_length(const char *v, size_t *out)
{
    while (*v == ' ' || *v == '\t')
        v++;
    size_t x = 0;
    const char *d = v;
    for (; *d >= '0' && *d <= '9'; d++) {
        if (x > (SIZE_MAX - 9) / 10)
            return false;
        x = x * 10 + (size_t)(*d - '0');
    }
    while (*d == ' ' || *d == '\t')
        d++;
    *out = x;
    return d > v && *d == '\0';
}

lsp_read_rc lsp_read(lsp_in *in, char **body, size_t *len, const char **why)
{
    char line[LINE_MAX_BYTES];
    size_t n;
    bool have_length = false;
    *body = NULL;
    *len = 0;
    if (in->skip) { /* the body of a message refused before */
        size_t left = in->skip;
        in->skip = 0;
        if (!take(in, NULL, left))
            return LSP_EOF;
    }
    for (int k = 0;; k++) {
        int rc = header_line(in, line, &n);
        if (rc == -1 && k == 0)
            return LSP_EOF;
        if (rc < 0) {
            *why = rc == -2 ? "a header line is cut off or longer than 1024 bytes"
                             : "the stream ended inside a header";
            return LSP_BAD_FRAME;
        }
        if (n == 0 && k == 0)
            continue; /* a stray blank line between messages */
        if (n == 0)
            break;
        if (k >= HEADER_LINES) {
            *why = "more than 32 header lines";
            return LSP_BAD_FRAME;
        }
        if (strncasecmp(line, "Content-Length:", 15) == 0) {
            if (!parse_length(line + 15, len)) {
                *why = "Content-Length is not a decimal number of bytes";
                return LSP_BAD_FRAME;
            }
            have_length = true;
        }
    }
    if (!have_length) {
        *why = "a header without Content-Length";
        return LSP_BAD_FRAME;
    }
    if (*len > LSP_MAX_MESSAGE) {
        in->skip = *len; /* read and thrown away, a buffer at a time */
        return LSP_TOO_LARGE;
    }
    char *b = malloc(*len + 1);
    if (!b) {
        in->skip = *len;
        return LSP_NOMEM;
    }
    if (!take(in, b, *len)) {
        free(b);
        *why = "the stream ended inside a message";
        return LSP_BAD_FRAME;
    }
    b[*len] = '\0';
    *body = b;
    return LSP_MESSAGE;
}

static bool write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

bool lsp_send(int fd, const char *json, size_t len)
{
    char head[64];
    int h = snprintf(head, sizeof head, "Content-Length: %zu\r\n\r\n", len);
    return write_all(fd, head, (size_t)h) && write_all(fd, json, len);
}

/* ---- messages out ---------------------------------------------------- */

bool lsp_msg_open(lsp_msg *m)
{
    m->p = NULL;
    m->f = open_memstream(&m->p, &m->n);
    return m->f != NULL;
}

void lsp_msg_send(lsp_server *s, lsp_msg *m)
{
    if (fclose(m->f) == 0 && !s->gone && !lsp_send(s->out, m->p, m->n))
        s->gone = true;
    free(m->p);
}

static void put_id(FILE *f, const surg_json *id)
{
    if (id && id->kind == SURG_JSON_STRING)
        put_json_str(f, id->string);
    else if (id && id->kind == SURG_JSON_NUMBER)
        fputs(id->string, f);
    else
        fputs("null", f);
}

bool lsp_reply_start(lsp_msg *m, const surg_json *id)
{
    if (!lsp_msg_open(m))
        return false;
    fputs("{\"jsonrpc\":\"2.0\",\"id\":", m->f);
    put_id(m->f, id);
    fputs(",\"result\":", m->f);
    return true;
}

void lsp_reply_end(lsp_server *s, lsp_msg *m)
{
    fputc('}', m->f);
    lsp_msg_send(s, m);
}

void lsp_reply_raw(lsp_server *s, const surg_json *id, const char *result)
{
    lsp_msg m;
    if (lsp_reply_start(&m, id)) {
        fputs(result, m.f);
        lsp_reply_end(s, &m);
    }
}

void lsp_reply_error(lsp_server *s, const surg_json *id, int code, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    lsp_msg m;
    if (!lsp_msg_open(&m))
        return;
    fputs("{\"jsonrpc\":\"2.0\",\"id\":", m.f);
    put_id(m.f, id);
    fprintf(m.f, ",\"error\":{\"code\":%d,\"message\":", code);
    put_json_str(m.f, text);
    fputs("}}", m.f);
    lsp_msg_send(s, &m);
}
