/* lsp_features.c: what `surg lsp` answers about a document: hover on a
 * pattern (what it matches in the state its statement sees), completion
 * (tensor names in a string, statement keywords where one begins) and
 * formatting (surg fmt's text, as one edit). */
#include <stdlib.h>
#include <string.h>

#include "lsp.h"

/* Hover lists this many matches, then says how many more. */
#define HOVER_MAX 20
/* Completion offers at most this many names (and says the list is incomplete). */
#define COMPLETION_MAX 1000

static void put_hover(FILE *f, const lsp_server *s, const lsp_doc *d, const surg_pattern_ref *ref)
{
    lsp_view v;
    if (!lsp_view_open(s, d, ref->stmt_start, &v)) {
        lsp_view_close(&v);
        fputs("no abstract state to match against: name one in a comment at the top, "
              "`# surg: from model.schema.json`, or in the setting `surg.from`", f);
        return;
    }
    char err[256];
    surg_pattern *p;
    if (surg_pattern_compile(ref->text, &p, err, sizeof err) != SURG_OK) {
        fprintf(f, "bad pattern: %s", err);
        lsp_view_close(&v);
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < v.n; i++)
        n += surg_pattern_match(p, v.e[i].name) == 1;
    fputc('`', f);
    put_safe(f, ref->text, false);
    if (n == 0)
        fputs("` matches no tensor", f);
    else
        fprintf(f, "` matches %zu tensor%s:\n\n```text\n", n, n == 1 ? "" : "s");
    size_t shown = 0;
    for (size_t i = 0; i < v.n && shown < HOVER_MAX && n; i++) {
        if (surg_pattern_match(p, v.e[i].name) != 1)
            continue;
        put_safe(f, v.e[i].name, false);
        fputs("  ", f);
        lsp_put_type(f, v.e[i].t);
        if (v.e[i].tied) {
            fputs("  tied to ", f);
            put_safe(f, v.e[i].tied, false);
        }
        fputc('\n', f);
        shown++;
    }
    if (n > shown)
        fprintf(f, "… and %zu more\n", n - shown);
    if (n)
        fputs("```", f);
    if (v.before_failed)
        fputs("\n\n(the statements before this one do not compile: matched against the input)", f);
    surg_pattern_free(p);
    lsp_view_close(&v);
}

/* The document and the offset a request about a place names; NULL (and
 * the request answered) when there is none. */
static lsp_doc *place_of(lsp_server *s, const surg_json *id, const surg_json *params,
                         const char *what, size_t *at)
{
    lsp_doc *d = lsp_find_doc(s, params);
    uint32_t line, ch;
    if (!lsp_get_position(surg_json_get(params, "position"), &line, &ch)) {
        lsp_reply_error(s, id, RPC_INVALID_PARAMS, "%s needs textDocument and position", what);
        return NULL;
    }
    if (!d) {
        lsp_reply_raw(s, id, "null"); /* a document never opened: nothing to say */
        return NULL;
    }
    *at = lsp_offset_at(d, s->units, line, ch);
    return d;
}

/* The end of the statement that holds `at`: the end of the separator
 * after it, or of the text. */
static size_t statement_end(const lsp_doc *d, size_t at)
{
    surg_token *t;
    size_t n, end = d->len;
    if (surg_recipe_tokens(d->text, d->len, &t, &n) != SURG_OK)
        return end;
    for (size_t k = 0; k < n; k++)
        if (t[k].kind == SURG_TOK_SEPARATOR && t[k].start >= at) {
            end = t[k].end;
            break;
        }
    free(t);
    return end;
}

/* The recipe up to the end of the statement at `at` (so that an error
 * further down, as one is typed, leaves hover working above it). */
static surg_recipe *parse_upto(const lsp_doc *d, size_t at)
{
    surg_sink quiet = {0};
    surg_recipe *r = NULL;
    if (surg_recipe_parse(d->path, d->text, d->len, &quiet, &r) == SURG_OK)
        return r;
    surg_recipe_parse(d->path, d->text, statement_end(d, at), &quiet, &r);
    return r;
}

void lsp_hover(lsp_server *s, const surg_json *id, const surg_json *params)
{
    size_t at;
    lsp_doc *d = place_of(s, id, params, "hover", &at);
    if (!d)
        return;
    surg_recipe *r = parse_upto(d, at);
    surg_pattern_ref ref;
    if (!r || !surg_recipe_pattern_at(r, at, &ref)) {
        surg_recipe_free(r);
        lsp_reply_raw(s, id, "null");
        return;
    }
    char *text = NULL;
    size_t n;
    FILE *t = open_memstream(&text, &n);
    if (t) {
        put_hover(t, s, d, &ref);
        fclose(t);
    }
    lsp_msg m;
    if (text && lsp_reply_start(&m, id)) {
        fputs("{\"contents\":{\"kind\":\"markdown\",\"value\":", m.f);
        put_json_str(m.f, text);
        fputs("},\"range\":", m.f);
        lsp_put_range(m.f, d, s->units, ref.start, ref.end);
        fputc('}', m.f);
        lsp_reply_end(s, &m);
    } else {
        lsp_reply_raw(s, id, "null");
    }
    free(text);
    surg_recipe_free(r);
}

/* A name as the text of a pattern that matches exactly it: the glob's
 * characters quoted by '\', then the string's '\' and '"' escaped. */
static void put_name_pattern(FILE *f, const char *name)
{
    for (const char *p = name; *p; p++) {
        if (strchr("*?[]{}\\", *p))
            fputs("\\\\", f);
        if (*p == '\\' || *p == '"')
            fputc('\\', f);
        fputc(*p, f);
    }
}

static void put_name_item(FILE *f, const lsp_doc *d, int units, const lsp_entry *e, size_t from,
                          size_t to)
{
    char *text = NULL, *detail = NULL;
    size_t n;
    FILE *t = open_memstream(&text, &n), *dt = open_memstream(&detail, &n);
    if (t) {
        put_name_pattern(t, e->name);
        fclose(t);
    }
    if (dt) {
        lsp_put_type(dt, e->t);
        if (e->tied)
            fprintf(dt, " (tied to %s)", e->tied);
        fclose(dt);
    }
    fputs("{\"label\":", f);
    put_json_str(f, e->name);
    fputs(",\"kind\":5,\"detail\":", f);
    put_json_str(f, detail ? detail : "");
    fputs(",\"textEdit\":{\"range\":", f);
    lsp_put_range(f, d, units, from, to);
    fputs(",\"newText\":", f);
    put_json_str(f, text ? text : e->name);
    fputs("}}", f);
    free(text);
    free(detail);
}

/* Tensor names for the string the cursor is in, the state before its
 * statement; those that start with what the string holds so far. */
static void complete_names(FILE *f, const lsp_server *s, const lsp_doc *d, const surg_token *str,
                           size_t stmt_start, size_t at)
{
    lsp_view v;
    bool ok = lsp_view_open(s, d, stmt_start, &v);
    const char *typed = d->text + str->start + 1;
    size_t typed_len = at - str->start - 1, shown = 0, more = 0;
    fputs("{\"isIncomplete\":", f);
    char *items = NULL;
    size_t n;
    FILE *it = open_memstream(&items, &n);
    for (size_t i = 0; ok && it && i < v.n; i++) {
        if (strncmp(v.e[i].name, typed, typed_len) != 0)
            continue;
        if (shown == COMPLETION_MAX) {
            more++;
            continue;
        }
        if (shown++)
            fputc(',', it);
        put_name_item(it, d, s->units, &v.e[i], str->start + 1, at);
    }
    if (it)
        fclose(it);
    fprintf(f, "%s,\"items\":[%s]}", more ? "true" : "false", items ? items : "");
    free(items);
    lsp_view_close(&v);
}

static void complete_keywords(FILE *f)
{
    fputs("{\"isIncomplete\":false,\"items\":[", f);
    const char *w;
    int starts;
    bool first = true;
    for (size_t i = 0; (w = surg_recipe_keyword(i, &starts)); i++) {
        if (!starts)
            continue;
        fprintf(f, "%s{\"label\":\"%s\",\"kind\":14}", first ? "" : ",", w);
        first = false;
    }
    fputs("]}", f);
}

void lsp_completion(lsp_server *s, const surg_json *id, const surg_json *params)
{
    size_t at;
    lsp_doc *d = place_of(s, id, params, "completion", &at);
    if (!d)
        return;
    surg_token *t = NULL;
    size_t n = 0, stmt_start = 0, k = 0;
    if (surg_recipe_tokens(d->text, d->len, &t, &n) != SURG_OK) {
        lsp_reply_raw(s, id, "null");
        return;
    }
    for (; k < n && t[k].start < at; k++)
        if (t[k].kind == SURG_TOK_SEPARATOR && t[k].end <= at)
            stmt_start = t[k].end;
    /* t[k - 1]: the token the cursor is in or just after */
    const surg_token *cur = k ? &t[k - 1] : NULL;
    bool closed = cur && cur->end - cur->start >= 2 && d->text[cur->end - 1] == '"';
    bool in_string = cur && cur->kind == SURG_TOK_STRING &&
                     (at < cur->end || (at == cur->end && !closed));
    bool first_word = !cur || cur->end <= stmt_start ||
                      (cur->kind == SURG_TOK_WORD && cur->start == stmt_start && at <= cur->end) ||
                      cur->kind == SURG_TOK_COMMENT;
    lsp_msg m;
    if (lsp_reply_start(&m, id)) {
        if (in_string)
            complete_names(m.f, s, d, cur, stmt_start, at);
        else if (first_word)
            complete_keywords(m.f);
        else
            fputs("{\"isIncomplete\":false,\"items\":[]}", m.f);
        lsp_reply_end(s, &m);
    }
    free(t);
}

void lsp_formatting(lsp_server *s, const surg_json *id, const surg_json *params)
{
    lsp_doc *d = lsp_find_doc(s, params);
    surg_sink quiet = {0};
    surg_recipe *r = NULL;
    char *text = NULL;
    if (!d || surg_recipe_parse(d->path, d->text, d->len, &quiet, &r) != SURG_OK ||
        !(text = surg_recipe_format(r))) {
        surg_recipe_free(r);
        lsp_reply_raw(s, id, "null"); /* a recipe with syntax errors is left as it is */
        return;
    }
    lsp_msg m;
    if (lsp_reply_start(&m, id)) {
        if (strlen(text) == d->len && memcmp(text, d->text, d->len) == 0) {
            fputs("[]", m.f);
        } else {
            fputs("[{\"range\":", m.f);
            lsp_put_range(m.f, d, s->units, 0, d->len);
            fputs(",\"newText\":", m.f);
            put_json_str(m.f, text);
            fputs("}]", m.f);
        }
        lsp_reply_end(s, &m);
    }
    free(text);
    surg_recipe_free(r);
}
