/* ck_parts.c: a checkpoint of parts (--params/--state): each part opened
 * as a checkpoint and mounted under its prefix, their files and tensors
 * taken into one table. */
#include <stdlib.h>
#include <string.h>

#include "support/buf.h"
#include "runtime/checkpoint.h"
#include "support/diag.h"

static int part_cmp(const void *a, const void *b)
{
    return strcmp(((const surg_ckpt_part *)a)->prefix, ((const surg_ckpt_part *)b)->prefix);
}

/* The parts' metadata together, sorted by key (for a reader of the whole;
 * each output written from it takes its own part's), the first part's value
 * where two differ. */
static surg_status join_meta(surg_ckpt *ck, surg_sink *sink)
{
    size_t total = 0;
    for (size_t p = 0; p < ck->n_parts; p++)
        total += ck->parts[p]->n_meta;
    ck->meta = ar_array(&ck->ar, total ? total : 1, sizeof *ck->meta);
    surg_meta_entry *tmp = malloc((total ? total : 1) * sizeof *tmp);
    if (!ck->meta || !tmp) {
        free(tmp);
        return dg_nomem(sink, ck->path);
    }
    /* Each part's list is sorted: merged list by list, linear in the keys. */
    for (size_t p = 0; p < ck->n_parts; p++) {
        const surg_meta_entry *m = ck->parts[p]->meta;
        size_t i = 0, j = 0, k = 0, n = ck->n_meta, mn = ck->parts[p]->n_meta;
        while (i < n || j < mn) {
            int c = i == n ? 1 : j == mn ? -1 : strcmp(ck->meta[i].key, m[j].key);
            tmp[k++] = c <= 0 ? ck->meta[i] : m[j];
            i += c <= 0;
            j += c >= 0;
        }
        memcpy(ck->meta, tmp, k * sizeof *tmp);
        ck->n_meta = k;
    }
    free(tmp);
    return SURG_OK;
}

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
 * since the parts are in order of their prefixes and no prefix starts
 * another. */
static surg_status join_ties(surg_ckpt *ck, const surg_ckpt_part *parts, surg_sink *sink)
{
    size_t n = 0;
    for (size_t p = 0; p < ck->n_parts; p++)
        n += ck->parts[p]->n_ties;
    ck->ties = ar_array(&ck->ar, n ? n : 1, sizeof *ck->ties);
    if (!ck->ties)
        return dg_nomem(sink, ck->path);
    for (size_t p = 0; p < ck->n_parts; p++)
        for (size_t i = 0; i < ck->parts[p]->n_ties; i++) {
            const surg_meta_entry *t = &ck->parts[p]->ties[i];
            surg_meta_entry *e = &ck->ties[ck->n_ties++];
            e->key = prefixed(&ck->ar, parts[p].prefix, t->key);
            e->value = prefixed(&ck->ar, parts[p].prefix, t->value);
            if (!e->key || !e->value)
                return dg_nomem(sink, ck->path);
        }
    return SURG_OK;
}

/* Take the parts' files and tensors: the parts in order of their prefixes,
 * each already sorted, make one sorted table (no prefix starts another). */
static surg_status join_parts(surg_ckpt *ck, const surg_ckpt_part *parts, surg_sink *sink)
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
    for (size_t p = 0; p < ck->n_parts; p++) {
        surg_ckpt *part = ck->parts[p];
        for (size_t i = 0; i < part->n; i++) {
            surg_tensor_info t = part->tensors[i];
            t.name = prefixed(&ck->ar, parts[p].prefix, t.name);
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
    surg_status st = join_ties(ck, parts, sink);
    return st ? st : join_meta(ck, sink);
}

surg_status surg_ckpt_open_parts(const surg_ckpt_part *parts, size_t n, surg_sink *sink,
                                 surg_ckpt **out)
{
    *out = NULL;
    surg_ckpt_part *sorted = malloc((n ? n : 1) * sizeof *sorted);
    surg_ckpt *ck = calloc(1, sizeof *ck);
    if (!sorted || !ck) {
        free(sorted);
        free(ck);
        return dg_nomem(sink, "surg");
    }
    ar_init(&ck->ar);
    pthread_mutex_init(&ck->lock, NULL);
    memcpy(sorted, parts, n * sizeof *parts);
    qsort(sorted, n, sizeof *sorted, part_cmp);
    buf path;
    buf_init(&path);
    for (size_t i = 0; i < n; i++)
        buf_printf(&path, "%s%s", i ? " + " : "", parts[i].path);
    ck->path = path.failed ? NULL : ar_strdup(&ck->ar, path.data ? path.data : "");
    buf_free(&path);
    ck->parts = calloc(n ? n : 1, sizeof *ck->parts);
    surg_status st = ck->path && ck->parts ? SURG_OK : dg_nomem(sink, "surg");
    for (size_t i = 0; !st && i < n; i++) {
        size_t len = strlen(sorted[i].prefix);
        bool nested = i && strncmp(sorted[i].prefix, sorted[i - 1].prefix,
                                   strlen(sorted[i - 1].prefix)) == 0;
        if (!len || sorted[i].prefix[len - 1] != '/' || nested) {
            dg_file(sink, SURG_ERROR, "ck-parts", sorted[i].path,
                    "the prefix \"%s\" must end with '/' and not start with another part's",
                    sorted[i].prefix);
            st = SURG_EUSAGE;
        }
    }
    /* Every part is opened, so every broken one is reported. */
    ck->part_prefix = ar_array(&ck->ar, n ? n : 1, sizeof *ck->part_prefix);
    ck->n_parts = ck->parts && ck->part_prefix ? n : 0; /* closing skips those that failed */
    for (size_t i = 0; i < ck->n_parts; i++) {
        ck->part_prefix[i] = ar_strdup(&ck->ar, sorted[i].prefix);
        st = st ? st : ck->part_prefix[i] ? SURG_OK : dg_nomem(sink, "surg");
        surg_status one = surg_ckpt_open(sorted[i].path, sink, &ck->parts[i]);
        st = st ? st : one;
    }
    if (!st)
        st = join_parts(ck, sorted, sink);
    free(sorted);
    if (st) {
        surg_ckpt_close(ck);
        return st;
    }
    *out = ck;
    return SURG_OK;
}
