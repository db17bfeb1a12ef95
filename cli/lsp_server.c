/* lsp_server.c: `surg lsp`'s server: the lifecycle (initialize, shutdown,
 * exit), the documents kept in step with the client, the settings, and
 * the dispatch of each message read, one at a time, in order. */
#include <stdlib.h>
#include <string.h>

#include "lsp.h"

/* ---- requests and notifications ---------------------------------------- */

static const char *string_at(const surg_json *obj, const char *key)
{
    const surg_json *v = surg_json_get(obj, key);
    return v && v->kind == SURG_JSON_STRING ? v->string : NULL;
}

/* A document's version: an integer JSON can hold exactly, else 0 (a
 * hostile 1e300 is no version, and no long long either). */
static long long version_of(const surg_json *v)
{
    if (!v || v->kind != SURG_JSON_NUMBER || !(v->number >= -9007199254740992.0 &&
                                               v->number <= 9007199254740992.0))
        return 0;
    return (long long)v->number;
}

static void set_from(lsp_server *s, const surg_json *opts)
{
    const char *from = string_at(opts, "from");
    if (!from)
        from = string_at(surg_json_get(opts, "surg"), "from");
    if (!from)
        return;
    free(s->from);
    s->from = from[0] ? strdup(from) : NULL;
}

static bool offers_utf8(const surg_json *params)
{
    const surg_json *encs =
        surg_json_get(surg_json_get(surg_json_get(params, "capabilities"), "general"),
                      "positionEncodings");
    for (size_t i = 0; encs && encs->kind == SURG_JSON_ARRAY && i < encs->n; i++)
        if (encs->items[i].kind == SURG_JSON_STRING && strcmp(encs->items[i].string, "utf-8") == 0)
            return true;
    return false;
}

static void on_initialize(lsp_server *s, const surg_json *id, const surg_json *params)
{
    if (s->initialized) {
        lsp_reply_error(s, id, RPC_INVALID_REQUEST, "the server is already initialized");
        return;
    }
    s->initialized = true;
    s->units = offers_utf8(params) ? 8 : 16;
    const char *root = string_at(params, "rootUri");
    if (root)
        s->root = lsp_uri_path(root);
    else if ((root = string_at(params, "rootPath")))
        s->root = strdup(root);
    set_from(s, surg_json_get(params, "initializationOptions"));
    lsp_msg m;
    if (!lsp_reply_start(&m, id))
        return;
    fprintf(m.f,
            "{\"capabilities\":{\"positionEncoding\":\"%s\","
            "\"textDocumentSync\":{\"openClose\":true,\"change\":1},"
            "\"hoverProvider\":true,"
            "\"completionProvider\":{\"triggerCharacters\":[\"\\\"\",\"/\",\".\"]},"
            "\"documentFormattingProvider\":true},"
            "\"serverInfo\":{\"name\":\"surg\",\"version\":\"%s\"}}",
            s->units == 8 ? "utf-8" : "utf-16", SURG_VERSION);
    lsp_reply_end(s, &m);
}

static void on_shutdown(lsp_server *s, const surg_json *id, const surg_json *params)
{
    (void)params;
    s->shutdown = true;
    lsp_reply_raw(s, id, "null");
}

/* Would the open documents, `d` holding `len` bytes (d NULL: one more),
 * stay within LSP_MAX_OPEN_BYTES and LSP_MAX_OPEN_DOCS? */
static bool room_for(const lsp_server *s, const lsp_doc *d, size_t len)
{
    size_t total = len, docs = d ? 0 : 1;
    for (const lsp_doc *e = s->docs; e; e = e->next, docs++)
        total += e == d ? 0 : e->len;
    return len <= SURG_RECIPE_MAX && total <= LSP_MAX_OPEN_BYTES && docs <= LSP_MAX_OPEN_DOCS;
}

static void on_did_open(lsp_server *s, const surg_json *id, const surg_json *params)
{
    (void)id;
    const surg_json *td = surg_json_get(params, "textDocument");
    const char *uri = string_at(td, "uri");
    const surg_json *text = surg_json_get(td, "text"), *ver = surg_json_get(td, "version");
    if (!uri || !text || text->kind != SURG_JSON_STRING)
        return;
    lsp_doc *d = lsp_find_doc(s, params);
    if (!room_for(s, d, strlen(text->string)))
        return;
    char *t = strdup(text->string);
    if (!t)
        return;
    if (!d) {
        d = calloc(1, sizeof *d);
        if (!d || !(d->uri = strdup(uri)) || !(d->path = lsp_uri_path(uri))) {
            if (d)
                lsp_doc_free(d);
            free(t);
            return;
        }
        d->next = s->docs;
        s->docs = d;
    }
    lsp_doc_set_text(d, t, strlen(t));
    d->version = version_of(ver);
    lsp_publish(s, d);
}

/* One change: the whole text, or a range of it replaced. */
static bool apply_change(lsp_server *s, lsp_doc *d, const surg_json *change)
{
    const surg_json *text = surg_json_get(change, "text"), *range = surg_json_get(change, "range");
    if (!text || text->kind != SURG_JSON_STRING)
        return false;
    size_t from = 0, to = d->len, n = strlen(text->string);
    if (range) {
        uint32_t l0, c0, l1, c1;
        if (!lsp_get_position(surg_json_get(range, "start"), &l0, &c0) ||
            !lsp_get_position(surg_json_get(range, "end"), &l1, &c1))
            return false;
        from = lsp_offset_at(d, s->units, l0, c0);
        to = lsp_offset_at(d, s->units, l1, c1);
        if (to < from)
            return false;
    }
    if (!room_for(s, d, d->len - (to - from) + n))
        return false;
    char *t = malloc(d->len - (to - from) + n + 1);
    if (!t)
        return false;
    memcpy(t, d->text, from);
    memcpy(t + from, text->string, n);
    memcpy(t + from + n, d->text + to, d->len - to);
    size_t len = d->len - (to - from) + n;
    t[len] = '\0';
    lsp_doc_set_text(d, t, len);
    return true;
}

static void on_did_change(lsp_server *s, const surg_json *id, const surg_json *params)
{
    (void)id;
    lsp_doc *d = lsp_find_doc(s, params);
    const surg_json *changes = surg_json_get(params, "contentChanges");
    if (!d || !changes || changes->kind != SURG_JSON_ARRAY)
        return;
    for (size_t i = 0; i < changes->n; i++)
        if (!apply_change(s, d, &changes->items[i]))
            break;
    const surg_json *ver = surg_json_get(surg_json_get(params, "textDocument"), "version");
    if (ver)
        d->version = version_of(ver);
    lsp_publish(s, d);
}

static void on_did_close(lsp_server *s, const surg_json *id, const surg_json *params)
{
    (void)id;
    lsp_doc *d = lsp_find_doc(s, params);
    for (lsp_doc **p = &s->docs; d && *p; p = &(*p)->next)
        if (*p == d) {
            *p = d->next;
            lsp_doc_free(d);
            break;
        }
    (void)params;
}

static void on_configuration(lsp_server *s, const surg_json *id, const surg_json *params)
{
    (void)id;
    set_from(s, surg_json_get(params, "settings"));
    for (lsp_doc *d = s->docs; d; d = d->next)
        lsp_publish(s, d);
}

/* The matches of `pat` in the state before its statement, for people. */
static void on_nothing(lsp_server *s, const surg_json *id, const surg_json *params)
{
    (void)s, (void)id, (void)params;
}

typedef void method_fn(lsp_server *s, const surg_json *id, const surg_json *params);

static const struct method {
    const char *name;
    method_fn *fn;
} methods[] = {
    {"initialize", on_initialize},
    {"initialized", on_nothing},
    {"shutdown", on_shutdown},
    {"textDocument/didOpen", on_did_open},
    {"textDocument/didChange", on_did_change},
    {"textDocument/didClose", on_did_close},
    {"textDocument/didSave", on_nothing},
    {"workspace/didChangeConfiguration", on_configuration},
    {"textDocument/hover", lsp_hover},
    {"textDocument/completion", lsp_completion},
    {"textDocument/formatting", lsp_formatting},
};

/* One message; -1 to go on, else the exit code (after `exit`). */
static int handle(lsp_server *s, const surg_json *m)
{
    if (m->kind != SURG_JSON_OBJECT) {
        lsp_reply_error(s, NULL, RPC_INVALID_REQUEST, "Invalid Request: a message is a JSON object");
        return -1;
    }
    const surg_json *method = surg_json_get(m, "method"), *id = surg_json_get(m, "id");
    const surg_json *params = surg_json_get(m, "params");
    if (id && id->kind != SURG_JSON_STRING && id->kind != SURG_JSON_NUMBER) {
        lsp_reply_error(s, NULL, RPC_INVALID_REQUEST, "Invalid Request: an id is a number or a string");
        return -1;
    }
    if (!method && id && (surg_json_get(m, "result") || surg_json_get(m, "error")))
        return -1; /* a response to a request of ours: we send none */
    if (!method || method->kind != SURG_JSON_STRING) {
        lsp_reply_error(s, id, RPC_INVALID_REQUEST, "Invalid Request: no method");
        return -1;
    }
    const char *name = method->string;
    if (strcmp(name, "exit") == 0)
        return s->shutdown ? 0 : 1;
    if (!s->initialized && strcmp(name, "initialize") != 0) {
        if (id)
            lsp_reply_error(s, id, RPC_NOT_INITIALIZED, "the server is not initialized yet");
        return -1;
    }
    if (s->shutdown) {
        if (id)
            lsp_reply_error(s, id, RPC_INVALID_REQUEST, "the server is shut down: only exit is left");
        return -1;
    }
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++)
        if (strcmp(methods[i].name, name) == 0) {
            methods[i].fn(s, id, params);
            return -1;
        }
    if (id)
        lsp_reply_error(s, id, RPC_METHOD_NOT_FOUND, "Method not found: %s", name);
    return -1;
}

static int serve(lsp_server *s, lsp_in *in)
{
    for (;;) {
        char *body;
        size_t len;
        const char *why = "";
        lsp_read_rc rc = lsp_read(in, &body, &len, &why);
        if (rc == LSP_EOF)
            return 1; /* the client went away without `exit` */
        if (rc == LSP_BAD_FRAME) {
            lsp_reply_error(s, NULL, RPC_PARSE_ERROR, "Parse error: %s; the stream cannot be followed "
                                                  "any further", why);
            return 1;
        }
        if (rc == LSP_TOO_LARGE || rc == LSP_NOMEM) {
            if (rc == LSP_TOO_LARGE)
                lsp_reply_error(s, NULL, RPC_INVALID_REQUEST,
                                "a message of %zu bytes is refused: the limit is %u bytes", len,
                                LSP_MAX_MESSAGE);
            else
                lsp_reply_error(s, NULL, RPC_INVALID_REQUEST,
                                "a message of %zu bytes is refused: out of memory", len);
            continue;
        }
        char err[300];
        surg_json *m = surg_json_parse(body, len, err, sizeof err);
        free(body);
        if (!m) {
            lsp_reply_error(s, NULL, RPC_PARSE_ERROR, "Parse error: %s", err);
            continue;
        }
        int exit_code = handle(s, m);
        surg_json_free(m);
        if (exit_code >= 0 || s->gone)
            return exit_code >= 0 ? exit_code : 1;
    }
}

int lsp_serve(int in_fd, int out_fd)
{
    lsp_server s = {.out = out_fd, .units = 16};
    lsp_in *in = calloc(1, sizeof *in);
    if (!in)
        return 2;
    in->fd = in_fd;
    int rc = serve(&s, in);
    free(in);
    while (s.docs) {
        lsp_doc *next = s.docs->next;
        lsp_doc_free(s.docs);
        s.docs = next;
    }
    free(s.root);
    free(s.from);
    return rc;
}
