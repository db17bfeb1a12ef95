/* cmd_lsp.c: `surg lsp`, a Language Server over standard input and output:
 * the compiler's diagnostics as the recipe is typed, hover on a pattern
 * (what it matches), completion of tensor names and statement keywords,
 * and formatting, against the abstract state a header comment or a
 * setting names (docs/editors.md). One message at a time, in order. */
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char help[] =
    "usage: surg lsp\n"
    "\n"
    "A Language Server (LSP 3.17) over standard input and output, for editors:\n"
    "diagnostics as you type, hover on a pattern to see what it matches,\n"
    "completion of tensor names and statement keywords, formatting.\n"
    "The abstract state is the file a comment at the top of the recipe names,\n"
    "`# surg: from model.schema.json` (relative to the recipe's directory), or\n"
    "else the setting surg.from (initializationOptions or\n"
    "workspace/didChangeConfiguration; relative to the workspace root).\n"
    "See docs/editors.md for VS Code, Neovim, Helix and Emacs.\n";

/* JSON-RPC's and the LSP's error codes. */
enum {
    RPC_PARSE_ERROR = -32700,
    RPC_INVALID_REQUEST = -32600,
    RPC_METHOD_NOT_FOUND = -32601,
    RPC_INVALID_PARAMS = -32602,
    RPC_NOT_INITIALIZED = -32002,
};

/* Hover lists this many matches, then says how many more. */
#define HOVER_MAX 20
/* Completion offers at most this many names (and says the list is incomplete). */
#define COMPLETION_MAX 1000

typedef struct doc {
    char *uri, *path; /* path: the file the URI names, or the URI itself */
    char *text;
    size_t len;
    long long version;
    struct doc *next;
} doc;

typedef struct server {
    int out;
    bool initialized, shutdown, gone;
    int units;      /* position encoding: code units of 8, 16 or 32 bits */
    char *root;     /* the workspace's folder, for a relative surg.from */
    char *from;     /* the setting surg.from, as given */
    doc *docs;
} server;

/* ---- messages out ---------------------------------------------------- */

typedef struct msg {
    FILE *f;
    char *p;
    size_t n;
} msg;

static bool msg_open(msg *m)
{
    m->p = NULL;
    m->f = open_memstream(&m->p, &m->n);
    return m->f != NULL;
}

static void msg_send(server *s, msg *m)
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

/* A response: `{"jsonrpc":"2.0","id":ID,"result":` is written; the caller
 * writes the result and calls reply_end. */
static bool reply_start(msg *m, const surg_json *id)
{
    if (!msg_open(m))
        return false;
    fputs("{\"jsonrpc\":\"2.0\",\"id\":", m->f);
    put_id(m->f, id);
    fputs(",\"result\":", m->f);
    return true;
}

static void reply_end(server *s, msg *m)
{
    fputc('}', m->f);
    msg_send(s, m);
}

static void reply_raw(server *s, const surg_json *id, const char *result)
{
    msg m;
    if (reply_start(&m, id)) {
        fputs(result, m.f);
        reply_end(s, &m);
    }
}

static void reply_error(server *s, const surg_json *id, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void reply_error(server *s, const surg_json *id, int code, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    msg m;
    if (!msg_open(&m))
        return;
    fputs("{\"jsonrpc\":\"2.0\",\"id\":", m.f);
    put_id(m.f, id);
    fprintf(m.f, ",\"error\":{\"code\":%d,\"message\":", code);
    put_json_str(m.f, text);
    fputs("}}", m.f);
    msg_send(s, &m);
}

/* ---- positions: LSP lines and code units <-> byte offsets ------------ */

static size_t cp_len(unsigned char c)
{
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

/* Code units of the character whose UTF-8 form has `len` bytes. */
static uint32_t cp_units(size_t len, int units)
{
    return units == 8 ? (uint32_t)len : units == 16 && len == 4 ? 2 : 1;
}

static size_t line_start(const doc *d, uint32_t line)
{
    size_t i = 0;
    for (uint32_t l = 0; l < line; l++) {
        const char *nl = memchr(d->text + i, '\n', d->len - i);
        if (!nl)
            return d->len;
        i = (size_t)(nl - d->text) + 1;
    }
    return i;
}

/* The offset of an LSP position; past its line's end: the line's end. */
static size_t offset_at(const doc *d, int units, uint32_t line, uint32_t ch)
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

static void position_at(const doc *d, int units, size_t off, uint32_t *line, uint32_t *ch)
{
    *line = 0;
    size_t start = 0;
    for (size_t i = 0; i < off && i < d->len; i++)
        if (d->text[i] == '\n') {
            (*line)++;
            start = i + 1;
        }
    *ch = 0;
    for (size_t i = start; i < off && i < d->len;) {
        size_t n = cp_len((unsigned char)d->text[i]);
        *ch += cp_units(n, units);
        i += n;
    }
}

/* The offset of a diagnostic's line and column (1-based, in characters). */
static size_t offset_of_col(const doc *d, uint32_t line, uint32_t col)
{
    size_t i = line_start(d, line ? line - 1 : 0);
    for (uint32_t c = 1; c < col && i < d->len && d->text[i] != '\n'; c++)
        i += cp_len((unsigned char)d->text[i]);
    return i < d->len ? i : d->len;
}

static void put_range(FILE *f, const doc *d, int units, size_t from, size_t to)
{
    uint32_t l0, c0, l1, c1;
    position_at(d, units, from, &l0, &c0);
    position_at(d, units, to, &l1, &c1);
    fprintf(f, "{\"start\":{\"line\":%u,\"character\":%u},\"end\":{\"line\":%u,\"character\":%u}}",
            l0, c0, l1, c1);
}

/* ---- documents --------------------------------------------------------- */

static char *dup_n(const char *s, size_t n)
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

/* A file: URI's path, percent-decoded; any other URI stands for itself. */
static char *uri_path(const char *uri)
{
    if (strncmp(uri, "file://", 7) != 0)
        return dup_n(uri, strlen(uri));
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

static doc *find_doc(server *s, const surg_json *params)
{
    const surg_json *uri = surg_json_get(surg_json_get(params, "textDocument"), "uri");
    if (!uri || uri->kind != SURG_JSON_STRING)
        return NULL;
    for (doc *d = s->docs; d; d = d->next)
        if (strcmp(d->uri, uri->string) == 0)
            return d;
    return NULL;
}

static void doc_free(doc *d)
{
    free(d->uri);
    free(d->path);
    free(d->text);
    free(d);
}

/* ---- the abstract state ----------------------------------------------- */

/* `# surg: from PATH` among the comments that open the recipe: PATH's
 * bytes (*len) and the offsets of its line. */
static const char *header_from(const doc *d, size_t *len, size_t *line_from, size_t *line_to)
{
    for (size_t i = 0; i < d->len;) {
        const char *nl = memchr(d->text + i, '\n', d->len - i);
        size_t end = nl ? (size_t)(nl - d->text) : d->len, k = i;
        while (k < end && (d->text[k] == ' ' || d->text[k] == '\t' || d->text[k] == '\r'))
            k++;
        if (k < end && d->text[k] != '#')
            return NULL; /* the first statement: the header is over */
        if (k < end) {
            const char *p = d->text + k + 1, *e = d->text + end;
            while (p < e && *p == ' ')
                p++;
            if ((size_t)(e - p) > 10 && strncmp(p, "surg: from", 10) == 0 && p[10] == ' ') {
                p += 11;
                while (p < e && *p == ' ')
                    p++;
                while (e > p && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
                    e--;
                *len = (size_t)(e - p);
                *line_from = i;
                *line_to = end;
                return *len ? p : NULL;
            }
        }
        i = end + 1;
    }
    return NULL;
}

/* `path` (len bytes) relative to `base`'s folder (or to `base` itself when
 * base_is_dir), unless it is absolute. */
static char *resolve(const char *base, bool base_is_dir, const char *path, size_t len)
{
    if (path[0] == '/' || !base)
        return dup_n(path, len);
    const char *slash = strrchr(base, '/');
    size_t dir = base_is_dir ? strlen(base) : slash ? (size_t)(slash - base) : 0;
    if (!base_is_dir && !slash)
        return dup_n(path, len);
    char *out = malloc(dir + len + 2);
    if (out)
        snprintf(out, dir + len + 2, "%.*s/%.*s", (int)dir, base, (int)len, path);
    return out;
}

/* Where a document's abstract state comes from (malloc'd), and the bytes
 * of the header line that named it (both 0 for the setting); NULL: none. */
static char *state_path(const server *s, const doc *d, size_t *at_from, size_t *at_to)
{
    size_t len;
    const char *p = header_from(d, &len, at_from, at_to);
    if (p)
        return resolve(d->path, false, p, len);
    *at_from = *at_to = 0;
    return s->from ? resolve(s->root, true, s->from, strlen(s->from)) : NULL;
}

/* ---- diagnostics -------------------------------------------------------- */

typedef struct diag_item {
    surg_severity severity;
    char *code, *file, *message; /* message: with its notes, one a line */
    uint32_t line, col, end_line, end_col;
} diag_item;

typedef struct diag_list {
    diag_item *v;
    size_t n, cap;
} diag_list;

static char *joined(const surg_diag *d)
{
    char *p = NULL;
    size_t n;
    FILE *f = open_memstream(&p, &n);
    if (!f)
        return NULL;
    fputs(d->message, f);
    for (size_t i = 0; i < d->n_notes; i++)
        fprintf(f, "\nnote: %s", d->notes[i]);
    if (fclose(f) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

static void collect(const surg_diag *d, void *user)
{
    diag_list *l = user;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        diag_item *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return;
        l->v = v;
        l->cap = cap;
    }
    diag_item *it = &l->v[l->n];
    *it = (diag_item){d->severity, strdup(d->code ? d->code : ""), strdup(d->file ? d->file : ""),
                      joined(d), d->line, d->col, d->end_line, d->end_col};
    if (!it->code || !it->file || !it->message) {
        free(it->code);
        free(it->file);
        free(it->message);
        return;
    }
    l->n++;
}

static void diags_free(diag_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].code);
        free(l->v[i].file);
        free(l->v[i].message);
    }
    free(l->v);
}

static void put_diag(FILE *f, const doc *d, int units, const diag_item *it, size_t at_from,
                     size_t at_to)
{
    bool here = it->line && strcmp(it->file, d->path) == 0;
    size_t from = here ? offset_of_col(d, it->line, it->col) : at_from;
    size_t to = here ? offset_of_col(d, it->end_line, it->end_col) : at_to;
    fputs("{\"range\":", f);
    put_range(f, d, units, from, to < from ? from : to);
    fprintf(f, ",\"severity\":%d,\"source\":\"surg\",\"code\":",
            it->severity == SURG_ERROR ? 1 : it->severity == SURG_WARNING ? 2 : 3);
    put_json_str(f, it->code);
    fputs(",\"message\":", f);
    if (here || !it->file[0]) {
        put_json_str(f, it->message);
    } else { /* a problem of another file (the abstract state): named */
        char *m = malloc(strlen(it->file) + strlen(it->message) + 3);
        if (m)
            sprintf(m, "%s: %s", it->file, it->message);
        put_json_str(f, m ? m : it->message);
        free(m);
    }
    fputc('}', f);
}

/* Check a document as `surg check` would, and publish what it says. */
static void publish(server *s, const doc *d)
{
    diag_list l = {0};
    surg_sink sink = {.fn = collect, .user = &l};
    surg_recipe *r = NULL;
    size_t at_from = 0, at_to = 0;
    if (surg_recipe_parse(d->path, d->text, d->len, &sink, &r) == SURG_OK) {
        char *from = state_path(s, d, &at_from, &at_to);
        surg_ckpt *ck = NULL;
        if (from && surg_ckpt_open(from, &sink, &ck) == SURG_OK) {
            surg_program *p = NULL;
            surg_compile(r, ck, &sink, &p);
            surg_program_free(p);
            surg_ckpt_close(ck);
        }
        free(from);
        surg_recipe_free(r);
    }
    msg m;
    if (msg_open(&m)) {
        fputs("{\"jsonrpc\":\"2.0\",\"method\":\"textDocument/publishDiagnostics\","
              "\"params\":{\"uri\":", m.f);
        put_json_str(m.f, d->uri);
        fprintf(m.f, ",\"version\":%lld,\"diagnostics\":[", d->version);
        for (size_t i = 0; i < l.n; i++) {
            if (i)
                fputc(',', m.f);
            put_diag(m.f, d, s->units, &l.v[i], at_from, at_to);
        }
        fputs("]}}", m.f);
        msg_send(s, &m);
    }
    diags_free(&l);
}

/* ---- the state a statement sees ---------------------------------------- */

typedef struct entry {
    const char *name;
    const surg_tensor_info *t; /* a tied name's: its stored tensor's */
    const char *tied;          /* the stored name, for a tied name */
} entry;

typedef struct view {
    surg_ckpt *ck;
    surg_recipe *r;
    surg_program *p;
    entry *e;
    size_t n;
    bool before_failed; /* the statements before do not compile: the input's state */
} view;

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const entry *)a)->name, ((const entry *)b)->name);
}

static const surg_tensor_info *program_find(const surg_program *p, const char *name)
{
    size_t lo = 0, hi = surg_program_output_count(p);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(surg_program_output(p, mid)->name, name);
        if (c == 0)
            return surg_program_output(p, mid);
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* The names of the result of the recipe's text before `upto`, in byte
 * order; without a program (it does not compile), the input's. */
static bool view_entries(view *v)
{
    size_t nt = v->p ? surg_program_output_count(v->p) : surg_ckpt_count(v->ck);
    size_t na = v->p ? surg_program_alias_count(v->p) : surg_ckpt_tie_count(v->ck);
    v->e = malloc((nt + na + 1) * sizeof *v->e);
    if (!v->e)
        return false;
    for (size_t i = 0; i < nt; i++) {
        const surg_tensor_info *t = v->p ? surg_program_output(v->p, i) : surg_ckpt_tensor(v->ck, i);
        v->e[v->n++] = (entry){t->name, t, NULL};
    }
    for (size_t i = 0; i < na; i++) {
        const surg_meta_entry *a = v->p ? surg_program_alias(v->p, i) : surg_ckpt_tie(v->ck, i);
        size_t k = v->p ? 0 : surg_ckpt_find(v->ck, a->value);
        const surg_tensor_info *t = v->p ? program_find(v->p, a->value)
                                    : k == (size_t)-1 ? NULL : surg_ckpt_tensor(v->ck, k);
        if (t)
            v->e[v->n++] = (entry){a->key, t, a->value};
    }
    qsort(v->e, v->n, sizeof *v->e, entry_cmp);
    return true;
}

static bool view_open(const server *s, const doc *d, size_t upto, view *v)
{
    memset(v, 0, sizeof *v);
    size_t at_from, at_to;
    char *from = state_path(s, d, &at_from, &at_to);
    surg_sink quiet = {0};
    bool ok = from && surg_ckpt_open(from, &quiet, &v->ck) == SURG_OK;
    free(from);
    if (!ok)
        return false;
    if (surg_recipe_parse(d->path, d->text, upto, &quiet, &v->r) != SURG_OK ||
        surg_compile(v->r, v->ck, &quiet, &v->p) != SURG_OK)
        v->before_failed = true;
    return view_entries(v);
}

static void view_close(view *v)
{
    free(v->e);
    surg_program_free(v->p);
    surg_recipe_free(v->r);
    surg_ckpt_close(v->ck);
}

/* `f32[3, 4]` */
static void put_type(FILE *f, const surg_tensor_info *t)
{
    fprintf(f, "%s[", surg_dtype_recipe_name(t->dtype));
    for (uint32_t k = 0; k < t->rank; k++)
        fprintf(f, "%s%llu", k ? ", " : "", (unsigned long long)t->shape[k]);
    fputc(']', f);
}

/* ---- requests and notifications ---------------------------------------- */

static bool get_position(const surg_json *params, uint32_t *line, uint32_t *ch)
{
    const surg_json *pos = surg_json_get(params, "position");
    const surg_json *l = surg_json_get(pos, "line"), *c = surg_json_get(pos, "character");
    if (!l || !c || l->kind != SURG_JSON_NUMBER || c->kind != SURG_JSON_NUMBER ||
        !(l->number >= 0 && l->number <= UINT32_MAX) || !(c->number >= 0 && c->number <= UINT32_MAX))
        return false;
    *line = (uint32_t)l->number;
    *ch = (uint32_t)c->number;
    return true;
}

static const char *string_at(const surg_json *obj, const char *key)
{
    const surg_json *v = surg_json_get(obj, key);
    return v && v->kind == SURG_JSON_STRING ? v->string : NULL;
}

static void set_from(server *s, const surg_json *opts)
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

static void on_initialize(server *s, const surg_json *id, const surg_json *params)
{
    if (s->initialized) {
        reply_error(s, id, RPC_INVALID_REQUEST, "the server is already initialized");
        return;
    }
    s->initialized = true;
    s->units = offers_utf8(params) ? 8 : 16;
    const char *root = string_at(params, "rootUri");
    if (root)
        s->root = uri_path(root);
    else if ((root = string_at(params, "rootPath")))
        s->root = strdup(root);
    set_from(s, surg_json_get(params, "initializationOptions"));
    msg m;
    if (!reply_start(&m, id))
        return;
    fprintf(m.f,
            "{\"capabilities\":{\"positionEncoding\":\"%s\","
            "\"textDocumentSync\":{\"openClose\":true,\"change\":1},"
            "\"hoverProvider\":true,"
            "\"completionProvider\":{\"triggerCharacters\":[\"\\\"\",\"/\",\".\"]},"
            "\"documentFormattingProvider\":true},"
            "\"serverInfo\":{\"name\":\"surg\",\"version\":\"%s\"}}",
            s->units == 8 ? "utf-8" : "utf-16", SURG_VERSION);
    reply_end(s, &m);
}

static void on_shutdown(server *s, const surg_json *id, const surg_json *params)
{
    (void)params;
    s->shutdown = true;
    reply_raw(s, id, "null");
}

static void on_did_open(server *s, const surg_json *id, const surg_json *params)
{
    (void)id;
    const surg_json *td = surg_json_get(params, "textDocument");
    const char *uri = string_at(td, "uri");
    const surg_json *text = surg_json_get(td, "text"), *ver = surg_json_get(td, "version");
    if (!uri || !text || text->kind != SURG_JSON_STRING)
        return;
    doc *d = find_doc(s, params);
    if (!d) {
        d = calloc(1, sizeof *d);
        if (!d || !(d->uri = strdup(uri)) || !(d->path = uri_path(uri))) {
            if (d)
                doc_free(d);
            return;
        }
        d->next = s->docs;
        s->docs = d;
    }
    char *t = strdup(text->string);
    if (!t)
        return;
    free(d->text);
    d->text = t;
    d->len = strlen(t);
    d->version = ver && ver->kind == SURG_JSON_NUMBER ? (long long)ver->number : 0;
    publish(s, d);
}

/* One change: the whole text, or a range of it replaced. */
static bool apply_change(server *s, doc *d, const surg_json *change)
{
    const surg_json *text = surg_json_get(change, "text"), *range = surg_json_get(change, "range");
    if (!text || text->kind != SURG_JSON_STRING)
        return false;
    size_t from = 0, to = d->len, n = strlen(text->string);
    if (range) {
        uint32_t l0, c0, l1, c1;
        surg_json start = {.kind = SURG_JSON_OBJECT, .n = 1, .items = surg_json_get(range, "start")};
        surg_json end = {.kind = SURG_JSON_OBJECT, .n = 1, .items = surg_json_get(range, "end")};
        if (!start.items || !end.items)
            return false;
        /* get_position reads "position": give it each end under that key */
        surg_json ps = *start.items, pe = *end.items;
        ps.key = pe.key = "position";
        start.items = &ps;
        end.items = &pe;
        if (!get_position(&start, &l0, &c0) || !get_position(&end, &l1, &c1))
            return false;
        from = offset_at(d, s->units, l0, c0);
        to = offset_at(d, s->units, l1, c1);
        if (to < from)
            return false;
    }
    if (d->len - (to - from) + n > SURG_RECIPE_MAX)
        return false;
    char *t = malloc(d->len - (to - from) + n + 1);
    if (!t)
        return false;
    memcpy(t, d->text, from);
    memcpy(t + from, text->string, n);
    memcpy(t + from + n, d->text + to, d->len - to);
    d->len = d->len - (to - from) + n;
    t[d->len] = '\0';
    free(d->text);
    d->text = t;
    return true;
}

static void on_did_change(server *s, const surg_json *id, const surg_json *params)
{
    (void)id;
    doc *d = find_doc(s, params);
    const surg_json *changes = surg_json_get(params, "contentChanges");
    if (!d || !changes || changes->kind != SURG_JSON_ARRAY)
        return;
    for (size_t i = 0; i < changes->n; i++)
        if (!apply_change(s, d, &changes->items[i]))
            break;
    const surg_json *ver = surg_json_get(surg_json_get(params, "textDocument"), "version");
    if (ver && ver->kind == SURG_JSON_NUMBER)
        d->version = (long long)ver->number;
    publish(s, d);
}

static void on_did_close(server *s, const surg_json *id, const surg_json *params)
{
    (void)id;
    doc *d = find_doc(s, params);
    for (doc **p = &s->docs; d && *p; p = &(*p)->next)
        if (*p == d) {
            *p = d->next;
            doc_free(d);
            break;
        }
    (void)params;
}

static void on_configuration(server *s, const surg_json *id, const surg_json *params)
{
    (void)id;
    set_from(s, surg_json_get(params, "settings"));
    for (doc *d = s->docs; d; d = d->next)
        publish(s, d);
}

/* The matches of `pat` in the state before its statement, for people. */
static void put_hover(FILE *f, const server *s, const doc *d, const surg_pattern_ref *ref)
{
    view v;
    if (!view_open(s, d, ref->stmt_start, &v)) {
        view_close(&v);
        fputs("no abstract state to match against: name one in a comment at the top, "
              "`# surg: from model.schema.json`, or in the setting `surg.from`", f);
        return;
    }
    char err[256];
    surg_pattern *p;
    if (surg_pattern_compile(ref->text, &p, err, sizeof err) != SURG_OK) {
        fprintf(f, "bad pattern: %s", err);
        view_close(&v);
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
        put_type(f, v.e[i].t);
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
    view_close(&v);
}

static void on_hover(server *s, const surg_json *id, const surg_json *params)
{
    doc *d = find_doc(s, params);
    uint32_t line, ch;
    if (!get_position(params, &line, &ch)) {
        reply_error(s, id, RPC_INVALID_PARAMS, "hover needs textDocument and position");
        return;
    }
    surg_sink quiet = {0};
    surg_recipe *r = NULL;
    surg_pattern_ref ref;
    if (!d || surg_recipe_parse(d->path, d->text, d->len, &quiet, &r) != SURG_OK ||
        !surg_recipe_pattern_at(r, offset_at(d, s->units, line, ch), &ref)) {
        surg_recipe_free(r);
        reply_raw(s, id, "null");
        return;
    }
    char *text = NULL;
    size_t n;
    FILE *t = open_memstream(&text, &n);
    if (t) {
        put_hover(t, s, d, &ref);
        fclose(t);
    }
    msg m;
    if (text && reply_start(&m, id)) {
        fputs("{\"contents\":{\"kind\":\"markdown\",\"value\":", m.f);
        put_json_str(m.f, text);
        fputs("},\"range\":", m.f);
        put_range(m.f, d, s->units, ref.start, ref.end);
        fputc('}', m.f);
        reply_end(s, &m);
    } else {
        reply_raw(s, id, "null");
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

static void put_name_item(FILE *f, const doc *d, int units, const entry *e, size_t from,
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
        put_type(dt, e->t);
        if (e->tied)
            fprintf(dt, " (tied to %s)", e->tied);
        fclose(dt);
    }
    fputs("{\"label\":", f);
    put_json_str(f, e->name);
    fputs(",\"kind\":5,\"detail\":", f);
    put_json_str(f, detail ? detail : "");
    fputs(",\"textEdit\":{\"range\":", f);
    put_range(f, d, units, from, to);
    fputs(",\"newText\":", f);
    put_json_str(f, text ? text : e->name);
    fputs("}}", f);
    free(text);
    free(detail);
}

/* Tensor names for the string the cursor is in, the state before its
 * statement; those that start with what the string holds so far. */
static void complete_names(FILE *f, const server *s, const doc *d, const surg_token *str,
                           size_t stmt_start, size_t at)
{
    view v;
    bool ok = view_open(s, d, stmt_start, &v);
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
    view_close(&v);
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

static void on_completion(server *s, const surg_json *id, const surg_json *params)
{
    doc *d = find_doc(s, params);
    uint32_t line, ch;
    if (!get_position(params, &line, &ch)) {
        reply_error(s, id, RPC_INVALID_PARAMS, "completion needs textDocument and position");
        return;
    }
    surg_token *t = NULL;
    size_t n = 0;
    if (!d || surg_recipe_tokens(d->text, d->len, &t, &n) != SURG_OK) {
        reply_raw(s, id, "null");
        return;
    }
    size_t at = offset_at(d, s->units, line, ch), stmt_start = 0, k = 0;
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
    msg m;
    if (reply_start(&m, id)) {
        if (in_string)
            complete_names(m.f, s, d, cur, stmt_start, at);
        else if (first_word)
            complete_keywords(m.f);
        else
            fputs("{\"isIncomplete\":false,\"items\":[]}", m.f);
        reply_end(s, &m);
    }
    free(t);
}

static void on_formatting(server *s, const surg_json *id, const surg_json *params)
{
    doc *d = find_doc(s, params);
    surg_sink quiet = {0};
    surg_recipe *r = NULL;
    char *text = NULL;
    if (!d || surg_recipe_parse(d->path, d->text, d->len, &quiet, &r) != SURG_OK ||
        !(text = surg_recipe_format(r))) {
        surg_recipe_free(r);
        reply_raw(s, id, "null"); /* a recipe with syntax errors is left as it is */
        return;
    }
    msg m;
    if (reply_start(&m, id)) {
        if (strlen(text) == d->len && memcmp(text, d->text, d->len) == 0) {
            fputs("[]", m.f);
        } else {
            fputs("[{\"range\":", m.f);
            put_range(m.f, d, s->units, 0, d->len);
            fputs(",\"newText\":", m.f);
            put_json_str(m.f, text);
            fputs("}]", m.f);
        }
        reply_end(s, &m);
    }
    free(text);
    surg_recipe_free(r);
}

static void on_nothing(server *s, const surg_json *id, const surg_json *params)
{
    (void)s, (void)id, (void)params;
}

typedef void method_fn(server *s, const surg_json *id, const surg_json *params);

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
    {"textDocument/hover", on_hover},
    {"textDocument/completion", on_completion},
    {"textDocument/formatting", on_formatting},
};

/* One message; -1 to go on, else the exit code (after `exit`). */
static int handle(server *s, const surg_json *m)
{
    if (m->kind != SURG_JSON_OBJECT) {
        reply_error(s, NULL, RPC_INVALID_REQUEST, "Invalid Request: a message is a JSON object");
        return -1;
    }
    const surg_json *method = surg_json_get(m, "method"), *id = surg_json_get(m, "id");
    const surg_json *params = surg_json_get(m, "params");
    if (id && id->kind != SURG_JSON_STRING && id->kind != SURG_JSON_NUMBER) {
        reply_error(s, NULL, RPC_INVALID_REQUEST, "Invalid Request: an id is a number or a string");
        return -1;
    }
    if (!method && id && (surg_json_get(m, "result") || surg_json_get(m, "error")))
        return -1; /* a response to a request of ours: we send none */
    if (!method || method->kind != SURG_JSON_STRING) {
        reply_error(s, id, RPC_INVALID_REQUEST, "Invalid Request: no method");
        return -1;
    }
    const char *name = method->string;
    if (strcmp(name, "exit") == 0)
        return s->shutdown ? 0 : 1;
    if (!s->initialized && strcmp(name, "initialize") != 0) {
        if (id)
            reply_error(s, id, RPC_NOT_INITIALIZED, "the server is not initialized yet");
        return -1;
    }
    if (s->shutdown) {
        if (id)
            reply_error(s, id, RPC_INVALID_REQUEST, "the server is shut down: only exit is left");
        return -1;
    }
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++)
        if (strcmp(methods[i].name, name) == 0) {
            methods[i].fn(s, id, params);
            return -1;
        }
    if (id)
        reply_error(s, id, RPC_METHOD_NOT_FOUND, "Method not found: %s", name);
    return -1;
}

static int serve(server *s, lsp_in *in)
{
    for (;;) {
        char *body;
        size_t len;
        const char *why = "";
        lsp_read_rc rc = lsp_read(in, &body, &len, &why);
        if (rc == LSP_EOF)
            return 1; /* the client went away without `exit` */
        if (rc == LSP_BAD_FRAME) {
            reply_error(s, NULL, RPC_PARSE_ERROR, "Parse error: %s; the stream cannot be followed "
                                                  "any further", why);
            return 1;
        }
        if (rc == LSP_TOO_LARGE || rc == LSP_NOMEM) {
            reply_error(s, NULL, RPC_INVALID_REQUEST,
                        "a message of %zu bytes is refused: the limit is %u bytes", len,
                        rc == LSP_TOO_LARGE ? LSP_MAX_MESSAGE : 0u);
            continue;
        }
        char err[300];
        surg_json *m = surg_json_parse(body, len, err, sizeof err);
        free(body);
        if (!m) {
            reply_error(s, NULL, RPC_PARSE_ERROR, "Parse error: %s", err);
            continue;
        }
        int exit_code = handle(s, m);
        surg_json_free(m);
        if (exit_code >= 0 || s->gone)
            return exit_code >= 0 ? exit_code : 1;
    }
}

int cmd_lsp(int argc, char **argv, diag_printer *dp)
{
    (void)dp;
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        fputs(help, stdout);
        return 0;
    }
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--stdio") != 0) /* what some clients add */
            return usage_error("lsp", "unexpected argument '%s'", argv[i]);
    signal(SIGPIPE, SIG_IGN); /* a client that went away: a failed write, then the end */
    server s = {.out = STDOUT_FILENO, .units = 16};
    lsp_in *in = calloc(1, sizeof *in);
    if (!in) {
        fputs("surg lsp: out of memory\n", stderr);
        return 2;
    }
    in->fd = STDIN_FILENO;
    int rc = serve(&s, in);
    free(in);
    while (s.docs) {
        doc *next = s.docs->next;
        doc_free(s.docs);
        s.docs = next;
    }
    free(s.root);
    free(s.from);
    return rc;
}
