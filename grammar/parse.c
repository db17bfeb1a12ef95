/* parse.c: running the scanner and the parser over one recipe, and the small
 * services they share (keywords, string escapes, error reports). */
#include "grammar/parse.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "support/buf.h"
#include "grammar/parser.h"
#include "support/suggest.h"
#include "support/utf8.h"

/* The scanner's interface, without including its generated header. */
int grlex_init_extra(gr_ctx *extra, yyscan_t *scanner);
int grlex_destroy(yyscan_t scanner);
struct yy_buffer_state *gr_scan_bytes(const char *bytes, int len, yyscan_t scanner);

static const struct {
    const char *word;
    int token;
} keywords[] = {
    {"rename", RENAME}, {"drop", DROP},       {"keep", KEEP},         {"fill", FILL},
    {"map", MAP},       {"tie", TIE},         {"split", SPLIT},       {"concat", CONCAT},
    {"stack", STACK},   {"unstack", UNSTACK}, {"expect", EXPECT},     {"seed", SEED},
    {"layout", LAYOUT}, {"mirror", MIRROR},   {"optional", OPTIONAL}, {"rank", RANK},
    {"alpha", ALPHA},   {"style", STYLE},     {"as", AS},             {"axis", AXIS},
    {"sizes", SIZES},   {"untie", UNTIE},     {"meta", META},         {"resize", RESIZE},
};

int gr_keyword(const char *word)
{
    for (size_t i = 0; i < sizeof keywords / sizeof *keywords; i++)
        if (strcmp(word, keywords[i].word) == 0)
            return keywords[i].token;
    return 0;
}

size_t gr_keyword_count(void) { return sizeof keywords / sizeof *keywords; }

const char *gr_keyword_word(size_t i) { return keywords[i].word; }

int gr_mirror_keyword(const char *word)
{
    return strcmp(word, "factored") == 0 ? FACTORED : strcmp(word, "min") == 0 ? MIN : 0;
}

const char *ast_stmt_keyword(ast_stmt_kind kind)
{
    static const char *const words[] = {
#define X(e, kw) kw,
        AST_STATEMENTS(X)
#undef X
    };
    return words[kind];
}

static void vreport(gr_ctx *ctx, src_span span, const char *code,
                    const char *const *notes, size_t n_notes, const char *fmt,
                    va_list ap)
{
    buf msg;
    buf_init(&msg);
    buf_vprintf(&msg, fmt, ap);
    ctx->errors++;
    src_report(&ctx->recipe->src, ctx->sink, SURG_ERROR, code, span, notes, n_notes,
               "%s", msg.failed ? "(out of memory)" : msg.data);
    buf_free(&msg);
}

void gr_error(gr_ctx *ctx, src_span span, const char *code,
              const char *const *notes, size_t n_notes, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(ctx, span, code, notes, n_notes, fmt, ap);
    va_end(ap);
}

void gr_suggest(gr_ctx *ctx, src_span span, const char *code, const char *word,
                const char *const *cands, size_t n, const char *fmt, ...)
{
    const char *best = word ? sg_closest(word, cands, n) : NULL;
    char note[128];
    const char *notes[] = {note};
    if (best)
        snprintf(note, sizeof note, "did you mean '%s'?", best);
    va_list ap;
    va_start(ap, fmt);
    vreport(ctx, span, code, notes, best ? 1 : 0, fmt, ap);
    va_end(ap);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void put_utf8(buf *b, uint32_t cp)
{
    char s[4];
    int n;
    if (cp < 0x80) {
        s[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        s[0] = (char)(0xC0 | cp >> 6);
        s[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        s[0] = (char)(0xE0 | cp >> 12);
        s[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        s[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        s[0] = (char)(0xF0 | cp >> 18);
        s[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        s[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        s[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    buf_append(b, s, (size_t)n);
}

/* One escape after a backslash at body[i]; returns the bytes it used. */
static uint32_t escape(gr_ctx *ctx, buf *out, const char *body, uint32_t i,
                       uint32_t len, uint32_t at)
{
    static const char simple[] = "n\nt\tr\rb\bf\fv\va\a\\\\\"\"''??";
    char c = body[i];
    for (const char *p = simple; *p; p += 2)
        if (c == p[0]) {
            buf_putc(out, p[1]);
            return 1;
        }
    int width = c == 'x' ? 2 : c == 'u' ? 4 : c == 'U' ? 8 : 0;
    uint32_t cp = 0;
    int k = 0;
    for (; width && k < width && i + 1 + (uint32_t)k < len &&
           hex_value(body[i + 1 + k]) >= 0;
         k++)
        cp = cp * 16 + (uint32_t)hex_value(body[i + 1 + k]);
    src_span span = {at + i - 1, at + i + 1 + (uint32_t)k};
    if (!width) {
        gr_error(ctx, span, "syntax-escape", NULL, 0, "unknown escape '\\%c' in a string", c);
        return 1;
    }
    if (k == 0 || (c != 'x' && k != width)) {
        gr_error(ctx, span, "syntax-escape", NULL, 0,
                 "'\\%c' needs %d hexadecimal digits", c, c == 'x' ? 2 : width);
    } else if (cp == 0) {
        gr_error(ctx, span, "syntax-escape", NULL, 0, "a string may not contain NUL");
    } else if (c == 'x' && cp >= 0x80) {
        gr_error(ctx, span, "syntax-escape", NULL, 0,
                 "'\\x%02X' is not ASCII; write the character, or '\\u00%02X'", cp, cp);
    } else if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        gr_error(ctx, span, "syntax-escape", NULL, 0, "'\\%c' names no Unicode character", c);
    } else {
        put_utf8(out, cp);
    }
    return 1 + (uint32_t)k;
}

const char *gr_unescape(gr_ctx *ctx, const char *body, uint32_t len, uint32_t at)
{
    buf out;
    buf_init(&out);
    for (uint32_t i = 0; i < len;) {
        if (body[i] != '\\') {
            buf_putc(&out, body[i++]);
            continue;
        }
        i++;
        if (i >= len)
            break; /* a lone backslash before the end: already unterminated */
        i += escape(ctx, &out, body, i, len, at);
    }
    const char *s = ar_strndup(ctx->ar, out.data ? out.data : "", out.len);
    ctx->nomem |= out.failed || !s;
    buf_free(&out);
    return s ? s : "";
}

static surg_status run(gr_ctx *ctx, const char *text, uint32_t len)
{
    yyscan_t scanner;
    if (grlex_init_extra(ctx, &scanner) != 0)
        return SURG_ENOMEM;
    jmp_buf fatal;
    ctx->fatal = &fatal;
    if (setjmp(fatal)) { /* the scanner could not allocate */
        grlex_destroy(scanner);
        return SURG_ENOMEM;
    }
    surg_status st = SURG_OK;
    if (!gr_scan_bytes(text, (int)len, scanner))
        st = SURG_ENOMEM;
    else if (grparse(scanner, ctx) == 2 && !ctx->stack_full)
        st = SURG_ENOMEM;
    grlex_destroy(scanner);
    return st;
}

surg_status gr_parse(arena *ar, surg_sink *sink, const char *path,
                     const char *text, uint32_t len, ast_recipe **out)
{
    *out = NULL;
    ast_recipe *r = ar_alloc(ar, sizeof *r);
    char *copy = ar_strndup(ar, text, len);
    const char *name = ar_strdup(ar, path);
    if (!r || !copy || !name || src_init(&r->src, ar, name, copy, len) != 0)
        return SURG_ENOMEM;
    r->broken = NULL;
    r->n_broken = 0;
    gr_ctx ctx = {.ar = ar, .sink = sink, .recipe = r,
                  .stmt_tail = &r->stmts, .comment_tail = &r->comments,
                  .broken_tail = &r->broken};
    size_t bad;
    if (!utf8_valid((const unsigned char *)copy, len, &bad)) {
        gr_error(&ctx, (src_span){(uint32_t)bad, (uint32_t)bad + 1}, "syntax-utf8", NULL, 0,
                 "the recipe is not valid UTF-8");
        return SURG_EINVALID;
    }
    if (memchr(copy, '\0', len)) {
        uint32_t at = (uint32_t)((const char *)memchr(copy, '\0', len) - copy);
        gr_error(&ctx, (src_span){at, at + 1}, "syntax-character", NULL, 0,
                 "the recipe contains a NUL byte");
        return SURG_EINVALID;
    }
    surg_status st = run(&ctx, copy, len);
    if (st == SURG_OK && ctx.nomem)
        st = SURG_ENOMEM;
    *out = r;
    if (st == SURG_OK && ctx.errors)
        st = SURG_EINVALID;
    return st;
}
