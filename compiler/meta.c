/* meta.c: the `meta` statements (docs/language.md, "Metadata"): the
 * output's metadata as a state the recipe edits in order — set a key, drop
 * or keep keys by pattern — with values taken from strings, the input's
 * metadata, JSON files (read here, at compile time, strictly and bounded)
 * and the values a format keeps at paths. The edits travel in the plan's
 * records (runtime/plan.h); plan_meta.c applies them to each output. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/diag.h"
#include "support/json.h"
#include "support/readfile.h"
#include "support/suggest.h"
#include "support/utf8.h"
#include "compiler/lower.h"
#include "runtime/format.h"
#include "runtime/msgpack.h"
#include "runtime/outpath.h"
#include "runtime/torch.h"

/* One JSON file at most this big; all that a recipe reads, and all the
 * bytes its values make (str() of a JSON value), at most the second. */
#define MD_JSON_MAX (1u << 20)
#define MD_MADE_MAX (64u << 20)
/* Keys listed in a note; keys of a JSON object looked at for "did you mean". */
#define MD_SHOWN 8
#define MD_GUESS 4096

typedef struct md_entry {
    const char *key;
    const char *value; /* NULL: dropped */
    bool changed;      /* set or dropped by the recipe */
} md_entry;

typedef struct md_file {
    const char *path; /* as resolved */
    char *text;
    size_t len;
} md_file;

struct lw_meta_state {
    const surg_ckpt *in;
    md_entry *e;
    size_t n, cap;
    md_file *files;
    size_t n_files;
    uint64_t read, made;
};

/* What a value expression gives: a string, or another JSON value as its
 * compact text (a number, true, null, [...], {...}), or a value with no
 * text (msgpack bytes). */
typedef enum md_kind { MD_STRING, MD_NUMBER, MD_BOOL, MD_NULL, MD_ARRAY, MD_OBJECT, MD_OTHER } md_kind;

typedef struct md_value {
    md_kind kind;
    const char *text;
    const char *other; /* MD_OTHER: what it is ("msgpack bytes") */
} md_value;

static const char *kind_name(md_kind k)
{
    static const char *names[] = {"a string", "a number", "a boolean", "null",
                                  "an array", "an object", NULL};
    return names[k];
}

/* ---- the state -------------------------------------------------------- */

/* Why a key is surg's own, or NULL: records surg writes from the state
 * itself, and the mark of its sharded outputs. */
static const char *reserved(const char *key)
{
    if (strcmp(key, "surg.ties") == 0)
        return "surg's record of the tied names (tie, untie)";
    if (strcmp(key, "surg.lora") == 0)
        return "surg's record of the LoRA adapters (init-lora)";
    if (strcmp(key, OUTP_MARK_KEY) == 0)
        return "the mark surg puts on the files of its sharded outputs";
    if (fmt_paths_meta(key))
        return "where a format keeps its values that are not tensors (rename, drop and keep "
               "move them)";
    return NULL;
}

static md_entry *find(struct lw_meta_state *m, const char *key)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->e[i].key, key) == 0)
            return &m->e[i];
    return NULL;
}

static bool add(lw *L, const char *key, const char *value, bool changed)
{
    struct lw_meta_state *m = L->meta;
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        md_entry *e = realloc(m->e, cap * sizeof *e);
        if (!e) {
            L->nomem = true;
            return false;
        }
        m->e = e;
        m->cap = cap;
    }
    m->e[m->n++] = (md_entry){key, value, changed};
    return true;
}

void lw_meta_load(lw *L, const surg_ckpt *in)
{
    struct lw_meta_state *m = ar_alloc(L->ar, sizeof *m);
    if (!m) {
        L->nomem = true;
        return;
    }
    *m = (struct lw_meta_state){.in = in};
    L->meta = m;
    for (size_t i = 0; i < surg_ckpt_meta_count(in) && !L->nomem; i++) {
        const surg_meta_entry *e = surg_ckpt_meta(in, i);
        if (!reserved(e->key))
            add(L, e->key, e->value, false);
    }
    /* A safetensors output has "format" whatever the input says: the writer
     * adds "pt" where it is missing, so a recipe may drop it too. */
    if (!L->nomem && !find(m, "format"))
        add(L, "format", "pt", false);
}

void lw_meta_free(lw *L)
{
    if (!L->meta)
        return;
    free(L->meta->e);
    free(L->meta->files);
}

static int edit_cmp(const void *a, const void *b)
{
    return strcmp(((const surg_meta_entry *)a)->key, ((const surg_meta_entry *)b)->key);
}

bool lw_meta_finish(lw *L, arena *ar, surg_meta_entry **edits, size_t *n_edits,
                    const char ***files, size_t *n_files)
{
    struct lw_meta_state *m = L->meta;
    size_t n = 0;
    *edits = ar_array(ar, (m ? m->n : 0) + 1, sizeof **edits);
    *files = ar_array(ar, (m ? m->n_files : 0) + 1, sizeof **files);
    if (!*edits || !*files)
        return false;
    for (size_t i = 0; m && i < m->n; i++)
        if (m->e[i].changed)
            (*edits)[n++] = (surg_meta_entry){m->e[i].key, m->e[i].value};
    qsort(*edits, n, sizeof **edits, edit_cmp);
    *n_edits = n;
    for (size_t i = 0; m && i < m->n_files; i++)
        (*files)[i] = m->files[i].path;
    *n_files = m ? m->n_files : 0;
    return true;
}

/* ---- notes: the keys there are ----------------------------------------- */

/* "WHAT: "a", "b", ... and 3 more" of the n keys in `keys`, into `b`; the
 * closest one to `word` (NULL: none) as a first note into `guess`. The
 * notes go into `notes`; returns how many. */
static size_t keys_notes(buf *b, buf *guess, const char *word, const char *const *keys, size_t n,
                         const char *what, const char **notes)
{
    size_t k = 0;
    const char *close = word ? sg_closest(word, keys, n < MD_GUESS ? n : MD_GUESS) : NULL;
    if (close) {
        buf_printf(guess, "did you mean \"%s\"?", close);
        notes[k++] = guess->failed ? "" : guess->data;
    }
    buf_printf(b, "%s: %s", what, n ? "" : "none");
    for (size_t i = 0; i < n && i < MD_SHOWN; i++)
        buf_printf(b, "%s\"%s\"", i ? ", " : "", keys[i]);
    if (n > MD_SHOWN)
        buf_printf(b, " and %zu more", n - MD_SHOWN);
    notes[k++] = b->failed ? "" : b->data;
    return k;
}

/* ---- the input's metadata ----------------------------------------------- */

/* The metadata entry `key` of the input named `name` (NULL: the only one),
 * as its file holds it, in *value; false after an error at `at`. The one
 * place an input's metadata is looked up by name: an input mounted under
 * "NAME/" is named NAME. */
static bool input_meta(lw *L, const char *name, const char *key, src_span at,
                       const char **value)
{
    const surg_ckpt *in = L->meta->in, *part = NULL;
    const char *prefix, *names[64];
    size_t n = 0;
    buf b;
    buf_init(&b);
    for (size_t i = 0; (part = surg_ckpt_part_at(in, i, &prefix)) != NULL; i++) {
        size_t len = strlen(prefix);
        if (i < 64 && !(names[i] = ar_strndup(L->ar, prefix, len ? len - 1 : 0)))
            return !(L->nomem = true); /* prefixes end with '/': the name is the rest */
        n++;
    }
    part = NULL;
    for (size_t i = 0; name && i < n && i < 64; i++)
        if (strcmp(names[i], name) == 0)
            part = surg_ckpt_part_at(in, i, &prefix);
    if (!name && n == 1)
        part = in;
    if (!part) {
        buf_puts(&b, "the inputs: ");
        for (size_t i = 0; i < n && i < 64; i++)
            buf_printf(&b, "%s\"%s\"", i ? ", " : "", names[i]);
        const char *notes[] = {b.failed ? "" : b.data};
        if (!name)
            lw_error(L, at, "meta-input", notes, 1,
                     "there are %zu inputs: say whose metadata, as in input(\"%s\", \"%s\")", n,
                     names[0], key);
        else if (n == 1 && !*names[0])
            lw_error(L, at, "meta-input", NULL, 0,
                     "there is one input, with no name: write input(\"%s\")", key);
        else
            lw_error(L, at, "meta-input", notes, 1, "there is no input named \"%s\"", name);
        buf_free(&b);
        return false;
    }
    size_t count = surg_ckpt_meta_count(part);
    for (size_t i = 0; i < count; i++)
        if (strcmp(surg_ckpt_meta(part, i)->key, key) == 0) {
            *value = surg_ckpt_meta(part, i)->value;
            buf_free(&b);
            return true;
        }
    const char **keys = malloc((count ? count : 1) * sizeof *keys);
    if (!keys) {
        L->nomem = true;
        buf_free(&b);
        return false;
    }
    for (size_t i = 0; i < count; i++)
        keys[i] = surg_ckpt_meta(part, i)->key;
    buf guess;
    buf_init(&guess);
    const char *notes[2];
    size_t k = keys_notes(&b, &guess, key, keys, count, "its keys", notes);
    lw_error(L, at, "meta-input", notes, k, "the metadata of %s has no key \"%s\"",
             surg_ckpt_path(part), key);
    free(keys);
    buf_free(&guess);
    buf_free(&b);
    return false;
}

/* ---- JSON files ---------------------------------------------------------- */

/* The path of a file a recipe names: an absolute path as it is, a relative
 * one from the recipe's directory. */
static const char *resolve(lw *L, const char *file)
{
    const char *slash = strrchr(L->src->path, '/');
    if (file[0] == '/' || !slash)
        return file;
    size_t d = (size_t)(slash - L->src->path) + 1, n = strlen(file);
    char *p = ar_alloc(L->ar, d + n + 1);
    if (!p) {
        L->nomem = true;
        return NULL;
    }
    memcpy(p, L->src->path, d);
    memcpy(p + d, file, n + 1);
    return p;
}

/* Keeps the first error a reading function reports, to say it at a span of
 * the recipe. */
typedef struct first_error {
    char msg[512];
    bool said;
} first_error;

static void keep_first(const surg_diag *d, void *user)
{
    first_error *f = user;
    if (f->said || d->severity != SURG_ERROR)
        return;
    snprintf(f->msg, sizeof f->msg, "%s", d->message);
    f->said = true;
}

static void line_col(const char *s, size_t at, size_t *line, size_t *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < at; i++) {
        if (s[i] == '\n') {
            ++*line;
            *col = 1;
        } else if (((unsigned char)s[i] & 0xC0) != 0x80) {
            ++*col;
        }
    }
}

/* The file at `path` (as it is), read once per compilation and checked to
 * be strict JSON; errors at `at` with `code`. */
static const md_file *json_file_at(lw *L, const char *path, src_span at, const char *code)
{
    struct lw_meta_state *m = L->meta;
    for (size_t i = 0; i < m->n_files; i++)
        if (strcmp(m->files[i].path, path) == 0)
            return m->files[i].text ? &m->files[i] : NULL;
    md_file *f = realloc(m->files, (m->n_files + 1) * sizeof *f);
    if (!f) {
        L->nomem = true;
        return NULL;
    }
    m->files = f;
    f = &m->files[m->n_files++];
    *f = (md_file){path, NULL, 0}; /* a file that failed is said once */
    first_error fe = {{0}, false};
    surg_sink quiet = {keep_first, &fe, 0, 0};
    char *text;
    size_t len;
    surg_status st = rf_read_into(L->ar, &quiet, path, MD_JSON_MAX, &text, &len);
    if (st == SURG_ENOMEM) {
        L->nomem = true;
        return NULL;
    }
    if (st) {
        lw_error(L, at, code, NULL, 0, "cannot read \"%s\": %s", path,
                 fe.said ? fe.msg : "it could not be read");
        return NULL;
    }
    if (m->read + len > MD_MADE_MAX) {
        lw_error(L, at, code, NULL, 0,
                 "cannot read \"%s\": the JSON files a recipe reads hold at most %u MiB in all",
                 path, MD_MADE_MAX >> 20);
        return NULL;
    }
    m->read += len;
    size_t bad;
    if (!utf8_valid((const unsigned char *)text, len, &bad)) {
        size_t line, col;
        line_col(text, bad, &line, &col);
        lw_error(L, at, code, NULL, 0, "\"%s\" is not UTF-8 (line %zu, column %zu)",
                 path, line, col);
        return NULL;
    }
    json_reader j;
    json_init(&j, text, len, L->ar);
    if (!json_skip(&j) || !json_end(&j)) {
        size_t line, col;
        line_col(text, j.err_at, &line, &col);
        lw_error(L, at, code, NULL, 0, "\"%s\" is not JSON: line %zu, column %zu: %s",
                 path, line, col, j.failed ? j.err : "text after the value");
        return NULL;
    }
    f->text = text;
    f->len = len;
    return f;
}

const char *lw_json_file(lw *L, const char *path, src_span at, const char *code, size_t *len)
{
    const md_file *f = L->meta ? json_file_at(L, path, at, code) : NULL;
    if (f)
        *len = f->len;
    return f ? f->text : NULL;
}

/* json()'s FILE: from the recipe's directory. */
static const md_file *json_file(lw *L, const char *file, src_span at)
{
    const char *path = resolve(L, file);
    return path ? json_file_at(L, path, at, "meta-json") : NULL;
}

/* The JSON text from `s` to `e` without the white space between tokens. */
static const char *compact(lw *L, const char *s, const char *e)
{
    char *out = ar_alloc(L->ar, (size_t)(e - s) + 1), *w = out;
    if (!out) {
        L->nomem = true;
        return NULL;
    }
    bool in_string = false;
    for (; s < e; s++) {
        if (in_string && *s == '\\') {
            *w++ = *s++;
        } else if (*s == '"') {
            in_string = !in_string;
        } else if (!in_string && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')) {
            continue;
        }
        *w++ = *s;
    }
    *w = '\0';
    return out;
}

/* The kind of the JSON value that starts with c. */
static md_kind json_kind(int c)
{
    switch (c) {
    case '"': return MD_STRING;
    case '{': return MD_OBJECT;
    case '[': return MD_ARRAY;
    case 't':
    case 'f': return MD_BOOL;
    case 'n': return MD_NULL;
    default: return MD_NUMBER;
    }
}

/* One step down: to the member `key` of an object, or the element `index`
 * of an array. Returns 1 found, 0 not there (an error said), -1 out of memory. */
static int json_step(lw *L, json_reader *j, const md_file *f, const ast_expr *seg,
                     const char *where)
{
    bool by_key = seg->kind == EX_STRING;
    int c = json_peek(j);
    if (c != (by_key ? '{' : '[')) {
        lw_error(L, seg->span, "meta-json-path", NULL, 0, "%s in \"%s\" is %s, not %s", where,
                 f->path, kind_name(json_kind(c)), by_key ? "an object" : "an array");
        return 0;
    }
    json_open(j, (char)c);
    const char **keys = NULL;
    size_t n = 0, cap = 0;
    int more = json_first(j, by_key ? '}' : ']');
    for (; more > 0; more = json_more(j, by_key ? '}' : ']'), n++) {
        const char *key = NULL;
        if (by_key && !json_key(j, &key))
            break;
        if (by_key ? strcmp(key, seg->u.string) == 0 : (double)n == seg->u.number.value) {
            free(keys);
            return 1;
        }
        if (by_key && n < MD_GUESS) {
            if (n == cap) {
                const char **k = realloc(keys, (cap = cap ? cap * 2 : 16) * sizeof *k);
                if (!k) {
                    free(keys);
                    return -1;
                }
                keys = k;
            }
            keys[n] = key;
        }
        json_skip(j);
    }
    if (by_key) {
        buf b, guess;
        buf_init(&b);
        buf_init(&guess);
        const char *notes[2];
        size_t k = keys_notes(&b, &guess, seg->u.string, keys, n < MD_GUESS ? n : MD_GUESS,
                              "its keys", notes);
        lw_error(L, seg->span, "meta-json-path", notes, k, "%s in \"%s\" has no key \"%s\"",
                 where, f->path, seg->u.string);
        buf_free(&b);
        buf_free(&guess);
    } else {
        lw_error(L, seg->span, "meta-json-path", NULL, 0,
                 "%s in \"%s\" has %zu element%s: there is no element %s", where, f->path, n,
                 n == 1 ? "" : "s", seg->u.number.text);
    }
    free(keys);
    return 0;
}

/* json("FILE", KEY-OR-INDEX, ...): the value at that path of the file. */
static bool json_value(lw *L, const ast_expr *call, md_value *out)
{
    const ast_arg *a = call->u.call.args;
    const md_file *f = json_file(L, a->value->u.string, a->value->span);
    if (!f)
        return false;
    json_reader j;
    json_init(&j, f->text, f->len, L->ar);
    buf where;
    buf_init(&where);
    buf_puts(&where, "the top level");
    bool first = true;
    for (a = a->next; a; a = a->next) {
        int r = json_step(L, &j, f, a->value, where.failed ? "a value" : where.data);
        if (r <= 0) {
            L->nomem |= r < 0;
            buf_free(&where);
            return false;
        }
        if (first)
            where.len = 0;
        first = false;
        if (a->value->kind == EX_STRING)
            buf_printf(&where, "%s\"%s\"", where.len ? "/" : "", a->value->u.string);
        else
            buf_printf(&where, "[%s]", a->value->u.number.text);
    }
    buf_free(&where);
    int c = json_peek(&j);
    out->kind = json_kind(c);
    if (out->kind == MD_STRING)
        return json_string(&j, &out->text) || (L->nomem = true, false);
    size_t start = j.i;
    json_skip(&j);
    out->text = compact(L, f->text + start, f->text + j.i);
    return out->text != NULL;
}

/* ---- values a format keeps at paths ---------------------------------------- */

/* The msgpack value whose bytes are written in hex (a leaf of
 * "msgpack.tree": nil, a boolean, a number, a string; anything else has no
 * text). False when out of memory. */
static bool msgpack_value(lw *L, const char *hex, md_value *out)
{
    const unsigned char *p;
    size_t n;
    int ok = mp_tree_value(hex, L->ar, &p, &n);
    if (ok < 0)
        return !(L->nomem = true);
    *out = (md_value){MD_OTHER, NULL, "msgpack bytes surg cannot read"};
    if (!n)
        return true;
    unsigned char t = p[0];
    uint64_t u = 0;
    size_t w = 0; /* bytes of a number or a string's length after the tag */
    buf b;
    buf_init(&b);
    if (t == 0xc0) {
        *out = (md_value){MD_NULL, "null", NULL};
        return true;
    }
    if (n == 1 && (t == 0x80 || t == 0x90)) { /* an empty map (an EmptyState), an empty list */
        *out = t == 0x80 ? (md_value){MD_OBJECT, "{}", NULL} : (md_value){MD_ARRAY, "[]", NULL};
        return true;
    }
    if (t == 0xc2 || t == 0xc3) {
        *out = (md_value){MD_BOOL, t == 0xc3 ? "true" : "false", NULL};
        return true;
    }
    size_t strlen_at = 0, str_len = 0;
    if (t <= 0x7f) {
        buf_printf(&b, "%u", t);
    } else if (t >= 0xe0) {
        buf_printf(&b, "%d", (int)t - 256);
    } else if (t >= 0xcc && t <= 0xd3) {
        w = (size_t)1 << ((t - 0xcc) & 3);
        if (n != 1 + w)
            return true;
        for (size_t i = 0; i < w; i++)
            u = u << 8 | p[1 + i];
        if (t <= 0xcf) {
            buf_printf(&b, "%llu", (unsigned long long)u);
        } else {
            int64_t v = w == 8 ? (int64_t)u : (int64_t)(u ^ (1ull << (8 * w - 1))) -
                                                  (int64_t)(1ull << (8 * w - 1));
            buf_printf(&b, "%lld", (long long)v);
        }
    } else if (t == 0xca || t == 0xcb) {
        w = t == 0xca ? 4 : 8;
        if (n != 1 + w)
            return true;
        for (size_t i = 0; i < w; i++)
            u = u << 8 | p[1 + i];
        if (w == 4) {
            uint32_t v32 = (uint32_t)u;
            float f;
            memcpy(&f, &v32, 4);
            buf_float(&b, f);
        } else {
            double d;
            memcpy(&d, &u, 8);
            buf_double(&b, d);
        }
    } else if ((t & 0xe0) == 0xa0 || (t >= 0xd9 && t <= 0xdb)) {
        strlen_at = (t & 0xe0) == 0xa0 ? 0 : (size_t)1 << (t - 0xd9);
        if (n < 1 + strlen_at)
            return true;
        str_len = (t & 0xe0) == 0xa0 ? (size_t)(t & 0x1f) : 0;
        for (size_t i = 0; i < strlen_at; i++)
            str_len = str_len << 8 | p[1 + i];
        if (n != 1 + strlen_at + str_len || memchr(p + 1 + strlen_at, 0, str_len) ||
            !utf8_valid(p + 1 + strlen_at, str_len, NULL))
            return true;
        char *s = ar_strndup(L->ar, (const char *)p + 1 + strlen_at, str_len);
        if (!s)
            return !(L->nomem = true);
        *out = (md_value){MD_STRING, s, NULL};
        return true;
    } else {
        out->other = t == 0xc4 || t == 0xc5 || t == 0xc6 ? "msgpack bytes"
                     : (t & 0xf0) == 0x80 || t == 0xde || t == 0xdf ? "a msgpack map"
                     : (t & 0xf0) == 0x90 || t == 0xdc || t == 0xdd ? "a msgpack array"
                                                                     : "a msgpack extension";
        return true;
    }
    if (b.failed || !(out->text = ar_strdup(L->ar, b.data)))
        L->nomem = true;
    out->kind = MD_NUMBER;
    out->other = NULL;
    buf_free(&b);
    return !L->nomem;
}

/* The value a torch input keeps (PT_VALUES_KEY, runtime/torch.h): the JSON
 * text of None, a bool, an int, a float or a string. False when out of
 * memory. */
static bool torch_value(lw *L, const char *text, md_value *out)
{
    *out = (md_value){MD_OTHER, NULL, "a value surg cannot read"};
    if (strcmp(text, "null") == 0) {
        *out = (md_value){MD_NULL, "null", NULL};
    } else if (strcmp(text, "true") == 0 || strcmp(text, "false") == 0) {
        *out = (md_value){MD_BOOL, text, NULL};
    } else if (text[0] == '"') {
        json_reader j;
        const char *s;
        json_init(&j, text, strlen(text), L->ar);
        if (json_string(&j, &s) && json_end(&j))
            *out = (md_value){MD_STRING, s, NULL};
        else if (!j.failed)
            return !(L->nomem = true);
    } else if (text[0] == '-' || (text[0] >= '0' && text[0] <= '9')) {
        *out = (md_value){MD_NUMBER, text, NULL};
    }
    return true;
}

/* value("PATH"): the value a format keeps at PATH of the state (renamed as
 * earlier statements said). */
static bool path_value(lw *L, const ast_expr *arg, md_value *out)
{
    const char *path = arg->u.string;
    for (size_t i = 0; i < L->n_paths; i++) {
        const lw_path *x = &L->paths[i];
        if (!x->path || strcmp(x->path, path) != 0)
            continue;
        if (x->tensor) {
            lw_error(L, arg->span, "meta-value-path", NULL, 0,
                     "\"%s\" is a tensor, not a value: metadata holds strings", path);
            return false;
        }
        if (strcmp(x->key, PT_VALUES_KEY) == 0)
            return torch_value(L, x->value, out);
        if (!msgpack_value(L, x->value, out))
            return false;
        return true;
    }
    if (state_find(&L->st, path) != STATE_NONE) { /* a tensor no format's paths name */
        lw_error(L, arg->span, "meta-value-path", NULL, 0,
                 "\"%s\" is a tensor, not a value: metadata holds strings", path);
        return false;
    }
    const char **keys = malloc((L->n_paths ? L->n_paths : 1) * sizeof *keys);
    if (!keys)
        return !(L->nomem = true);
    size_t n = 0;
    for (size_t i = 0; i < L->n_paths; i++)
        if (L->paths[i].path && !L->paths[i].tensor)
            keys[n++] = L->paths[i].path;
    buf b, guess;
    buf_init(&b);
    buf_init(&guess);
    const char *notes[2];
    size_t k = n ? keys_notes(&b, &guess, path, keys, n, "the values are at", notes) : 0;
    if (!n)
        notes[k++] = "values that are not tensors are kept by a Flax .msgpack input and a "
                     "PyTorch one (a step, an epoch, a learning rate, ...)";
    lw_error(L, arg->span, "meta-value-path", notes, k, "there is no value at \"%s\"", path);
    buf_free(&b);
    buf_free(&guess);
    free(keys);
    return false;
}

/* ---- value expressions --------------------------------------------------- */

static size_t n_args(const ast_expr *call)
{
    size_t n = 0;
    for (const ast_arg *a = call->u.call.args; a; a = a->next)
        n++;
    return n;
}

/* Every argument a string (or, from `numbers_from` on, a string or a whole
 * number), none named. */
static bool check_args(lw *L, const ast_expr *call, size_t lo, size_t hi, size_t numbers_from,
                       const char *usage)
{
    size_t n = n_args(call), i = 0;
    const char *notes[] = {usage};
    if (n < lo || n > hi) {
        lw_error(L, call->span, "meta-value", notes, 1, "%s() takes %s", call->u.call.name,
                 lo == hi ? (lo == 1 ? "one argument" : "two arguments")
                 : hi == 2 ? "one or two arguments"
                           : "a file and the keys or indices to a value in it");
        return false;
    }
    for (const ast_arg *a = call->u.call.args; a; a = a->next, i++) {
        const ast_expr *v = a->value;
        if (a->name) {
            lw_error(L, a->name_span, "meta-value", notes, 1,
                     "%s() takes no named arguments", call->u.call.name);
            return false;
        }
        if (!v)
            return false;
        bool index = i >= numbers_from && v->kind == EX_NUMBER;
        if (index && (strpbrk(v->u.number.text, ".eE") || v->u.number.value > 1e15)) {
            lw_error(L, v->span, "meta-value", notes, 1,
                     "an index into a JSON array is a whole number, not %s", v->u.number.text);
            return false;
        }
        if (v->kind != EX_STRING && !index) {
            lw_error(L, v->span, "meta-value", notes, 1, "%s() takes %s here",
                     call->u.call.name, i >= numbers_from ? "a string or a whole number"
                                                          : "a string");
            return false;
        }
    }
    return true;
}

static bool eval(lw *L, const ast_expr *e, md_value *out);

static bool eval_call(lw *L, const ast_expr *e, md_value *out)
{
    const char *f = e->u.call.name;
    if (strcmp(f, "input") == 0) {
        if (!check_args(L, e, 1, 2, 2, "input(\"KEY\") or input(\"INPUT\", \"KEY\")"))
            return false;
        const ast_arg *a = e->u.call.args;
        const char *name = a->next ? a->value->u.string : NULL;
        const ast_expr *key = a->next ? a->next->value : a->value;
        out->kind = MD_STRING;
        return input_meta(L, name, key->u.string, key->span, &out->text);
    }
    if (strcmp(f, "json") == 0)
        return check_args(L, e, 1, SIZE_MAX, 1, "json(\"FILE\", \"KEY\", 0, ...)") &&
               json_value(L, e, out);
    if (strcmp(f, "value") == 0)
        return check_args(L, e, 1, 1, 1, "value(\"PATH\")") &&
               path_value(L, e->u.call.args->value, out);
    if (strcmp(f, "str") == 0) {
        const char *notes[] = {"str(VALUE)"};
        if (n_args(e) != 1 || e->u.call.args->name) {
            lw_error(L, e->span, "meta-value", notes, 1, "str() takes one argument");
            return false;
        }
        if (!eval(L, e->u.call.args->value, out))
            return false;
        if (out->kind == MD_OTHER) {
            lw_error(L, e->u.call.args->value->span, "meta-type", NULL, 0,
                     "this value is %s, which has no text", out->other);
            return false;
        }
        out->kind = MD_STRING;
        return true;
    }
    static const char *const names[] = {"input", "json", "value", "str"};
    const char *close = sg_closest(f, names, 4);
    char note[64];
    snprintf(note, sizeof note, "did you mean '%s'?", close ? close : "");
    const char *notes[] = {note, "a metadata value is a string, input(...), json(...), "
                                 "value(...) or str(...)"};
    lw_error(L, e->u.call.name_span, "meta-value", notes + !close, 2 - !close,
             "unknown function '%s' for a metadata value", f);
    return false;
}

static bool eval(lw *L, const ast_expr *e, md_value *out)
{
    *out = (md_value){MD_STRING, NULL, NULL};
    if (!e)
        return false;
    if (e->kind == EX_STRING) {
        out->text = e->u.string;
        return true;
    }
    if (e->kind == EX_CALL)
        return eval_call(L, e, out);
    const char *notes[] = {"a metadata value is a string, input(...), json(...), value(...) "
                           "or str(...)"};
    if (e->kind == EX_NUMBER || (e->kind == EX_NEG && e->u.operand &&
                                 e->u.operand->kind == EX_NUMBER)) {
        lw_error(L, e->span, "meta-type", NULL, 0,
                 "metadata values are strings (safetensors' __metadata__ maps strings to "
                 "strings): write \"%.*s\"",
                 (int)(e->span.end - e->span.start), L->src->text + e->span.start);
        return false;
    }
    lw_error(L, e->span, "meta-value", notes, 1, "this expression is no metadata value");
    return false;
}

/* ---- the statements --------------------------------------------------------- */

static void short_text(buf *b, const char *s)
{
    size_t n = strlen(s);
    if (n <= 40)
        buf_puts(b, s);
    else
        buf_printf(b, "%.37s...", s);
}

void lw_meta_set(lw *L, const ast_stmt *s)
{
    const ast_string *k = s->patterns;
    const char *why = reserved(k->text);
    if (!*k->text) {
        lw_error(L, k->span, "meta-key", NULL, 0, "a metadata key cannot be empty");
        return;
    }
    if (why) {
        lw_error(L, k->span, "meta-key", NULL, 0, "\"%s\" is %s: a recipe cannot set it",
                 k->text, why);
        return;
    }
    md_value v;
    if (!eval(L, s->expr, &v))
        return;
    if (v.kind != MD_STRING) {
        buf b, note;
        buf_init(&b);
        buf_init(&note);
        if (v.text)
            short_text(&b, v.text);
        int len = (int)(s->expr->span.end - s->expr->span.start);
        buf_printf(&note, "str(%.*s) keeps its JSON text", len > 200 ? 200 : len,
                   L->src->text + s->expr->span.start);
        const char *notes[] = {note.failed ? "" : note.data};
        if (v.kind == MD_OTHER)
            lw_error(L, s->expr->span, "meta-type", NULL, 0,
                     "this value is %s, not a string: metadata holds strings", v.other);
        else
            lw_error(L, s->expr->span, "meta-type", notes, 1,
                     "this value is %s (%s), not a string: safetensors' __metadata__ maps "
                     "strings to strings",
                     kind_name(v.kind), b.failed ? "" : b.data);
        buf_free(&b);
        buf_free(&note);
        return;
    }
    struct lw_meta_state *m = L->meta;
    size_t made = strlen(v.text) + strlen(k->text);
    if (m->made + made > MD_MADE_MAX) {
        lw_error(L, s->span, "meta-too-large", NULL, 0,
                 "the metadata the recipe sets holds at most %u MiB in all",
                 MD_MADE_MAX >> 20);
        return;
    }
    m->made += made;
    md_entry *e = find(m, k->text);
    if (e) {
        e->value = v.text;
        e->changed = true;
    } else {
        add(L, k->text, v.text, true);
    }
}

/* Marks in `hit` the present keys each pattern matches; false after an
 * error (a bad pattern, one that matches no key and is not optional). */
static bool match_keys(lw *L, const ast_stmt *s, uint8_t *hit)
{
    struct lw_meta_state *m = L->meta;
    bool ok = true;
    for (const ast_string *p = s->patterns; p; p = p->next) {
        gl_pattern pat;
        char err[256];
        if (!gl_compile(L->ar, p->text, &pat, err, sizeof err)) {
            lw_error(L, p->span, "pattern", NULL, 0, "bad pattern \"%s\": %s", p->text, err);
            ok = false;
            continue;
        }
        gl_span caps[GL_MAX_CAPTURES + 1];
        size_t found = 0;
        for (size_t i = 0; i < m->n; i++) {
            if (!m->e[i].value)
                continue;
            int r = gl_match(&pat, m->e[i].key, (uint32_t)strlen(m->e[i].key), caps,
                             &L->scratch);
            if (r < 0)
                return !(L->nomem = true);
            if (r) {
                hit[i] = 1;
                found++;
            }
        }
        if (found || p->optional)
            continue;
        ok = false;
        const char **keys = malloc((m->n ? m->n : 1) * sizeof *keys);
        if (!keys)
            return !(L->nomem = true);
        size_t n = 0;
        for (size_t i = 0; i < m->n; i++)
            if (m->e[i].value)
                keys[n++] = m->e[i].key;
        buf b, guess;
        buf_init(&b);
        buf_init(&guess);
        const char *notes[3];
        size_t k = keys_notes(&b, &guess, pat.literal ? p->text : NULL, keys, n,
                              "the metadata's keys", notes);
        const char *why = reserved(p->text);
        char own[200];
        if (why) { /* written from the state itself: said once, here */
            snprintf(own, sizeof own, "\"%s\" is %s", p->text, why);
            notes[k++] = own;
        }
        lw_error(L, p->span, "meta-none", notes, k, "pattern \"%s\" matches no metadata key",
                 p->text);
        free(keys);
        buf_free(&b);
        buf_free(&guess);
    }
    return ok;
}

static void drop_or_keep(lw *L, const ast_stmt *s, bool keep)
{
    struct lw_meta_state *m = L->meta;
    uint8_t *hit = calloc(m->n ? m->n : 1, 1);
    if (!hit) {
        L->nomem = true;
        return;
    }
    if (match_keys(L, s, hit))
        for (size_t i = 0; i < m->n; i++)
            if (m->e[i].value && (hit[i] != 0) != keep) {
                m->e[i].value = NULL;
                m->e[i].changed = true;
            }
    free(hit);
}

void lw_meta_drop(lw *L, const ast_stmt *s) { drop_or_keep(L, s, false); }
void lw_meta_keep(lw *L, const ast_stmt *s) { drop_or_keep(L, s, true); }
