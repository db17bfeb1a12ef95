/* index_write.c: completing a partitioned output (surg_index_write). What
 * it trusts is what the shards say of themselves: their names (number and
 * count), surg's mark, the plan digest every file of one output carries,
 * and their validated headers; it writes the index a whole run writes,
 * from those headers alone, once every shard is there. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/outfile.h"
#include "runtime/outpath.h"
#include "runtime/safetensors.h"
#include "runtime/st_write.h"
#include "support/diag.h"
#include "support/strsort.h"

/* Names shown in one message, at most. */
#define SHOWN 4

/* A shard found: its number (from 0) and name. */
typedef struct found {
    uint64_t i;
    char *name;
} found;

typedef struct shards {
    shard_names sn;
    found *v;
    size_t n, cap;
    uint64_t m;         /* the count the names give */
    const char *odd[SHOWN]; /* names of another count, or not surg's spelling */
    size_t n_odd;
} shards;

static int by_number(const void *x, const void *y)
{
    const found *a = x, *b = y;
    return a->i < b->i ? -1 : a->i > b->i;
}

/* The shard names in the directory, in order; those of another count than
 * the first (or spelt otherwise) noted in s->odd. */
static surg_status list_shards(surg_sink *sink, const char *out_path, shards *s)
{
    DIR *d = opendir(s->sn.dir);
    if (!d)
        return dg_errno(sink, s->sn.dir, "cannot list the output directory", errno);
    surg_status st = SURG_OK;
    size_t n_odd_all = 0;
    for (struct dirent *e; !st && (e = readdir(d)) != NULL;) {
        uint64_t i, m;
        if (!outp_owns(s->sn.prefix, e->d_name) ||
            strcmp(e->d_name + strlen(s->sn.prefix), ".safetensors.index.json") == 0)
            continue;
        if (!stw_shard_number(s->sn.prefix, e->d_name, &i, &m) || (s->n && m != s->m)) {
            if (s->n_odd < SHOWN && !(s->odd[s->n_odd++] = strdup(e->d_name)))
                st = dg_nomem(sink, out_path);
            n_odd_all++;
            continue;
        }
        if (s->n == s->cap) {
            size_t cap = s->cap ? 2 * s->cap : 16;
            found *v = realloc(s->v, cap * sizeof *v);
            if (!v) {
                st = dg_nomem(sink, out_path);
                break;
            }
            s->v = v;
            s->cap = cap;
        }
        s->m = m;
        if (!(s->v[s->n].name = strdup(e->d_name)))
            st = dg_nomem(sink, out_path);
        else
            s->v[s->n++].i = i;
    }
    closedir(d);
    if (st)
        return st;
    if (s->n)
        qsort(s->v, s->n, sizeof *s->v, by_number);
    if (n_odd_all) {
        buf b;
        buf_init(&b);
        for (size_t k = 0; k < s->n_odd; k++)
            buf_printf(&b, "%s%s", k ? ", " : "", s->odd[k]);
        if (n_odd_all > s->n_odd)
            buf_printf(&b, " and %zu more", n_odd_all - s->n_odd);
        if (s->n)
            dg_file(sink, SURG_ERROR, "index-mixed", s->sn.dir,
                    "the shards here are of more than one output: %s beside %s (of %llu): "
                    "re-run any part of the output (each removes the files of earlier "
                    "outputs), or move them away",
                    b.failed ? "?" : b.data, s->v[0].name, (unsigned long long)s->m);
        else
            dg_file(sink, SURG_ERROR, "index-mixed", s->sn.dir,
                    "%s: not named as surg names shards (%s-NNNNN-of-MMMMM.safetensors, "
                    "N from 1 to M, five digits or more): move them away",
                    b.failed ? "?" : b.data, s->sn.prefix);
        buf_free(&b);
        return SURG_EINVALID;
    }
    if (!s->n) {
        dg_file(sink, SURG_ERROR, "index-missing", s->sn.dir,
                "no shard of a sharded output is here (%s-NNNNN-of-MMMMM.safetensors): run "
                "the parts first",
                s->sn.prefix);
        return SURG_EINVALID;
    }
    return SURG_OK;
}

/* Every shard the count names and the directory lacks: one error. */
static surg_status check_missing(surg_sink *sink, const shards *s)
{
    if (s->n == s->m)
        return SURG_OK;
    buf b;
    buf_init(&b);
    uint64_t missing = s->m - s->n, shown = 0;
    size_t k = 0;
    for (uint64_t i = 0; i < s->m && shown < SHOWN; i++) {
        while (k < s->n && s->v[k].i < i)
            k++;
        if (k < s->n && s->v[k].i == i)
            continue;
        buf_puts(&b, shown++ ? ", " : "");
        stw_put_shard_name(&b, s->sn.prefix, i, s->m);
    }
    if (missing > shown)
        buf_printf(&b, " and %llu more", (unsigned long long)(missing - shown));
    dg_file(sink, SURG_ERROR, "index-missing", s->sn.dir,
            "%llu of the %llu shards %s missing: %s; the index is written once every part "
            "is done",
            (unsigned long long)missing, (unsigned long long)s->m, missing == 1 ? "is" : "are",
            b.failed ? "?" : b.data);
    buf_free(&b);
    return SURG_EINVALID;
}

/* A tensor of the output, in the shard it is in. */
typedef struct named {
    const char *name; /* first: the key ss_sort sorts by */
    const char *file;
    uint64_t nbytes;
} named;

typedef struct tensors {
    arena ar;
    named *v;
    size_t n, cap;
    const char *digest; /* the first shard's (or the one asked for) */
    const char *digest_from;
} tensors;

static const char *meta_of(const st_header *h, const char *key)
{
    for (size_t i = 0; i < h->n_meta; i++)
        if (strcmp(h->meta[i].key, key) == 0)
            return h->meta[i].value;
    return NULL;
}

/* One shard: a regular file of surg's, of the same plan as the others; its
 * tensors added. */
static surg_status read_shard(surg_sink *sink, const shards *s, const found *f, tensors *t)
{
    buf path;
    buf_init(&path);
    buf_printf(&path, "%s/%s", s->sn.dir, f->name);
    char *p = buf_take(&path);
    if (!p)
        return dg_nomem(sink, s->sn.dir);
    struct stat sb;
    surg_status st = SURG_OK;
    if (lstat(p, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        dg_file(sink, SURG_ERROR, "index-shard", p, "not a regular file: a shard surg wrote is one");
        free(p);
        return SURG_EINVALID;
    }
    st_file file;
    st_header h;
    st = st_open(&t->ar, sink, p, &file, &h);
    if (st) {
        free(p);
        return st;
    }
    st_close(&file);
    const char *mark = meta_of(&h, OUTP_MARK_KEY), *plan = meta_of(&h, OUTP_PLAN_KEY);
    if (!mark || strcmp(mark, OUTP_MARK_VALUE) != 0 || !plan) {
        dg_file(sink, SURG_ERROR, "index-shard", p,
                "not a shard of a sharded output of surg run (no \"" OUTP_MARK_KEY "\": \""
                OUTP_MARK_VALUE "\" and \"" OUTP_PLAN_KEY "\" in its metadata)");
        st = SURG_EINVALID;
    } else if (!t->digest) {
        t->digest = ar_strdup(&t->ar, plan);
        t->digest_from = ar_strdup(&t->ar, f->name);
        if (!t->digest || !t->digest_from)
            st = dg_nomem(sink, p);
    } else if (strcmp(plan, t->digest) != 0) {
        dg_file(sink, SURG_ERROR, "index-mixed", p,
                "written by another plan (\"" OUTP_PLAN_KEY "\": \"%s\") than %s (\"%s\"): run "
                "its part again with the same recipe, inputs and --max-shard-size",
                plan, t->digest_from, t->digest);
        st = SURG_EINVALID;
    }
    const char *base = st ? NULL : ar_strdup(&t->ar, f->name);
    if (!st && !base)
        st = dg_nomem(sink, p);
    for (size_t i = 0; !st && i < h.n; i++) {
        if (t->n == t->cap) {
            size_t cap = t->cap ? 2 * t->cap : 64;
            named *v = realloc(t->v, cap * sizeof *v);
            if (!v) {
                st = dg_nomem(sink, p);
                break;
            }
            t->v = v;
            t->cap = cap;
        }
        t->v[t->n++] = (named){h.entries[i].info.name, base, h.entries[i].info.nbytes};
    }
    st_header_free(&h);
    free(p);
    return st;
}

/* The tensors in byte order of names, each once. */
static surg_status sort_tensors(surg_sink *sink, const char *dir, tensors *t)
{
    if (ss_sort(t->v, t->n, sizeof *t->v) != 0)
        return dg_nomem(sink, dir);
    for (size_t i = 1; i < t->n; i++)
        if (strcmp(t->v[i - 1].name, t->v[i].name) == 0) {
            dg_file(sink, SURG_ERROR, "index-mixed", dir,
                    "tensor \"%s\" is in %s and in %s: these shards are not of one output",
                    t->v[i].name, t->v[i - 1].file, t->v[i].file);
            return SURG_EINVALID;
        }
    return SURG_OK;
}

/* The index, through a temporary file renamed into place; what stands at
 * its name must be nothing or an index of surg's. */
static surg_status write_index(surg_sink *sink, const shards *s, const tensors *t,
                               uint64_t *total)
{
    buf path, text;
    buf_init(&path);
    buf_init(&text);
    buf_printf(&path, "%s/%s.safetensors.index.json", s->sn.dir, s->sn.prefix);
    const char **names = malloc((t->n ? t->n : 1) * sizeof *names);
    const char **files = malloc((t->n ? t->n : 1) * sizeof *files);
    *total = 0;
    for (size_t i = 0; names && files && i < t->n; i++) {
        names[i] = t->v[i].name;
        files[i] = t->v[i].file;
        *total += t->v[i].nbytes;
    }
    surg_status st = path.failed || !names || !files ||
                             stw_index_text(&text, names, files, t->n, *total)
                         ? dg_nomem(sink, s->sn.dir)
                         : SURG_OK;
    free(names);
    free(files);
    struct stat sb;
    if (!st && text.len > ST_MAX_HEADER) {
        dg_file(sink, SURG_ERROR, "out-header-too-large", path.data,
                "the index would be %zu bytes, more than the %u a reader accepts: shorten the "
                "names",
                text.len, ST_MAX_HEADER);
        st = SURG_EINVALID;
    }
    if (!st && lstat(path.data, &sb) == 0 && (!S_ISREG(sb.st_mode) || !outp_is_ours(path.data))) {
        dg_file(sink, SURG_ERROR, "out-stale", path.data,
                "surg did not write the file at the index's name (no \"" OUTP_MARK_KEY "\": \""
                OUTP_MARK_VALUE "\" in its metadata), so it is not replaced: move it away");
        st = SURG_EUSAGE;
    }
    of_file *f = NULL;
    if (!st)
        st = of_create(sink, path.data, &f);
    if (!st)
        st = of_write(f, sink, text.data, text.len);
    if (!st)
        st = of_finish(f, sink);
    if (!st) {
        st = of_commit(f, sink);
        f = NULL;
    }
    of_abort(f);
    buf_free(&path);
    buf_free(&text);
    return st;
}

surg_status surg_index_write(const char *out_path, const char *digest, surg_index_info *info,
                             surg_sink *sink)
{
    surg_index_info local;
    info = info ? info : &local;
    *info = (surg_index_info){0};
    shards s = {0};
    tensors t = {.digest = digest, .digest_from = "this run's plan"};
    ar_init(&t.ar);
    surg_status st = stw_shard_place(sink, out_path, &s.sn);
    if (!st)
        st = list_shards(sink, out_path, &s);
    /* Every shard there is read, so every wrong one is named. */
    bool listed = !st;
    for (size_t k = 0; listed && k < s.n && (!st || st == SURG_EINVALID); k++) {
        surg_status x = read_shard(sink, &s, &s.v[k], &t);
        st = x > st ? x : st;
    }
    if (listed && (!st || st == SURG_EINVALID)) {
        surg_status x = check_missing(sink, &s);
        st = x > st ? x : st;
    }
    if (!st)
        st = sort_tensors(sink, s.sn.dir, &t);
    info->shards = s.n;
    info->tensors = t.n;
    if (!st && t.digest)
        snprintf(info->digest, sizeof info->digest, "%s", t.digest);
    if (!st && s.m > 1) {
        st = write_index(sink, &s, &t, &info->bytes);
        info->written = !st;
    } else {
        for (size_t i = 0; i < t.n; i++)
            info->bytes += t.v[i].nbytes;
    }
    for (size_t k = 0; k < s.n; k++)
        free(s.v[k].name);
    for (size_t k = 0; k < s.n_odd; k++)
        free((char *)s.odd[k]);
    free(s.v);
    free(t.v);
    ar_free(&t.ar);
    free(s.sn.dir);
    free(s.sn.prefix);
    return st;
}
