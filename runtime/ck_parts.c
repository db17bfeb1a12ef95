/* ck_parts.c: a checkpoint of mounted parts — the named inputs of
 * `--in NAME=PATH` and the `--params/--state` pair, which are two inputs
 * named "params" and "opt_state": each part opened as a checkpoint and
 * mounted under its prefix, their files and tensors taken into one table.
 * The parts stay in the order given (the first is the one whose metadata
 * the whole has); the table is joined in order of the prefixes. */
#include <stdlib.h>
#include <string.h>

#include "support/buf.h"
#include "runtime/checkpoint.h"
#include "support/diag.h"

/* A part to open: where it is mounted, its file, its format. */
typedef struct mount {
    const char *prefix, *path, *format;
    const char *name; /* the input's name, for messages; NULL: a part */
} mount;

const surg_ckpt *surg_ckpt_part_at(const surg_ckpt *ck, size_t i, const char **prefix)
{
    if (!ck->n_parts) {
        *prefix = "";
        return i ? NULL : ck;
    }
    if (i >= ck->n_parts)
        return NULL;
    *prefix = ck->part_prefix[i];
    return ck->parts[i];
}

const surg_ckpt *surg_ckpt_mounted(const surg_ckpt *ck, const char *prefix)
{
    for (size_t i = 0; i < ck->n_parts; i++)
        if (strcmp(ck->part_prefix[i], prefix) == 0)
            return ck->parts[i];
    return ck;
}

int surg_input_name_ok(const char *name)
{
    size_t n = 0;
    for (; name[n]; n++) {
        char c = name[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || (c == '-' && n > 0);
        if (!ok || n >= SURG_INPUT_NAME_MAX)
            return 0;
    }
    return n > 0;
}

/* `name` under `prefix`, in the arena. */
static char *prefixed(arena *ar, const char *prefix, const char *name)
{
    size_t p = strlen(prefix), n = strlen(name);
    char *s = ar_alloc(ar, p + n + 1);
    if (s) {
        memcpy(s, prefix, p);
        memcpy(s + p, name, n + 1);
    }
    return s;
}

/* The parts' recorded ties, each name under its part's prefix; in order,
 * since `by` lists the parts in order of their prefixes and no prefix
 * starts another. */
static surg_status join_ties(surg_ckpt *ck, const size_t *by, surg_sink *sink)
{
    size_t n = 0;
    for (size_t p = 0; p < ck->n_parts; p++)
        n += ck->parts[p]->n_ties;
    ck->ties = ar_array(&ck->ar, n ? n : 1, sizeof *ck->ties);
    if (!ck->ties)
        return dg_nomem(sink, ck->path);
    for (size_t q = 0; q < ck->n_parts; q++) {
        const surg_ckpt *part = ck->parts[by[q]];
        const char *prefix = ck->part_prefix[by[q]];
        for (size_t i = 0; i < part->n_ties; i++) {
            const surg_meta_entry *t = &part->ties[i];
            surg_meta_entry *e = &ck->ties[ck->n_ties++];
            e->key = prefixed(&ck->ar, prefix, t->key);
            e->value = prefixed(&ck->ar, prefix, t->value);
            if (!e->key || !e->value)
                return dg_nomem(sink, ck->path);
        }
    }
    return SURG_OK;
}

/* Take the parts' files and tensors: the parts in order of their prefixes
 * (`by`), each already sorted, make one sorted table, each part's tensors
 * a run of it (no prefix starts another, so every name under one prefix
 * sorts before every name under a greater one). The metadata of the whole
 * is the first part's: an output holding the tensors of several inputs
 * takes the first input's metadata. */
static surg_status join_parts(surg_ckpt *ck, const size_t *by, surg_sink *sink)
{
    size_t n = 0, n_files = 0;
    ck->kind = SURG_CKPT_SHARDED;
    for (size_t p = 0; p < ck->n_parts; p++) {
        n += ck->parts[p]->n;
        n_files += ck->parts[p]->n_files;
        if (ck->parts[p]->kind == SURG_CKPT_SCHEMA)
            ck->kind = SURG_CKPT_SCHEMA;
    }
    ck->tensors = ar_array(&ck->ar, n ? n : 1, sizeof *ck->tensors);
    ck->file_of = ar_array(&ck->ar, n ? n : 1, sizeof *ck->file_of);
    ck->offset = ar_array(&ck->ar, n ? n : 1, sizeof *ck->offset);
    ck->files = ar_array(&ck->ar, n_files ? n_files : 1, sizeof *ck->files);
    ck->dec = ar_array(&ck->ar, n ? n : 1, sizeof *ck->dec);
    if (!ck->tensors || !ck->file_of || !ck->offset || !ck->files || !ck->dec)
        return dg_nomem(sink, ck->path);
    for (size_t q = 0; q < ck->n_parts; q++) {
        surg_ckpt *part = ck->parts[by[q]];
        const char *prefix = ck->part_prefix[by[q]];
        for (size_t i = 0; i < part->n; i++) {
            surg_tensor_info t = part->tensors[i];
            t.name = prefixed(&ck->ar, prefix, t.name);
            if (!t.name)
                return dg_nomem(sink, ck->path);
            ck->tensors[ck->n] = t;
            ck->file_of[ck->n] = (uint32_t)ck->n_files + part->file_of[i];
            ck->dec[ck->n] = part->dec ? part->dec[i] : NULL;
            ck->offset[ck->n++] = part->offset[i];
        }
        /* The files move here: the part keeps its arena (their paths, the
         * shapes) until the whole closes. */
        memcpy(ck->files + ck->n_files, part->files, part->n_files * sizeof *part->files);
        ck->n_files += part->n_files;
        part->n_files = 0;
    }
    if (ck->n_parts) {
        ck->meta = ck->parts[0]->meta;
        ck->n_meta = ck->parts[0]->n_meta;
    }
    return join_ties(ck, by, sink);
}

/* A part's prefix and its place in the order given, to sort. */
typedef struct keyed {
    const char *prefix;
    size_t i;
} keyed;

static int by_prefix(const void *a, const void *b)
{
    return strcmp(((const keyed *)a)->prefix, ((const keyed *)b)->prefix);
}

/* The prefixes in order (by[]), each ending with '/' and none starting
 * another (an input named twice is said as such). */
static surg_status check_prefixes(const mount *m, const size_t *by, size_t n, surg_sink *sink)
{
    surg_status st = SURG_OK;
    for (size_t q = 0; q < n; q++) {
        const mount *x = &m[by[q]], *prev = q ? &m[by[q - 1]] : NULL;
        size_t len = strlen(x->prefix);
        bool nested = prev && strncmp(x->prefix, prev->prefix, strlen(prev->prefix)) == 0;
        if (x->name && nested && strcmp(x->prefix, prev->prefix) == 0) {
            dg_file(sink, SURG_ERROR, "input-twice", x->path,
                    "the input name \"%s\" is given twice (for %s and %s)", x->name,
                    m[by[q - 1] < by[q] ? by[q - 1] : by[q]].path,
                    m[by[q - 1] < by[q] ? by[q] : by[q - 1]].path);
            st = SURG_EUSAGE;
        } else if (!len || x->prefix[len - 1] != '/' || nested) {
            dg_file(sink, SURG_ERROR, "ck-parts", x->path,
                    "the prefix \"%s\" must end with '/' and not start with another part's",
                    x->prefix);
            st = SURG_EUSAGE;
        }
    }
    return st;
}

static surg_status open_mounted(const mount *m, size_t n, surg_sink *sink, surg_ckpt **out)
{
    *out = NULL;
    size_t *by = malloc((n ? n : 1) * sizeof *by);
    keyed *k = malloc((n ? n : 1) * sizeof *k);
    surg_ckpt *ck = calloc(1, sizeof *ck);
    if (!by || !k || !ck) {
        free(by);
        free(k);
        free(ck);
        return dg_nomem(sink, "surg");
    }
    ar_init(&ck->ar);
    for (size_t i = 0; i < n; i++)
        k[i] = (keyed){m[i].prefix, i};
    qsort(k, n, sizeof *k, by_prefix);
    for (size_t i = 0; i < n; i++)
        by[i] = k[i].i;
    free(k);
    buf path;
    buf_init(&path);
    for (size_t i = 0; i < n; i++)
        buf_printf(&path, "%s%s", i ? " + " : "", m[i].path);
    ck->path = path.failed ? NULL : ar_strdup(&ck->ar, path.data ? path.data : "");
    buf_free(&path);
    ck->parts = calloc(n ? n : 1, sizeof *ck->parts);
    surg_status st = ck->path && ck->parts ? SURG_OK : dg_nomem(sink, "surg");
    if (!st)
        st = check_prefixes(m, by, n, sink);
    /* Every part is opened, so every broken one is reported. */
    ck->part_prefix = ar_array(&ck->ar, n ? n : 1, sizeof *ck->part_prefix);
    ck->n_parts = ck->parts && ck->part_prefix ? n : 0; /* closing skips those that failed */
    for (size_t i = 0; i < ck->n_parts; i++) {
        ck->part_prefix[i] = ar_strdup(&ck->ar, m[i].prefix);
        st = st ? st : ck->part_prefix[i] ? SURG_OK : dg_nomem(sink, "surg");
        surg_status one = surg_ckpt_open_as(m[i].path, m[i].format, sink, &ck->parts[i]);
        st = st ? st : one;
    }
    if (!st)
        st = join_parts(ck, by, sink);
    free(by);
    if (st) {
        surg_ckpt_close(ck);
        return st;
    }
    *out = ck;
    return SURG_OK;
}

surg_status surg_ckpt_open_parts(const surg_ckpt_part *parts, size_t n, surg_sink *sink,
                                 surg_ckpt **out)
{
    mount *m = malloc((n ? n : 1) * sizeof *m);
    if (!m) {
        *out = NULL;
        return dg_nomem(sink, "surg");
    }
    for (size_t i = 0; i < n; i++)
        m[i] = (mount){parts[i].prefix, parts[i].path, NULL, NULL};
    surg_status st = open_mounted(m, n, sink, out);
    free(m);
    return st;
}

surg_status surg_ckpt_open_inputs(const surg_input *inputs, size_t n, surg_sink *sink,
                                  surg_ckpt **out)
{
    *out = NULL;
    if (n == 0) {
        dg_file(sink, SURG_ERROR, "input-none", "surg", "no input is given");
        return SURG_EUSAGE;
    }
    arena ar;
    ar_init(&ar);
    mount *m = ar_array(&ar, n, sizeof *m);
    surg_status st = m ? SURG_OK : dg_nomem(sink, "surg");
    for (size_t i = 0; !st && i < n; i++) {
        const surg_input *x = &inputs[i];
        if (!surg_input_name_ok(x->name)) {
            dg_file(sink, SURG_ERROR, "input-name", x->path,
                    "\"%s\" cannot name an input: a name is one segment of at most %d "
                    "letters, digits, '_' and '-', not starting with '-'",
                    x->name, SURG_INPUT_NAME_MAX);
            st = SURG_EUSAGE;
            continue;
        }
        char *prefix = prefixed(&ar, x->name, "/");
        if (!prefix)
            st = dg_nomem(sink, "surg");
        else
            m[i] = (mount){prefix, x->path, x->format, x->name};
    }
    if (!st)
        st = open_mounted(m, n, sink, out);
    ar_free(&ar);
    return st;
}
