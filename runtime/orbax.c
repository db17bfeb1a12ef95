/* orbax.c: the reader of checkpoints Orbax wrote (format.h), which are
 * directories: a PyTree item (`_METADATA` naming the tree, its arrays in an
 * OCDBT database or in one zarr directory each, or, in old checkpoints, in
 * an aggregate msgpack file `checkpoint`), or a step of a CheckpointManager
 * whose items are such directories. One table per part it reads: the
 * directory itself (what it read, the values that are not arrays), then
 * each item's arrays, named by the tree with the item's name first. The
 * arrays of a store are decoded on demand by the zarr reader (zarr.h); the
 * aggregate file is read by the msgpack reader. Paths inside the
 * checkpoint (PLACEHOLDER names, array names) never leave its directory. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/buf.h"
#include "support/diag.h"
#include "runtime/format.h"
#include "runtime/kvstore.h"
#include "runtime/msgpack.h"
#include "runtime/orbax_write.h"
#include "runtime/zarr.h"
#include "support/json.h"
#include "support/natural.h"
#include "support/readfile.h"
#include "support/strsort.h"
#include "support/tensor_name.h"
#include "support/utf8.h"

#define OB_MAX_JSON (64u << 20)     /* bytes of _METADATA, _CHECKPOINT_METADATA, _strings.json */
#define OB_MAX_ENTRIES (1u << 16)   /* names of one directory looked at */
#define OB_MAX_LEAF_BYTES (64u << 10) /* values that are not arrays, kept (as msgpack.c) */
#define OB_MAX_RANK 64
#define OB_TMP_MARK ".orbax-checkpoint-tmp-"
enum { OB_SHOWN = 3 };

/* ---- the directory's files ------------------------------------------------ */

/* "dir/name" in the arena. */
static char *join(arena *ar, const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    bool slash = a && dir[a - 1] != '/';
    char *p = ar_alloc(ar, a + b + 2);
    if (p) {
        memcpy(p, dir, a);
        if (slash)
            p[a++] = '/';
        memcpy(p + a, name, b + 1);
    }
    return p;
}

/* Does dir/name exist, and is it a regular file (want 'f'), a directory
 * ('d') or either ('?')? Links are followed. */
static bool has(const char *dir, const char *name, char want)
{
    char path[4096];
    struct stat sb;
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path ||
        stat(path, &sb) != 0)
        return false;
    return want == '?' || (want == 'f' ? S_ISREG(sb.st_mode) : S_ISDIR(sb.st_mode));
}

/* Is dir/checkpoint a msgpack file, as the aggregate file is (and as a
 * TensorFlow `checkpoint`, a text file, is not)? */
static bool has_aggregate(const char *dir)
{
    char path[4096];
    unsigned char head[FMT_HEAD_BYTES];
    if ((size_t)snprintf(path, sizeof path, "%s/checkpoint", dir) >= sizeof path ||
        !has(dir, "checkpoint", 'f'))
        return false;
    FILE *f = fopen(path, "rbe");
    size_t n = f ? fread(head, 1, sizeof head, f) : 0;
    if (f)
        fclose(f);
    return n && fmt_msgpack.sniff(head, n);
}

/* The names of a directory's subdirectories (not "." or "..", nor links),
 * sorted, malloc'd; at most OB_MAX_ENTRIES entries are looked at. */
typedef struct ob_names {
    char **v;
    size_t n;
    bool more; /* the directory had more entries than were looked at */
} ob_names;

static void names_free(ob_names *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->v[i]);
    free(d->v);
    *d = (ob_names){0};
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool list_subdirs(const char *dir, ob_names *out)
{
    *out = (ob_names){0};
    DIR *d = opendir(dir);
    if (!d)
        return false;
    size_t cap = 0, seen = 0;
    bool ok = true;
    struct dirent *e;
    while (ok && (e = readdir(d)) != NULL) {
        if (++seen > OB_MAX_ENTRIES) {
            out->more = true;
            break;
        }
        char sub[4096];
        struct stat sb; /* a link is not followed out of the checkpoint */
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
            (size_t)snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name) >= sizeof sub ||
            lstat(sub, &sb) != 0 || !S_ISDIR(sb.st_mode))
            continue;
        if (out->n == cap) {
            size_t more = cap ? cap * 2 : 16;
            char **v = realloc(out->v, more * sizeof *v);
            ok = v != NULL;
            if (v)
                out->v = v, cap = more;
        }
        char *name = ok ? strdup(e->d_name) : NULL;
        ok = name != NULL;
        if (ok)
            out->v[out->n++] = name;
    }
    closedir(d);
    if (!ok)
        names_free(out);
    else if (out->n > 1)
        qsort(out->v, out->n, sizeof *out->v, name_cmp);
    return ok;
}

static bool is_unfinished(const char *name) { return strstr(name, OB_TMP_MARK) != NULL; }

/* A step's name: digits, or PREFIX_digits (Orbax's step.py). */
static bool is_step_name(const char *name)
{
    const char *digits = strrchr(name, '_');
    digits = digits ? digits + 1 : name;
    if (!*digits)
        return false;
    for (const char *p = digits; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}

/* Does the directory hold arrays in zarr directories of their own (the
 * per-array layout): a subdirectory with .zarray or zarr.json? */
static bool has_zarr_dirs(const char *dir)
{
    ob_names d;
    bool yes = false;
    if (!list_subdirs(dir, &d))
        return false;
    for (size_t i = 0; i < d.n && !yes; i++) {
        char sub[4096];
        if ((size_t)snprintf(sub, sizeof sub, "%s/%s", dir, d.v[i]) < sizeof sub)
            yes = has(sub, ".zarray", 'f') || has(sub, "zarr.json", 'f');
    }
    names_free(&d);
    return yes;
}

/* A PyTree item, by what marks one without looking deeper. */
static bool is_marked_item(const char *dir)
{
    return has(dir, "_METADATA", '?') || has(dir, "manifest.ocdbt", '?') || has_aggregate(dir);
}

static bool is_item(const char *dir) { return is_marked_item(dir) || has_zarr_dirs(dir); }

/* A step (or a checkpoint of items): the files Orbax puts in one. */
static bool is_marked_step(const char *dir)
{
    return has(dir, "_CHECKPOINT_METADATA", '?') || has(dir, "orbax.checkpoint", '?');
}

typedef enum ob_kind { OB_NOT, OB_ITEM, OB_COMPOSITE, OB_STEPS } ob_kind;

/* What the directory is: a PyTree item; a checkpoint of items (a step:
 * Orbax's files, or items in subdirectories); the root of a
 * CheckpointManager (every subdirectory that Orbax marks has a step's
 * name); or none of these (a directory of checkpoints). */
static ob_kind classify(const char *dir)
{
    if (is_item(dir))
        return OB_ITEM;
    bool composite = is_marked_step(dir);
    ob_names d;
    if (!list_subdirs(dir, &d))
        return composite ? OB_COMPOSITE : OB_NOT;
    size_t items = 0, steps = 0, others = 0;
    for (size_t i = 0; i < d.n; i++) {
        char sub[4096];
        if (is_unfinished(d.v[i]) ||
            (size_t)snprintf(sub, sizeof sub, "%s/%s", dir, d.v[i]) >= sizeof sub)
            continue;
        bool item = is_marked_item(sub), step = is_marked_step(sub);
        if (!item && !step)
            continue;
        if (is_step_name(d.v[i]))
            steps++;
        else if (item)
            items++;
        else
            others++; /* a step not named as one: this is no checkpoint */
    }
    names_free(&d);
    if (composite || (items && !others))
        return OB_COMPOSITE;
    return steps && !items && !others ? OB_STEPS : OB_NOT;
}

static bool ob_sniff_dir(const char *dir) { return classify(dir) != OB_NOT; }

/* ---- the open --------------------------------------------------------------- */

typedef enum ob_type {
    OB_ARRAY,  /* jax.Array, np.ndarray */
    OB_SCALAR, /* a Python or NumPy number: a 0-d array */
    OB_STRING, /* in _strings.json */
    OB_EMPTY,  /* an empty container or None: no data */
} ob_type;

/* One leaf of an item's tree (_METADATA, or inferred). */
typedef struct ob_leaf {
    const char *name;  /* first, for ss_sort: the tensor name, segments joined by "/" */
    const char *param; /* segments joined by ".": the store's name of the array */
    const char *entry; /* its key in _METADATA, for messages */
    ob_type type;
    const char *type_name;
    unsigned char empty; /* the msgpack byte of an empty value (0x80 a map, 0xc0 None) */
    bool skip;           /* skip_deserialize: the value is in the aggregate file */
    bool has_shape;
    uint32_t rank;
    uint64_t *shape;   /* write_shape */
    const char *text;  /* a string leaf's value (_strings.json), or NULL */
} ob_leaf;

typedef struct ob_tree {
    ob_leaf *v;
    size_t n;
    int use_ocdbt; /* -1: not said */
    bool use_zarr3;
    bool stored_fill; /* store_array_data_equal_to_fill_value */
    bool inferred;    /* no _METADATA: the arrays found */
} ob_tree;

typedef struct ob_open {
    arena *keep;
    surg_sink *sink;
    const char *dir;
    fmt_table *t;
    size_t n_t, cap_t;
    const char **reads;
    size_t n_reads, cap_reads;
    /* The tree kept as msgpack.c keeps its own (msgpack.h, MP_TREE_KEY):
     * each tensor's path, and each value's with the hex of its msgpack
     * bytes, in the tree's order. */
    buf tree;
    struct ob_span {
        size_t from, to;
        bool value;
    } *spans;
    size_t n_spans, cap_spans;
    uint64_t leaf_bytes;
    size_t n_skipped, n_dropped;
    const char *skipped[OB_SHOWN];
    size_t n_json_items;
    const char *json_items[OB_SHOWN];
    uint64_t page;
} ob_open;

/* A problem with a file of the checkpoint. */
__attribute__((format(printf, 4, 5))) static surg_status bad(ob_open *o, const char *file,
                                                             const char *code,
                                                             const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    dg_file(o->sink, SURG_ERROR, code, file, "%s", msg);
    return SURG_EINVALID;
}

static surg_status add_read(ob_open *o, const char *path)
{
    if (o->n_reads == o->cap_reads) {
        size_t cap = o->cap_reads ? o->cap_reads * 2 : 8;
        const char **v = ar_array(o->keep, cap, sizeof *v);
        if (!v)
            return dg_nomem(o->sink, o->dir);
        if (o->n_reads)
            memcpy(v, o->reads, o->n_reads * sizeof *v);
        o->reads = v;
        o->cap_reads = cap;
    }
    o->reads[o->n_reads++] = path;
    return SURG_OK;
}

/* A new empty table (the array may move: use the index). */
static surg_status add_table(ob_open *o, size_t *index)
{
    if (o->n_t == o->cap_t) {
        size_t cap = o->cap_t ? o->cap_t * 2 : 4;
        fmt_table *v = realloc(o->t, cap * sizeof *v);
        if (!v)
            return dg_nomem(o->sink, o->dir);
        o->t = v;
        o->cap_t = cap;
    }
    *index = o->n_t++;
    o->t[*index] = (fmt_table){.file = {.path = o->dir, .fd = -1}};
    return SURG_OK;
}

/* A small JSON file of the checkpoint, read whole, checked as UTF-8 and
 * made ready to parse in place; *text NULL when it is not there. */
static surg_status read_json(ob_open *o, const char *path, char **text, size_t *len,
                             json_reader *j)
{
    *text = NULL;
    surg_status st = rf_read_into(o->keep, o->sink, path, OB_MAX_JSON, text, len);
    if (st)
        return st;
    st = add_read(o, path);
    size_t at;
    if (!st && !utf8_valid((const unsigned char *)*text, *len, &at))
        return bad(o, path, "ob-json", "the file is not JSON: invalid UTF-8 at byte %zu", at);
    json_init_in_place(j, *text, *len);
    return st;
}

static surg_status json_bad(ob_open *o, const char *path, const json_reader *j)
{
    return bad(o, path, "ob-json", "the file is not JSON as Orbax writes it: %s (at byte %zu)",
               j->err, j->err_at);
}

/* A JSON boolean (null: *set false). */
static bool json_bool(json_reader *j, bool *v, bool *set)
{
    int c = json_peek(j);
    *v = c == 't';
    *set = c == 't' || c == 'f';
    if (c != 't' && c != 'f' && c != 'n')
        return json_fail(j, "expected true, false or null");
    return json_skip(j);
}

/* ---- the tree kept ------------------------------------------------------- */

/* `"name": "text"` as the next entry of the tree kept. */
static surg_status tree_put(ob_open *o, const char *name, const char *text, bool value)
{
    if (o->n_spans == o->cap_spans) {
        size_t cap = o->cap_spans ? o->cap_spans * 2 : 64;
        struct ob_span *v = realloc(o->spans, cap * sizeof *v);
        if (!v)
            return dg_nomem(o->sink, o->dir);
        o->spans = v;
        o->cap_spans = cap;
    }
    size_t from = o->tree.len;
    buf_puts(&o->tree, o->n_spans ? ", " : "");
    buf_json_string(&o->tree, name);
    buf_puts(&o->tree, ": \"");
    buf_puts(&o->tree, text);
    buf_putc(&o->tree, '"');
    o->spans[o->n_spans++] = (struct ob_span){from, o->tree.len, value};
    return o->tree.failed ? dg_nomem(o->sink, o->dir) : SURG_OK;
}

/* A value that is not an array at `name`, whose msgpack bytes are b (n
 * bytes; NULL: not known), kept while they fit. */
static surg_status keep_leaf(ob_open *o, const char *name, const unsigned char *b, size_t n)
{
    if (o->n_skipped < OB_SHOWN) {
        char shown[80];
        o->skipped[o->n_skipped] = ar_strdup(o->keep, tn_short(name, shown, 64));
        if (!o->skipped[o->n_skipped])
            return dg_nomem(o->sink, o->dir);
    }
    o->n_skipped++;
    if (!b || n > OB_MAX_LEAF_BYTES - o->leaf_bytes) {
        o->n_dropped++;
        return SURG_OK;
    }
    o->leaf_bytes += n;
    char *hex = malloc(2 * n + 1);
    if (!hex)
        return dg_nomem(o->sink, o->dir);
    for (size_t i = 0; i < n; i++) {
        static const char digits[] = "0123456789abcdef";
        hex[2 * i] = digits[b[i] >> 4];
        hex[2 * i + 1] = digits[b[i] & 15];
    }
    hex[2 * n] = 0;
    surg_status st = tree_put(o, name, hex, true);
    free(hex);
    return st;
}

/* A string as msgpack (str8/16/32), malloc'd. */
static unsigned char *msgpack_str(const char *s, size_t *n)
{
    size_t len = strlen(s), head = len < 32 ? 1 : len < 256 ? 2 : len < 65536 ? 3 : 5;
    unsigned char *b = malloc(len + head);
    if (!b)
        return NULL;
    if (head == 1) {
        b[0] = (unsigned char)(0xa0 | len);
    } else if (head == 2) {
        b[0] = 0xd9;
        b[1] = (unsigned char)len;
    } else if (head == 3) {
        b[0] = 0xda;
        b[1] = (unsigned char)(len >> 8);
        b[2] = (unsigned char)len;
    } else {
        b[0] = 0xdb;
        for (int k = 0; k < 4; k++)
            b[1 + k] = (unsigned char)(len >> (24 - 8 * k));
    }
    memcpy(b + head, s, len);
    *n = len + head;
    return b;
}

/* ---- _METADATA ------------------------------------------------------------- */

static const struct {
    const char *name;
    ob_type type;
    unsigned char empty;
} value_types[] = {
    {"jax.Array", OB_ARRAY, 0},   {"np.ndarray", OB_ARRAY, 0}, {"scalar", OB_SCALAR, 0},
    {"string", OB_STRING, 0},     {"Dict", OB_EMPTY, 0x80},    {"List", OB_EMPTY, 0x80},
    {"Tuple", OB_EMPTY, 0x80},    {"NamedTuple", OB_EMPTY, 0x80}, {"None", OB_EMPTY, 0xc0},
    {"placeholder", OB_EMPTY, 0xc0},
};

typedef struct ob_meta_read {
    ob_open *o;
    const char *path; /* the _METADATA file */
    json_reader j;
    ob_leaf *v;
    size_t n, cap;
} ob_meta_read;

/* key_metadata: the path, as a name ("b/c") and a param name ("b.c"). */
static bool read_keys(ob_meta_read *m, ob_leaf *l, const char **problem)
{
    json_reader *j = &m->j;
    buf name, param;
    buf_init(&name);
    buf_init(&param);
    size_t count = 0;
    int more = json_open(j, '[') ? json_first(j, ']') : -1;
    for (; more > 0 && !*problem; more = json_more(j, ']')) {
        const char *key = NULL;
        uint64_t type = 0;
        bool has_type = false;
        json_keys keys = {0};
        int f = json_open(j, '{') ? json_first(j, '}') : -1;
        for (; f > 0; f = json_more(j, '}')) {
            const char *k;
            if (!json_key(j, &k) || !json_keys_add(j, &keys, k))
                break;
            bool ok = strcmp(k, "key") == 0        ? json_string(j, &key)
                      : strcmp(k, "key_type") == 0 ? (has_type = json_count(j, &type))
                                                   : json_skip(j);
            if (!ok)
                break;
        }
        if (!json_keys_unique(j, &keys, "a key of key_metadata") || f != 0)
            more = -1;
        if (more < 0)
            break;
        if (!key || !has_type)
            *problem = "a key of key_metadata lacks \"key\" or \"key_type\"";
        else if (type != 1 && type != 2)
            *problem = "a key_type is neither 1 (a sequence index) nor 2 (a dict key)";
        else if (!*key)
            *problem = "a key is empty";
        else if (strchr(key, '/'))
            *problem = "a key holds \"/\", which would nest names";
        else if (type == 1 && strspn(key, "0123456789") != strlen(key))
            *problem = "a sequence key (key_type 1) is not a decimal index";
        if (*problem)
            break;
        buf_printf(&name, "%s%s", count ? "/" : "", key);
        buf_printf(&param, "%s%s", count ? "." : "", key);
        count++;
    }
    if (more == 0 && !count)
        *problem = "key_metadata is empty: a leaf without a path";
    if (!*problem && more == 0 && !name.failed && !param.failed) {
        l->name = ar_strndup(m->o->keep, name.data, name.len);
        l->param = ar_strndup(m->o->keep, param.data, param.len);
        if (!l->name || !l->param)
            json_fail(j, "out of memory");
    } else if (!*problem && more == 0) {
        json_fail(j, "out of memory");
    }
    buf_free(&name);
    buf_free(&param);
    return !j->failed && (more == 0 || *problem);
}

static bool read_shape(ob_meta_read *m, ob_leaf *l)
{
    json_reader *j = &m->j;
    uint64_t dims[OB_MAX_RANK];
    uint32_t rank = 0;
    int more = json_open(j, '[') ? json_first(j, ']') : -1;
    for (; more > 0; more = json_more(j, ']')) {
        if (rank == OB_MAX_RANK)
            return json_fail(j, "write_shape has more than %d dimensions", OB_MAX_RANK);
        if (!json_count(j, &dims[rank++]))
            return false;
    }
    if (more != 0)
        return false;
    l->shape = ar_array(m->o->keep, rank ? rank : 1, sizeof *l->shape);
    if (!l->shape)
        return json_fail(j, "out of memory");
    memcpy(l->shape, dims, rank * sizeof *dims);
    l->rank = rank;
    l->has_shape = true;
    return true;
}

static bool read_value_meta(ob_meta_read *m, ob_leaf *l, bool *typed)
{
    json_reader *j = &m->j;
    json_keys keys = {0};
    int more = json_open(j, '{') ? json_first(j, '}') : -1;
    for (; more > 0; more = json_more(j, '}')) {
        const char *k;
        bool set, ok;
        if (!json_key(j, &k) || !json_keys_add(j, &keys, k))
            break;
        if (strcmp(k, "value_type") == 0)
            ok = *typed = json_string(j, &l->type_name);
        else if (strcmp(k, "skip_deserialize") == 0)
            ok = json_bool(j, &l->skip, &set);
        else if (strcmp(k, "write_shape") == 0 && json_peek(j) == '[')
            ok = read_shape(m, l);
        else
            ok = json_skip(j);
        if (!ok)
            break;
    }
    return json_keys_unique(j, &keys, "value_metadata") && more == 0;
}

/* One entry of tree_metadata. */
static surg_status read_entry(ob_meta_read *m, const char *entry)
{
    json_reader *j = &m->j;
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        ob_leaf *v = realloc(m->v, cap * sizeof *v);
        if (!v)
            return dg_nomem(m->o->sink, m->path);
        m->v = v;
        m->cap = cap;
    }
    ob_leaf *l = &m->v[m->n];
    *l = (ob_leaf){.entry = entry};
    const char *problem = NULL;
    bool keyed = false, valued = false, typed = false;
    json_keys keys = {0};
    int more = json_open(j, '{') ? json_first(j, '}') : -1;
    for (; more > 0 && !problem; more = json_more(j, '}')) {
        const char *k;
        bool ok;
        if (!json_key(j, &k) || !json_keys_add(j, &keys, k))
            break;
        if (strcmp(k, "key_metadata") == 0)
            ok = keyed = read_keys(m, l, &problem);
        else if (strcmp(k, "value_metadata") == 0)
            ok = valued = read_value_meta(m, l, &typed);
        else
            ok = json_skip(j);
        if (!ok)
            break;
    }
    /* A JSON error: the caller reports it, where the text failed. */
    if (!json_keys_unique(j, &keys, "an entry") && !problem)
        return SURG_OK;
    if (problem) {
        char shown[80];
        return bad(m->o, m->path, "ob-metadata", "entry \"%s\": %s", tn_short(entry, shown, 64),
                   problem);
    }
    if (more != 0)
        return SURG_OK; /* a JSON error, as above */
    char shown[80];
    if (!keyed || !valued || !typed)
        return bad(m->o, m->path, "ob-metadata",
                   "entry \"%s\" lacks %s", tn_short(entry, shown, 64),
                   !keyed ? "key_metadata" : !valued ? "value_metadata" : "a value_type");
    size_t t = 0, nt = sizeof value_types / sizeof *value_types;
    while (t < nt && strcmp(value_types[t].name, l->type_name) != 0)
        t++;
    if (t == nt) {
        char type[80];
        return bad(m->o, m->path, "ob-value-type",
                   "\"%s\" is a %s, which surg does not read (it reads jax.Array, np.ndarray, "
                   "scalar and string leaves, and empty Dict, List, Tuple, NamedTuple and None)",
                   tn_short(l->name, shown, 64), tn_short(l->type_name, type, 64));
    }
    l->type = value_types[t].type;
    l->empty = value_types[t].empty;
    const char *why = tn_problem(l->name, strlen(l->name));
    if (why)
        return bad(m->o, m->path, "ob-name", "\"%s\" cannot be a tensor name: %s",
                   tn_short(l->name, shown, 64), why);
    if (strcmp(l->param, ".") == 0 || strcmp(l->param, "..") == 0)
        return bad(m->o, m->path, "ob-name",
                   "\"%s\" names no array Orbax can have written: its directory would be %s",
                   l->name, l->param);
    m->n++;
    return SURG_OK;
}

/* Sorted by name: no path twice, and no leaf that another's path goes
 * through ("a" a leaf and "a/b" too). */
static surg_status check_paths(ob_open *o, const char *path, ob_leaf *v, size_t n)
{
    if (n > 1 && ss_sort(v, n, sizeof *v) != 0)
        return dg_nomem(o->sink, path);
    char shown[80], other[80];
    for (size_t i = 1; i < n; i++)
        if (strcmp(v[i - 1].name, v[i].name) == 0)
            return bad(o, path, "ob-metadata", "two entries have the path \"%s\"",
                       tn_short(v[i].name, shown, 64));
    for (size_t i = 0; i < n; i++)
        for (const char *s = strchr(v[i].name, '/'); s; s = strchr(s + 1, '/')) {
            char *up = strndup(v[i].name, (size_t)(s - v[i].name));
            if (!up)
                return dg_nomem(o->sink, path);
            size_t k = ss_find(v, n, sizeof *v, up);
            free(up);
            if (k < n)
                return bad(o, path, "ob-metadata",
                           "\"%s\" is a leaf, and \"%s\" goes through it",
                           tn_short(v[k].name, shown, 64), tn_short(v[i].name, other, 64));
        }
    return SURG_OK;
}

static surg_status read_metadata(ob_open *o, const char *path, ob_tree *tr)
{
    char *text;
    size_t len;
    ob_meta_read m = {.o = o, .path = path};
    surg_status st = read_json(o, path, &text, &len, &m.j);
    if (st)
        return st;
    json_reader *j = &m.j;
    bool tree = false, set;
    json_keys keys = {0};
    int more = json_open(j, '{') ? json_first(j, '}') : -1;
    for (; more > 0 && !st; more = json_more(j, '}')) {
        const char *k;
        bool ok, flag;
        if (!json_key(j, &k) || !json_keys_add(j, &keys, k))
            break;
        if (strcmp(k, "tree_metadata") == 0) {
            json_keys entries = {0};
            int e = json_open(j, '{') ? json_first(j, '}') : -1;
            for (; e > 0 && !st; e = json_more(j, '}')) {
                const char *entry;
                if (!json_key(j, &entry) || !json_keys_add(j, &entries, entry))
                    break;
                st = read_entry(&m, entry);
            }
            ok = json_keys_unique(j, &entries, "tree_metadata") && (st || e == 0);
            tree = true;
        } else if (strcmp(k, "use_ocdbt") == 0) {
            ok = json_bool(j, &flag, &set);
            tr->use_ocdbt = set ? flag : -1;
        } else if (strcmp(k, "use_zarr3") == 0) {
            ok = json_bool(j, &tr->use_zarr3, &set);
        } else if (strcmp(k, "store_array_data_equal_to_fill_value") == 0) {
            ok = json_bool(j, &tr->stored_fill, &set);
        } else {
            ok = json_skip(j); /* custom_metadata, value_metadata_tree, ... */
        }
        if (!ok)
            break;
    }
    bool unique = json_keys_unique(j, &keys, "the top object");
    if (!st && (more != 0 || !unique || !json_end(j)))
        st = j->failed && strcmp(j->err, "out of memory") == 0 ? dg_nomem(o->sink, path)
                                                                 : json_bad(o, path, j);
    if (!st && !tree)
        st = bad(o, path, "ob-metadata", "the file has no \"tree_metadata\"");
    if (!st)
        st = check_paths(o, path, m.v, m.n);
    if (!st) {
        tr->v = ar_array(o->keep, m.n ? m.n : 1, sizeof *tr->v);
        if (!tr->v)
            st = dg_nomem(o->sink, path);
        else if (m.n)
            memcpy(tr->v, m.v, m.n * sizeof *m.v);
        tr->n = m.n;
    }
    free(m.v);
    return st;
}

/* ---- arrays of a store --------------------------------------------------- */

/* An item's arrays in a key-value store, as zarr arrays, decoded on
 * demand into the table's scratch file. */
typedef struct ob_store {
    ob_open *o;
    const char *item; /* the item's directory */
    const char *prefix;
    const ob_tree *tr;
    kv_store *kv;
    size_t table;
    size_t cap[2];
    bool aggregate; /* per-array directories beside the aggregate file */
} ob_store;

static void close_store(void *kv) { kv_close(kv); }

/* The array `param` (a name in the store) as tensor `name`. */
static surg_status store_array(ob_store *s, const ob_leaf *l, const char *param,
                               const char *name);

/* ---- the aggregate file ---------------------------------------------------- */

/* A sink that passes everything on but the msgpack reader's note on the
 * values that are not arrays: this reader says its own. */
typedef struct ob_quiet {
    surg_sink *to;
} ob_quiet;

static void quiet_fn(const surg_diag *d, void *user)
{
    surg_sink *to = ((ob_quiet *)user)->to;
    if (strcmp(d->code, "mp-not-tensor") != 0)
        dg_emit(to, d);
}

/* An entry of the msgpack reader's tree (MP_TREE_KEY), in file order. */
typedef struct ob_mentry {
    const char *path;
    const char *text;        /* "" an array, "s" a NumPy scalar, else the hex of a value */
    const char *placeholder; /* the name after PLACEHOLDER://, or NULL */
} ob_mentry;

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The bytes of a value's hex (in the arena, NUL-ended beyond n), or NULL. */
static unsigned char *unhex(arena *ar, const char *hex, size_t *n)
{
    size_t len = strlen(hex);
    *n = len / 2;
    unsigned char *b = len % 2 ? NULL : ar_alloc(ar, *n + 1);
    for (size_t i = 0; b && i < *n; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return NULL;
        b[i] = (unsigned char)(hi << 4 | lo);
    }
    return b;
}

/* The string a value's msgpack bytes hold, if they are one. */
static const char *leaf_string(unsigned char *b, size_t n)
{
    if (!b || n < 1)
        return NULL;
    size_t head = b[0] >= 0xa0 && b[0] <= 0xbf ? 1 : b[0] == 0xd9 ? 2 : b[0] == 0xda ? 3
                  : b[0] == 0xdb ? 5 : 0;
    if (!head || head > n)
        return NULL;
    size_t len = head == 1 ? b[0] & 0x1fu : 0;
    for (size_t k = 1; k < head; k++)
        len = len << 8 | b[k];
    if (head + len != n || memchr(b + head, 0, len))
        return NULL;
    b[n] = 0;
    return (const char *)b + head;
}

static bool is_tensor_text(const char *text)
{
    return strcmp(text, MP_TREE_ARRAY) == 0 || strcmp(text, MP_TREE_SCALAR) == 0;
}

static surg_status parse_mtree(ob_open *o, const char *file, const char *json, ob_mentry **out,
                               size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (!json)
        return SURG_OK;
    size_t cap = 1;
    for (const char *p = json; *p; p++)
        cap += *p == ':';
    ob_mentry *v = ar_array(o->keep, cap, sizeof *v);
    if (!v)
        return dg_nomem(o->sink, file);
    json_reader j;
    json_init(&j, json, strlen(json), o->keep);
    size_t n = 0;
    int more = json_open(&j, '{') ? json_first(&j, '}') : -1;
    for (; more > 0 && n < cap; more = json_more(&j, '}')) {
        ob_mentry *e = &v[n];
        if (!json_key(&j, &e->path) || !json_string(&j, &e->text))
            break;
        size_t len = 0;
        unsigned char *b = is_tensor_text(e->text) ? NULL : unhex(o->keep, e->text, &len);
        const char *str = leaf_string(b, len);
        static const char mark[] = "PLACEHOLDER://";
        e->placeholder = str && strncmp(str, mark, sizeof mark - 1) == 0 ? str + sizeof mark - 1
                                                                          : NULL;
        n++;
    }
    if (more != 0) /* the msgpack reader wrote it: never */
        return bad(o, file, "ob-internal", "the msgpack reader's tree is not an object");
    *out = v;
    *n_out = n;
    return SURG_OK;
}

/* A PLACEHOLDER name is a directory of the item: one name, not "." or "..". */
static const char *placeholder_problem(const char *name)
{
    if (!*name)
        return "it is empty";
    if (strchr(name, '/') || strchr(name, '\\'))
        return "it holds a slash: it would name a directory outside the item";
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return "it is \".\" or \"..\": it would name a directory outside the item";
    return NULL;
}

/* Keep the entries of h (and src, for h[1]) for which keep[i] holds, in
 * order, renamed under `prefix`. */
static surg_status keep_entries(ob_open *o, fmt_table *t, int which, const char *prefix,
                                const ob_tree *tr, bool from_file)
{
    st_header *h = &t->h[which];
    size_t k = 0;
    for (size_t i = 0; i < h->n; i++) {
        st_entry e = h->entries[i];
        size_t at = tr && !tr->inferred ? ss_find(tr->v, tr->n, sizeof *tr->v, e.info.name)
                                        : SIZE_MAX;
        bool keep = !tr || tr->inferred ||
                    (at < tr->n && tr->v[at].skip == from_file &&
                     (tr->v[at].type == OB_ARRAY || tr->v[at].type == OB_SCALAR));
        if (!keep)
            continue;
        if (prefix) {
            e.info.name = join(o->keep, prefix, e.info.name);
            if (!e.info.name)
                return dg_nomem(o->sink, o->dir);
        }
        if (which)
            t->src[k] = t->src[i];
        h->entries[k++] = e;
    }
    h->n = k;
    return SURG_OK;
}

/* ---- one PyTree item ------------------------------------------------------- */

/* Open (once) the store of an item's arrays: OCDBT when _METADATA says
 * use_ocdbt (or says nothing and manifest.ocdbt is there), else the
 * directory of per-array zarr directories. */
static surg_status open_store(ob_store *s)
{
    bool aggregate = s->aggregate;
    ob_open *o = s->o;
    if (s->kv)
        return SURG_OK;
    bool ocdbt = !aggregate && (s->tr->use_ocdbt > 0 ||
                                (s->tr->use_ocdbt < 0 && has(s->item, "manifest.ocdbt", '?')));
    if (ocdbt && !has(s->item, "manifest.ocdbt", '?')) {
        char *path = join(o->keep, s->item, "manifest.ocdbt");
        return path ? bad(o, path, "ob-missing",
                          "the item's arrays are in an OCDBT database (_METADATA says "
                          "use_ocdbt), whose manifest.ocdbt is missing")
                    : dg_nomem(o->sink, s->item);
    }
    surg_status st = ocdbt ? kv_open_ocdbt(s->item, o->sink, &s->kv)
                           : kv_open_dir(s->item, o->sink, &s->kv);
    if (st)
        return st;
    fmt_table *t = &o->t[s->table];
    t->close = close_store;
    t->close_ctx = s->kv;
    return SURG_OK;
}

static surg_status store_table(ob_store *s)
{
    if (s->table != SIZE_MAX)
        return SURG_OK;
    surg_status st = add_table(s->o, &s->table);
    if (!st) {
        fmt_table *t = &s->o->t[s->table];
        t->file.path = s->item;
        t->own_entries = true;
        t->src = malloc(sizeof *t->src);
        if (!t->src)
            st = dg_nomem(s->o->sink, s->item);
    }
    return st;
}

static const char *prefixed(ob_open *o, const char *prefix, const char *name)
{
    return prefix ? join(o->keep, prefix, name) : name;
}

/* A leaf that is not an array: an empty container or None (its msgpack
 * byte), or a string (its value from _strings.json, when there). */
static surg_status value_leaf(ob_open *o, const char *prefix, const ob_leaf *l)
{
    const char *name = prefixed(o, prefix, l->name);
    if (!name)
        return dg_nomem(o->sink, o->dir);
    if (l->type == OB_EMPTY)
        return keep_leaf(o, name, &l->empty, 1);
    size_t n = 0;
    unsigned char *b = l->text ? msgpack_str(l->text, &n) : NULL;
    if (l->text && !b)
        return dg_nomem(o->sink, o->dir);
    surg_status st = keep_leaf(o, name, b, n);
    free(b);
    return st;
}

/* The values of an item's string leaves, from its _strings.json ({param
 * name: string}); one missing there stays NULL. */
static surg_status read_strings(ob_open *o, const char *item, ob_tree *tr)
{
    bool any = false;
    for (size_t i = 0; i < tr->n && !any; i++)
        any = tr->v[i].type == OB_STRING;
    if (!any || !has(item, "_strings.json", 'f'))
        return SURG_OK;
    char *path = join(o->keep, item, "_strings.json"), *text;
    size_t len;
    json_reader j;
    surg_status st = path ? read_json(o, path, &text, &len, &j) : dg_nomem(o->sink, item);
    if (st)
        return st;
    json_keys keys = {0};
    int more = json_open(&j, '{') ? json_first(&j, '}') : -1;
    for (; more > 0; more = json_more(&j, '}')) {
        const char *key, *v = NULL;
        if (!json_key(&j, &key) || !json_keys_add(&j, &keys, key))
            break;
        if (json_peek(&j) == '"' ? !json_string(&j, &v) : !json_skip(&j))
            break;
        for (size_t i = 0; v && i < tr->n; i++) /* few strings: a scan */
            if (tr->v[i].type == OB_STRING && strcmp(tr->v[i].param, key) == 0)
                tr->v[i].text = v;
    }
    bool unique = json_keys_unique(&j, &keys, "the object");
    if (more != 0 || !unique || !json_end(&j))
        return json_bad(o, path, &j);
    return SURG_OK;
}

/* The aggregate file `checkpoint` (msgpack): its arrays in place (those
 * _METADATA says are there), its PLACEHOLDER://name values and the arrays
 * _METADATA says are not there read from the zarr directory <item>/<name>/,
 * its other values kept; then what _METADATA lists that the file lacks. */
static surg_status open_aggregate(ob_open *o, ob_store *s)
{
    const char *path = join(o->keep, s->item, "checkpoint");
    size_t ti;
    surg_status st = path ? add_table(o, &ti) : dg_nomem(o->sink, s->item);
    if (st)
        return st;
    ob_quiet q = {o->sink};
    surg_sink quiet = {.fn = quiet_fn, .user = &q};
    st = fmt_open(FMT_MSGPACK, o->keep, &quiet, path, &o->t[ti]); /* counted where passed on */
    const char *tree_json = NULL;
    fmt_table *t = &o->t[ti];
    for (size_t i = 0; !st && i < t->h[0].n_meta; i++)
        if (strcmp(t->h[0].meta[i].key, MP_TREE_KEY) == 0)
            tree_json = t->h[0].meta[i].value;
    ob_mentry *me = NULL;
    size_t n_me = 0;
    if (!st)
        st = parse_mtree(o, path, tree_json, &me, &n_me);
    free(t->h[0].meta); /* the tree is this reader's to keep */
    t->h[0].meta = NULL;
    t->h[0].n_meta = 0;
    if (!st)
        st = keep_entries(o, t, 0, s->prefix, s->tr, true);
    if (!st)
        st = keep_entries(o, t, 1, s->prefix, s->tr, true);
    /* The names the file keeps, to look up. */
    size_t n_kept = st ? 0 : t->h[0].n + t->h[1].n, k = 0;
    const char **kept = st ? NULL : malloc((n_kept ? n_kept : 1) * sizeof *kept);
    if (!st && !kept)
        st = dg_nomem(o->sink, path);
    for (int w = 0; !st && w < 2; w++)
        for (size_t e = 0; e < t->h[w].n; e++)
            kept[k++] = t->h[w].entries[e].info.name;
    if (!st && n_kept > 1 && ss_sort(kept, n_kept, sizeof *kept) != 0)
        st = dg_nomem(o->sink, path);
    const ob_tree *tr = s->tr;
    bool *seen = st ? NULL : calloc(tr->n ? tr->n : 1, sizeof *seen);
    if (!st && !seen)
        st = dg_nomem(o->sink, path);
    for (size_t i = 0; !st && i < n_me; i++) {
        const ob_mentry *e = &me[i];
        size_t at = tr->inferred ? SIZE_MAX : ss_find(tr->v, tr->n, sizeof *tr->v, e->path);
        const ob_leaf *l = at < tr->n ? &tr->v[at] : NULL;
        bool array = l && (l->type == OB_ARRAY || l->type == OB_SCALAR);
        if (l)
            seen[at] = true;
        const char *name = prefixed(o, s->prefix, e->path);
        if (!name) {
            st = dg_nomem(o->sink, path);
            break;
        }
        if (is_tensor_text(e->text) && ss_find(kept, n_kept, sizeof *kept, name) < n_kept) {
            st = tree_put(o, name, e->text, false);
        } else if (e->placeholder || (array && !l->skip)) {
            /* In its zarr directory: the placeholder's name, or the array's. */
            const char *param = e->placeholder ? e->placeholder : l->param;
            const char *why = placeholder_problem(param);
            ob_leaf any = {.name = e->path, .param = param, .type = OB_ARRAY};
            if (why)
                st = bad(o, path, "ob-placeholder",
                         "\"%s\" is PLACEHOLDER://%s, which names no directory of the "
                         "checkpoint: %s", e->path, param, why);
            else
                st = store_array(s, l ? l : &any, param, name);
        } else if (array && l->type == OB_ARRAY) {
            st = bad(o, path, "ob-missing",
                     "_METADATA says the array \"%s\" is in this file, which has no array "
                     "there", l->name);
        } else if (!is_tensor_text(e->text)) {
            size_t n;
            unsigned char *b = unhex(o->keep, e->text, &n);
            st = keep_leaf(o, name, b, b ? n : 0);
        }
    }
    for (size_t i = 0; !st && !tr->inferred && i < tr->n; i++) {
        const ob_leaf *l = &tr->v[i];
        if (seen[i])
            continue;
        if (l->type == OB_ARRAY && l->skip)
            st = bad(o, path, "ob-missing",
                     "_METADATA says the array \"%s\" is in this file, which has no array "
                     "there", l->name);
        else if (l->type == OB_ARRAY || l->type == OB_SCALAR)
            st = l->skip ? SURG_OK : store_array(s, l, l->param, prefixed(o, s->prefix, l->name));
        else
            st = value_leaf(o, s->prefix, l);
    }
    free(kept);
    free(seen);
    return st;
}

/* No _METADATA: the tree is the arrays found — each subdirectory with a
 * .zarray or zarr.json, or each such key of the OCDBT database — named by
 * their param names with "." read as "/". */
static surg_status infer_tree(ob_open *o, ob_store *s, ob_tree *tr);

static surg_status open_item(ob_open *o, const char *item, const char *prefix)
{
    ob_tree tr = {.use_ocdbt = -1};
    ob_store s = {.o = o, .item = item, .prefix = prefix, .tr = &tr, .table = SIZE_MAX};
    char *meta = join(o->keep, item, "_METADATA");
    if (!meta)
        return dg_nomem(o->sink, item);
    surg_status st = SURG_OK;
    if (has(item, "_METADATA", '?'))
        st = read_metadata(o, meta, &tr);
    else
        tr.inferred = true;
    if (!st)
        st = read_strings(o, item, &tr);
    s.aggregate = has_aggregate(item);
    if (!st && s.aggregate)
        return open_aggregate(o, &s);
    if (!st && tr.inferred)
        st = infer_tree(o, &s, &tr);
    /* In the tree's order (sorted, as Orbax and JAX order a dict's keys). */
    for (size_t i = 0; !st && i < tr.n; i++) {
        const ob_leaf *l = &tr.v[i];
        if (l->type != OB_ARRAY && l->type != OB_SCALAR) {
            st = value_leaf(o, prefix, l);
            continue;
        }
        if (l->skip)
            st = bad(o, meta, "ob-missing",
                     "_METADATA says \"%s\" is in the aggregate file checkpoint, which is not "
                     "there", l->name);
        const char *name = prefixed(o, prefix, l->name);
        if (!st)
            st = name ? store_array(&s, l, l->param, name) : dg_nomem(o->sink, item);
    }
    return st;
}

/* ---- a checkpoint of items ------------------------------------------------ */

/* _CHECKPOINT_METADATA's item_handlers, when a map: the items it lists. */
static surg_status listed_items(ob_open *o, const char *dir, const char ***items, size_t *n)
{
    *items = NULL;
    *n = 0;
    if (!has(dir, "_CHECKPOINT_METADATA", '?'))
        return SURG_OK;
    char *path = join(o->keep, dir, "_CHECKPOINT_METADATA"), *text;
    size_t len;
    json_reader j;
    surg_status st = path ? read_json(o, path, &text, &len, &j) : dg_nomem(o->sink, dir);
    if (st)
        return st;
    size_t cap = 0;
    for (size_t i = 0; i < len; i++)
        cap += text[i] == ':';
    *items = ar_array(o->keep, cap ? cap : 1, sizeof **items);
    if (!*items)
        return dg_nomem(o->sink, path);
    json_keys keys = {0};
    int more = json_open(&j, '{') ? json_first(&j, '}') : -1;
    for (; more > 0; more = json_more(&j, '}')) {
        const char *k;
        if (!json_key(&j, &k) || !json_keys_add(&j, &keys, k))
            break;
        if (strcmp(k, "item_handlers") != 0 || json_peek(&j) != '{') {
            if (!json_skip(&j))
                break;
            continue;
        }
        json_keys names = {0};
        int m = json_open(&j, '{') ? json_first(&j, '}') : -1;
        for (; m > 0; m = json_more(&j, '}')) {
            const char *item;
            if (!json_key(&j, &item) || !json_keys_add(&j, &names, item) || !json_skip(&j))
                break;
            if (*n < cap)
                (*items)[(*n)++] = item;
        }
        if (!json_keys_unique(&j, &names, "item_handlers") || m != 0)
            break;
    }
    bool unique = json_keys_unique(&j, &keys, "the top object");
    if (more != 0 || !unique || !json_end(&j))
        return json_bad(o, path, &j);
    return SURG_OK;
}

static surg_status note_json_item(ob_open *o, const char *name)
{
    if (o->n_json_items < OB_SHOWN) {
        o->json_items[o->n_json_items] = ar_strdup(o->keep, name);
        if (!o->json_items[o->n_json_items])
            return dg_nomem(o->sink, o->dir);
    }
    o->n_json_items++;
    return SURG_OK;
}

static surg_status open_composite(ob_open *o)
{
    const char **listed;
    size_t n_listed;
    surg_status st = listed_items(o, o->dir, &listed, &n_listed);
    ob_names d = {0};
    if (!st && !list_subdirs(o->dir, &d))
        st = dg_errno(o->sink, o->dir, "cannot list the directory", errno ? errno : ENOMEM);
    if (!st && d.more)
        st = bad(o, o->dir, "ob-too-many",
                 "the directory has more than %u entries, more than a checkpoint's items",
                 OB_MAX_ENTRIES);
    buf unfinished, missing, other;
    buf_init(&unfinished);
    buf_init(&missing);
    buf_init(&other);
    for (size_t i = 0; !st && i < d.n; i++) {
        const char *name = d.v[i];
        char *sub = join(o->keep, o->dir, name);
        name = ar_strdup(o->keep, name);
        if (!sub || !name) {
            st = dg_nomem(o->sink, o->dir);
            break;
        }
        if (is_unfinished(name))
            buf_printf(&unfinished, "%s%s", unfinished.len ? ", " : "", name);
        else if (is_item(sub))
            st = open_item(o, sub, name);
        else if (has(sub, "metadata", 'f') || has(sub, "data.json", 'f'))
            st = note_json_item(o, name);
        else
            buf_printf(&other, "%s%s", other.len ? ", " : "", name);
    }
    for (size_t i = 0; !st && i < n_listed; i++) {
        bool there = false;
        for (size_t k = 0; k < d.n && !there; k++)
            there = strcmp(d.v[k], listed[i]) == 0;
        if (!there)
            buf_printf(&missing, "%s%s", missing.len ? ", " : "", listed[i]);
    }
    if (!st && (unfinished.failed || missing.failed || other.failed))
        st = dg_nomem(o->sink, o->dir);
    if (!st && other.len)
        dg_file(o->sink, SURG_NOTE, "ob-other-item", o->dir,
                "not an item surg reads (neither a PyTree nor JSON), skipped: %s", other.data);
    if (!st && unfinished.len)
        dg_file(o->sink, SURG_NOTE, "ob-unfinished", o->dir,
                "skipped, as unfinished saves: %s", unfinished.data);
    if (!st && missing.len)
        dg_file(o->sink, SURG_NOTE, "ob-missing-item", o->dir,
                "_CHECKPOINT_METADATA lists items that are not here, skipped: %s",
                missing.data);
    buf_free(&unfinished);
    buf_free(&missing);
    buf_free(&other);
    names_free(&d);
    return st;
}

/* The root of a CheckpointManager: refused, naming its steps. */
static surg_status refuse_steps(ob_open *o)
{
    ob_names d;
    if (!list_subdirs(o->dir, &d))
        return dg_errno(o->sink, o->dir, "cannot list the directory", errno ? errno : ENOMEM);
    const char **steps = malloc((d.n ? d.n : 1) * sizeof *steps);
    size_t n = 0;
    for (size_t i = 0; steps && i < d.n; i++) {
        char sub[4096];
        if (is_step_name(d.v[i]) && !is_unfinished(d.v[i]) &&
            (size_t)snprintf(sub, sizeof sub, "%s/%s", o->dir, d.v[i]) < sizeof sub &&
            (is_marked_item(sub) || is_marked_step(sub)))
            steps[n++] = d.v[i];
    }
    for (size_t i = 1; steps && i < n; i++) /* natural order: 9 before 10 (few steps) */
        for (size_t k = i; k > 0 && natural_cmp(steps[k - 1], steps[k]) > 0; k--) {
            const char *t = steps[k];
            steps[k] = steps[k - 1];
            steps[k - 1] = t;
        }
    buf b;
    buf_init(&b);
    for (size_t i = 0; steps && i < n && i < 8; i++)
        buf_printf(&b, "%s%s", i ? ", " : "", steps[i]);
    if (n > 8)
        buf_printf(&b, " and %zu more", n - 8);
    surg_status st;
    if (!steps || b.failed)
        st = dg_nomem(o->sink, o->dir);
    else
        st = bad(o, o->dir, "ob-steps",
                 "the directory holds the steps of a CheckpointManager (%s), not one "
                 "checkpoint: open one of them, as %s%s%s",
                 b.data, o->dir, o->dir[strlen(o->dir) - 1] == '/' ? "" : "/", steps[n - 1]);
    buf_free(&b);
    free(steps);
    names_free(&d);
    return st;
}

/* ---- the reader ------------------------------------------------------------- */

static surg_status note_leaves(ob_open *o)
{
    if (o->n_json_items) {
        buf b;
        buf_init(&b);
        for (size_t i = 0; i < o->n_json_items && i < OB_SHOWN; i++)
            buf_printf(&b, "%s\"%s\"", i ? ", " : "", o->json_items[i]);
        if (o->n_json_items > OB_SHOWN)
            buf_printf(&b, " and %zu more", o->n_json_items - OB_SHOWN);
        if (b.failed) {
            buf_free(&b);
            return dg_nomem(o->sink, o->dir);
        }
        dg_file(o->sink, SURG_NOTE, "ob-json-item", o->dir,
                "item%s %s hold%s JSON, not tensors: skipped", o->n_json_items > 1 ? "s" : "",
                b.data, o->n_json_items > 1 ? "" : "s");
        buf_free(&b);
    }
    if (!o->n_skipped)
        return SURG_OK;
    buf b;
    buf_init(&b);
    for (size_t i = 0; i < o->n_skipped && i < OB_SHOWN; i++)
        buf_printf(&b, "%s\"%s\"", i ? ", " : "", o->skipped[i]);
    if (o->n_skipped > OB_SHOWN)
        buf_printf(&b, " and %zu more", o->n_skipped - OB_SHOWN);
    if (b.failed) {
        buf_free(&b);
        return dg_nomem(o->sink, o->dir);
    }
    dg_file(o->sink, SURG_NOTE, "ob-not-tensor", o->dir,
            "%zu value%s %s not an array (strings, numbers, None, empty containers), so not "
            "a tensor: %s; %s",
            o->n_skipped, o->n_skipped > 1 ? "s" : "", o->n_skipped > 1 ? "are" : "is",
            b.data,
            o->n_dropped ? "not all could be kept (a string not in _strings.json, or over 64 "
                           "KiB in all): none are kept"
                         : "kept in the metadata \"" MP_TREE_KEY "\" for a .msgpack output");
    buf_free(&b);
    return SURG_OK;
}

/* The directory's own table (the first): what was read, and the tree kept
 * (the values only when all could be). */
static surg_status finish(ob_open *o)
{
    fmt_table *t = &o->t[0];
    t->root = o->dir;
    t->reads = o->reads;
    t->n_reads = o->n_reads;
    surg_status st = note_leaves(o);
    if (st || !o->n_spans)
        return st;
    buf v;
    buf_init(&v);
    buf_putc(&v, '{');
    size_t k = 0;
    for (size_t i = 0; i < o->n_spans; i++) {
        const struct ob_span *x = &o->spans[i];
        if (x->value && o->n_dropped)
            continue;
        const char *text = o->tree.data + x->from;
        size_t len = x->to - x->from;
        if (x->from) { /* each span but the first begins with ", " */
            text += 2;
            len -= 2;
        }
        buf_puts(&v, k++ ? ", " : "");
        buf_append(&v, text, len);
    }
    buf_putc(&v, '}');
    char *value = v.failed ? NULL : ar_strdup(o->keep, v.data);
    buf_free(&v);
    if (!k)
        return SURG_OK;
    t->h[0].meta = malloc(sizeof *t->h[0].meta);
    if (!value || !t->h[0].meta)
        return dg_nomem(o->sink, o->dir);
    t->h[0].meta[t->h[0].n_meta++] = (surg_meta_entry){MP_TREE_KEY, value};
    return SURG_OK;
}

static surg_status ob_open_dir(arena *keep, surg_sink *sink, const char *dir, fmt_table **tables,
                               size_t *n)
{
    long page = sysconf(_SC_PAGESIZE);
    ob_open o = {.keep = keep, .sink = sink, .dir = dir,
                 .page = page > 0 ? (uint64_t)page : 4096};
    buf_init(&o.tree);
    size_t first;
    surg_status st = add_table(&o, &first);
    if (!st) {
        switch (classify(dir)) {
        case OB_ITEM: st = open_item(&o, dir, NULL); break;
        case OB_COMPOSITE: st = open_composite(&o); break;
        case OB_STEPS: st = refuse_steps(&o); break;
        case OB_NOT:
            st = bad(&o, dir, "ob-not-orbax",
                     "the directory is not an Orbax checkpoint: it has no _METADATA, "
                     "manifest.ocdbt, aggregate checkpoint file or zarr arrays, and no items "
                     "or steps that have");
            break;
        }
    }
    if (!st)
        st = finish(&o);
    buf_free(&o.tree);
    free(o.spans);
    if (st) {
        fmt_tables_free(o.t, o.n_t);
        return st;
    }
    *tables = o.t;
    *n = o.n_t;
    return SURG_OK;
}

/* A file is never an Orbax checkpoint: its directory is. */
static const char *const ob_suffixes[] = {NULL};

const fmt_reader fmt_orbax = {
    .id = "orbax",
    .suffixes = ob_suffixes,
    .sniff_dir = ob_sniff_dir,
    .open_dir = ob_open_dir,
    .called = "an Orbax checkpoint",
    .writes = true,
    .writer = &ow_writer,
    .names = TN_ORBAX,
    .paths_meta = MP_TREE_KEY,
};

/* ---- the zarr arrays (zarr.h) ---------------------------------------------- */


/* The zarr metadata agrees with _METADATA: a scalar is 0-d; write_shape
 * (the shape each host wrote) has the array's rank and fits in it. */
static surg_status check_shape(ob_store *s, const ob_leaf *l, const zarr_array *a)
{
    char shown[80];
    if (l->type == OB_SCALAR && a->rank != 0)
        return bad(s->o, s->item, "ob-shape",
                   "_METADATA says \"%s\" is a scalar, but its zarr array has %u dimensions",
                   tn_short(l->name, shown, 64), a->rank);
    if (!l->has_shape)
        return SURG_OK;
    bool fits = l->rank == a->rank;
    for (uint32_t d = 0; fits && d < a->rank; d++)
        fits = l->shape[d] <= (a->shape[d] ? a->shape[d] : 1);
    if (fits)
        return SURG_OK;
    buf w, z;
    buf_init(&w);
    buf_init(&z);
    for (uint32_t d = 0; d < l->rank; d++)
        buf_printf(&w, "%s%llu", d ? ", " : "", (unsigned long long)l->shape[d]);
    for (uint32_t d = 0; d < a->rank; d++)
        buf_printf(&z, "%s%llu", d ? ", " : "", (unsigned long long)a->shape[d]);
    surg_status st = w.failed || z.failed
                         ? dg_nomem(s->o->sink, s->item)
                         : bad(s->o, s->item, "ob-shape",
                               "_METADATA says \"%s\" was written in shape [%s], which does "
                               "not fit its zarr array's shape [%s]",
                               tn_short(l->name, shown, 64), w.data, z.data);
    buf_free(&w);
    buf_free(&z);
    return st;
}

static surg_status store_array(ob_store *s, const ob_leaf *l, const char *param,
                               const char *name)
{
    ob_open *o = s->o;
    surg_status st = name ? store_table(s) : dg_nomem(o->sink, s->item);
    if (!st)
        st = open_store(s);
    zarr_array *a = NULL;
    int format = s->tr->inferred ? 0 : s->tr->use_zarr3 ? 3 : 2;
    if (!st)
        st = zarr_open(o->keep, s->kv, param, format, o->sink, &a);
    char shown[80];
    if (!st && !a)
        return bad(o, s->item, "ob-missing",
                   "the array \"%s\" is not in the checkpoint: %s has no %s/%s",
                   tn_short(l->name, shown, 64),
                   s->kv == NULL ? "the store" : s->aggregate ? "the directory"
                                                              : "the item's store",
                   param, format == 3 ? "zarr.json" : ".zarray");
    if (!st)
        st = check_shape(s, l, a);
    dc_source *src = st ? NULL : ar_alloc(o->keep, sizeof *src);
    if (!st && !src)
        st = dg_nomem(o->sink, s->item);
    /* A missing chunk is the fill value unless Orbax stored chunks equal to
     * it (then a missing one is lost data). */
    if (!st)
        st = zarr_source(o->keep, a, s->kv, !s->tr->stored_fill, name, src, o->sink);
    if (st)
        return st;
    fmt_table *t = &o->t[s->table];
    st_entry *x = fmt_add_entry(t, 1, s->cap);
    if (!x)
        return dg_nomem(o->sink, s->item);
    /* Never NULL, as every reader gives it (a 0-d zarr array has none). */
    uint64_t *shape = ar_array(o->keep, a->rank ? a->rank : 1, sizeof *shape);
    if (!shape)
        return dg_nomem(o->sink, s->item);
    if (a->rank)
        memcpy(shape, a->shape, a->rank * sizeof *shape);
    surg_tensor_info info = {name, a->dtype, a->rank, shape, a->nelems, a->nbytes};
    t->src[t->h[1].n - 1] = src;
    *x = (st_entry){info, t->scratch_size, t->scratch_size + a->nbytes};
    uint64_t end = t->scratch_size + a->nbytes;
    t->scratch_size = end + (o->page - end % o->page) % o->page;
    return tree_put(o, name, l->type == OB_SCALAR && !a->rank ? MP_TREE_SCALAR : MP_TREE_ARRAY,
                    false);
}

/* ---- a tree inferred --------------------------------------------------- */

typedef struct ob_found {
    ob_open *o;
    const char *item;
    ob_leaf *v;
    size_t n, cap;
    surg_status st;
} ob_found;

/* The array of param name `param` (len bytes), as a leaf "a/b" of "a.b". */
static int found_array(ob_found *f, const char *param, size_t len)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        ob_leaf *v = realloc(f->v, cap * sizeof *v);
        if (!v) {
            f->st = dg_nomem(f->o->sink, f->item);
            return 1;
        }
        f->v = v;
        f->cap = cap;
    }
    char *p = ar_strndup(f->o->keep, param, len), *name = ar_strndup(f->o->keep, param, len);
    if (!p || !name) {
        f->st = dg_nomem(f->o->sink, f->item);
        return 1;
    }
    for (char *c = name; *c; c++)
        *c = *c == '.' ? '/' : *c;
    const char *why = tn_format_problem(name, len, TN_MSGPACK);
    if (why || !len || name[0] == '/' || name[len - 1] == '/') {
        char shown[80];
        f->st = bad(f->o, f->item, "ob-name",
                    "the array \"%s\" cannot be named \"%s\" (\".\" read as \"/\"): %s",
                    tn_short(p, shown, 64), name, why ? why : "an empty segment");
        return 1;
    }
    f->v[f->n++] = (ob_leaf){.name = name, .param = p, .type = OB_ARRAY};
    return 0;
}

static int found_key(void *ctx, const char *key, size_t len, const kv_value *v)
{
    (void)v;
    static const char *const ends[] = {"/.zarray", "/zarr.json"};
    for (size_t i = 0; i < 2; i++) {
        size_t k = strlen(ends[i]);
        if (len > k && memcmp(key + len - k, ends[i], k) == 0 &&
            !memchr(key, '/', len - k))
            return found_array(ctx, key, len - k);
    }
    return 0;
}

static surg_status infer_tree(ob_open *o, ob_store *s, ob_tree *tr)
{
    ob_found f = {.o = o, .item = s->item};
    surg_status st = store_table(s);
    if (!st)
        st = open_store(s);
    bool ocdbt = has(s->item, "manifest.ocdbt", '?');
    if (!st && ocdbt) {
        int stopped = 0;
        st = s->kv->ops->list(s->kv, "", o->sink, found_key, &f, &stopped);
        st = st ? st : f.st;
    } else if (!st) {
        ob_names d;
        if (!list_subdirs(s->item, &d))
            st = dg_errno(o->sink, s->item, "cannot list the directory", errno ? errno : ENOMEM);
        for (size_t i = 0; !st && i < d.n; i++) {
            char *sub = join(o->keep, s->item, d.v[i]);
            if (!sub)
                st = dg_nomem(o->sink, s->item);
            else if (!is_unfinished(d.v[i]) &&
                     (has(sub, ".zarray", 'f') || has(sub, "zarr.json", 'f')) &&
                     found_array(&f, d.v[i], strlen(d.v[i])))
                st = f.st;
        }
        if (!st && d.more)
            st = bad(o, s->item, "ob-too-many",
                     "the directory has more than %u entries: surg looks at no more for "
                     "arrays", OB_MAX_ENTRIES);
        names_free(&d);
    }
    if (!st)
        st = check_paths(o, s->item, f.v, f.n);
    if (!st) {
        tr->v = ar_array(o->keep, f.n ? f.n : 1, sizeof *tr->v);
        if (!tr->v)
            st = dg_nomem(o->sink, s->item);
        else if (f.n)
            memcpy(tr->v, f.v, f.n * sizeof *f.v);
        tr->n = f.n;
    }
    free(f.v);
    if (!st)
        dg_file(o->sink, SURG_NOTE, "ob-inferred", s->item,
                "no _METADATA: the tree is inferred from the %zu array%s found, each named "
                "by its name in the store with \".\" read as \"/\" (a key that held a \".\" "
                "cannot be told apart)",
                tr->n, tr->n == 1 ? "" : "s");
    return st;
}

