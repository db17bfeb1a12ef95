/* ck_table.c: a checkpoint's table assembled from its readers' tables
 * (format.h): one name-sorted table of tensors, each at its place in a file
 * or in a scratch file (decoded on demand), the files' metadata merged,
 * the ties recorded and read; and the public accessors of the table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/buf.h"
#include "runtime/checkpoint.h"
#include "support/diag.h"
#include "support/json.h"
#include "support/strsort.h"

typedef struct ck_ref {
    const char *name; /* first: the key ss_sort sorts by */
    const st_entry *e;
    uint32_t file;
} ck_ref;

/* The union of the files' metadata (each list sorted by key): merged list by
 * list, so a million keys cost a million steps, not their square. A key
 * with different values in two shards keeps the first, with a warning. */
static surg_status merge_meta(surg_ckpt *ck, surg_sink *sink, const st_header *headers)
{
    size_t total = 0;
    for (size_t f = 0; f < ck->n_files; f++)
        total += headers[f].n_meta;
    surg_meta_entry *acc = ar_array(&ck->ar, total ? total : 1, sizeof *acc);
    surg_meta_entry *tmp = malloc((total ? total : 1) * sizeof *tmp);
    if (!acc || !tmp) {
        free(tmp);
        return dg_nomem(sink, ck->path);
    }
    size_t n = 0;
    for (size_t f = 0; f < ck->n_files; f++) {
        const surg_meta_entry *m = headers[f].meta;
        size_t i = 0, j = 0, k = 0, mn = headers[f].n_meta;
        while (i < n || j < mn) {
            int c = i == n ? 1 : j == mn ? -1 : strcmp(acc[i].key, m[j].key);
            if (c == 0 && strcmp(acc[i].value, m[j].value) != 0)
                dg_file(sink, SURG_WARNING, "ck-metadata-conflict", ck->files[f].path,
                        "metadata \"%s\" is \"%s\" here but \"%s\" in an earlier shard; "
                        "keeping the first",
                        m[j].key, m[j].value, acc[i].value);
            tmp[k++] = c <= 0 ? acc[i] : m[j];
            i += c <= 0;
            j += c >= 0;
        }
        memcpy(acc, tmp, k * sizeof *tmp);
        n = k;
    }
    free(tmp);
    ck->meta = acc;
    ck->n_meta = n;
    return SURG_OK;
}

/* The "surg.ties" record, {"alias": "stored as", ...}, read into ck->ties.
 * Names are checked only for what a record can say (an alias is no tensor,
 * its target one): whether the ties fit a recipe is the compiler's to say. */
static surg_status read_ties(surg_ckpt *ck, surg_sink *sink)
{
    const char *v = NULL;
    for (size_t i = 0; i < ck->n_meta && !v; i++)
        if (strcmp(ck->meta[i].key, "surg.ties") == 0)
            v = ck->meta[i].value;
    if (!v)
        return SURG_OK;
    size_t cap = 0;
    for (const char *p = v; *p; p++) /* at most one tie per colon */
        cap += *p == ':';
    ck->ties = ar_array(&ck->ar, cap ? cap : 1, sizeof *ck->ties);
    if (!ck->ties)
        return dg_nomem(sink, ck->path);
    json_reader j;
    json_init(&j, v, strlen(v), &ck->ar);
    int more = json_open(&j, '{') ? json_first(&j, '}') : -1;
    for (; more > 0; more = json_more(&j, '}')) {
        surg_meta_entry *t = &ck->ties[ck->n_ties];
        if (!json_key(&j, &t->key) || !json_string(&j, &t->value))
            break;
        ck->n_ties++;
    }
    if (more == 0 && !json_end(&j))
        more = -1;
    if (more == 0 && ss_sort(ck->ties, ck->n_ties, sizeof *ck->ties) != 0)
        return dg_nomem(sink, ck->path);
    if (more != 0) {
        dg_file(sink, SURG_WARNING, "ck-ties", ck->path,
                "the \"surg.ties\" metadata is not an object of names (%s); it is ignored",
                j.failed ? j.err : "not a string");
        ck->n_ties = 0;
    }
    return SURG_OK;
}

/* The files' tables (headers[f] for files[f]) made one, sorted by name. */
static surg_status collect(surg_ckpt *ck, surg_sink *sink, st_header *headers)
{
    size_t n = 0;
    for (size_t f = 0; f < ck->n_files; f++)
        n += headers[f].n;
    ck_ref *refs = malloc((n ? n : 1) * sizeof *refs);
    ck->tensors = ar_array(&ck->ar, n ? n : 1, sizeof *ck->tensors);
    ck->file_of = ar_array(&ck->ar, n ? n : 1, sizeof *ck->file_of);
    ck->offset = ar_array(&ck->ar, n ? n : 1, sizeof *ck->offset);
    if (!refs || !ck->tensors || !ck->file_of || !ck->offset) {
        free(refs);
        return dg_nomem(sink, ck->path);
    }
    size_t k = 0;
    for (size_t f = 0; f < ck->n_files; f++)
        for (size_t i = 0; i < headers[f].n; i++)
            refs[k++] = (ck_ref){headers[f].entries[i].info.name, &headers[f].entries[i],
                                 (uint32_t)f};
    bool sorted = true;
    for (size_t i = 1; i < n && sorted; i++)
        sorted = strcmp(refs[i - 1].e->info.name, refs[i].e->info.name) < 0;
    if (!sorted && ss_sort(refs, n, sizeof *refs) != 0) {
        free(refs);
        return dg_nomem(sink, ck->path);
    }
    surg_status st = SURG_OK;
    for (size_t i = 0; i < n && !st; i++) {
        if (i && strcmp(refs[i].e->info.name, refs[i - 1].e->info.name) == 0) {
            bool same_file = refs[i].file == refs[i - 1].file;
            if (same_file)
                dg_file(sink, SURG_ERROR, "st-duplicate-key", ck->files[refs[i].file].path,
                        "the %s has a duplicate key: tensor \"%s\" appears twice",
                        ck->kind == SURG_CKPT_SCHEMA ? "schema" : "header",
                        refs[i].e->info.name);
            else
                dg_file(sink, SURG_ERROR, "ck-duplicate-tensor", ck->path,
                        "tensor \"%s\" is stored twice: in %s and in %s",
                        refs[i].e->info.name, ck->files[refs[i - 1].file].path,
                        ck->files[refs[i].file].path);
            st = SURG_EINVALID;
        }
        ck->tensors[i] = refs[i].e->info;
        ck->file_of[i] = refs[i].file;
        ck->offset[i] = ck->files[refs[i].file].data_start + refs[i].e->begin;
    }
    free(refs);
    ck->n = n;
    if (!st)
        st = merge_meta(ck, sink, headers);
    return st ? st : read_ties(ck, sink);
}

/* files[f] becomes the scratch file of `size` bytes that the tensors of
 * `of` are decoded into (created when the first is needed). */
static surg_status scratch_file(surg_ckpt *ck, surg_sink *sink, size_t f, const char *of,
                                uint64_t size)
{
    size_t n = strlen(of) + 32;
    char *path = ar_alloc(&ck->ar, n);
    if (!path)
        return dg_nomem(sink, ck->path);
    snprintf(path, n, "%s (decoded tensors)", of);
    ck->files[f] = (st_file){.path = path, .fd = -1, .size = size, .scratch = true};
    return SURG_OK;
}

/* Each tensor in a scratch file f gets dec[i] = srcs[f][k], k its entry in
 * headers[f]. */
static surg_status link_decoded(surg_ckpt *ck, surg_sink *sink, const st_header *headers,
                                dc_source **const *srcs)
{
    for (size_t i = 0; i < ck->n; i++) {
        const st_header *h = &headers[ck->file_of[i]];
        if (!ck->files[ck->file_of[i]].scratch || !ck->tensors[i].nbytes)
            continue;
        if (!ck->dec) {
            ck->dec = ar_array(&ck->ar, ck->n, sizeof *ck->dec);
            if (!ck->dec)
                return dg_nomem(sink, ck->path);
        }
        /* The decoded entries were placed in increasing order: find each by its place. */
        size_t lo = 0, hi = h->n;
        while (hi - lo > 1) {
            size_t mid = lo + (hi - lo) / 2;
            if (h->entries[mid].begin <= ck->offset[i])
                lo = mid;
            else
                hi = mid;
        }
        ck->dec[i] = srcs[ck->file_of[i]][lo];
    }
    return SURG_OK;
}

/* The readers' ties, all files' together and sorted by alias, as the
 * "surg.ties" metadata of the first file (h, a copy of its header), as a
 * file written with them records them. */
static surg_status record_ties(surg_ckpt *ck, surg_sink *sink, const fmt_table *t, size_t n,
                               st_header *h)
{
    size_t n_ties = 0;
    for (size_t i = 0; i < n; i++)
        n_ties += t[i].n_ties;
    if (!n_ties)
        return SURG_OK;
    surg_meta_entry *ties = malloc(n_ties * sizeof *ties);
    if (!ties)
        return dg_nomem(sink, ck->path);
    for (size_t i = 0, k = 0; i < n; k += t[i].n_ties, i++)
        if (t[i].n_ties)
            memcpy(ties + k, t[i].ties, t[i].n_ties * sizeof *ties);
    if (ss_sort(ties, n_ties, sizeof *ties) != 0) {
        free(ties);
        return dg_nomem(sink, ck->path);
    }
    buf b;
    buf_init(&b);
    buf_putc(&b, '{');
    for (size_t i = 0; i < n_ties; i++) {
        buf_puts(&b, i ? "," : "");
        buf_json_string(&b, ties[i].key);
        buf_putc(&b, ':');
        buf_json_string(&b, ties[i].value);
    }
    buf_putc(&b, '}');
    free(ties);
    /* Into the file's metadata, in its place by key (a reader leaves the
     * key out of its own). */
    surg_meta_entry *m = ar_array(&ck->ar, h->n_meta + 1, sizeof *m);
    char *value = b.failed ? NULL : ar_strdup(&ck->ar, b.data);
    buf_free(&b);
    if (!m || !value)
        return dg_nomem(sink, ck->path);
    size_t k = 0, i = 0;
    for (; i < h->n_meta && strcmp(h->meta[i].key, "surg.ties") < 0; i++)
        m[k++] = h->meta[i];
    m[k++] = (surg_meta_entry){"surg.ties", value};
    for (; i < h->n_meta; i++)
        m[k++] = h->meta[i];
    h->meta = m;
    h->n_meta = k;
    return SURG_OK;
}

/* The tables' other reads (fmt_table.reads and .root), kept for the
 * output preflight; and what their decoders hold, taken. */
static surg_status keep_reads(surg_ckpt *ck, surg_sink *sink, fmt_table *t, size_t n)
{
    size_t total = 0, closers = 0;
    for (size_t i = 0; i < n; i++) {
        total += t[i].n_reads + (t[i].root != NULL);
        closers += t[i].close != NULL;
    }
    ck->closers = closers ? ar_array(&ck->ar, closers, sizeof *ck->closers) : NULL;
    if (closers && !ck->closers)
        return dg_nomem(sink, ck->path);
    for (size_t i = 0; i < n; i++)
        if (t[i].close) { /* the checkpoint's to release now */
            ck->closers[ck->n_closers++] = (struct ck_closer){t[i].close, t[i].close_ctx};
            t[i].close = NULL;
        }
    if (!total)
        return SURG_OK;
    ck->reads = ar_array(&ck->ar, total, sizeof *ck->reads);
    if (!ck->reads)
        return dg_nomem(sink, ck->path);
    for (size_t i = 0; i < n; i++) {
        if (t[i].root)
            ck->reads[ck->n_reads++] = (ck_read){t[i].root, true};
        for (size_t k = 0; k < t[i].n_reads; k++)
            ck->reads[ck->n_reads++] = (ck_read){t[i].reads[k], false};
    }
    return SURG_OK;
}

surg_status ck_assemble(surg_ckpt *ck, surg_sink *sink, fmt_table *t, size_t n)
{
    size_t nf = 0;
    for (size_t i = 0; i < n; i++)
        nf += t[i].src ? 2 : 1;
    ck->files = ar_array(&ck->ar, nf ? nf : 1, sizeof *ck->files);
    st_header *h = calloc(nf ? nf : 1, sizeof *h); /* copies: the tables keep theirs */
    dc_source ***srcs = calloc(nf ? nf : 1, sizeof *srcs);
    surg_status st = ck->files && h && srcs ? SURG_OK : dg_nomem(sink, ck->path);
    bool decodes = false;
    for (size_t i = 0; !st && i < n; i++) {
        size_t f = ck->n_files++;
        ck->files[f] = t[i].file; /* closed with the checkpoint, whatever happens */
        t[i].file.fd = -1;
        t[i].file.map = NULL;
        h[f] = t[i].h[0];
        if (!t[i].src)
            continue;
        st = scratch_file(ck, sink, f + 1, t[i].file.path, t[i].scratch_size);
        if (st)
            break;
        ck->n_files++;
        h[f + 1] = t[i].h[1];
        srcs[f + 1] = t[i].src;
        decodes = true;
    }
    if (!st && n)
        st = record_ties(ck, sink, t, n, &h[0]);
    if (!st)
        st = keep_reads(ck, sink, t, n);
    if (!st)
        st = collect(ck, sink, h);
    if (!st && decodes)
        st = link_decoded(ck, sink, h, (dc_source **const *)srcs);
    free(srcs);
    free(h);
    return st;
}

/* ---- the public accessors -------------------------------------------- */

surg_ckpt_kind surg_ckpt_kind_of(const surg_ckpt *ck) { return ck->kind; }
const char *surg_ckpt_path(const surg_ckpt *ck) { return ck->path; }
size_t surg_ckpt_count(const surg_ckpt *ck) { return ck->n; }
size_t surg_ckpt_meta_count(const surg_ckpt *ck) { return ck->n_meta; }

const surg_tensor_info *surg_ckpt_tensor(const surg_ckpt *ck, size_t i)
{
    return i < ck->n ? &ck->tensors[i] : NULL;
}

const surg_meta_entry *surg_ckpt_meta(const surg_ckpt *ck, size_t i)
{
    return i < ck->n_meta ? &ck->meta[i] : NULL;
}

size_t surg_ckpt_tie_count(const surg_ckpt *ck) { return ck->n_ties; }

const surg_meta_entry *surg_ckpt_tie(const surg_ckpt *ck, size_t i)
{
    return i < ck->n_ties ? &ck->ties[i] : NULL;
}

size_t surg_ckpt_find(const surg_ckpt *ck, const char *name)
{
    return ss_find(ck->tensors, ck->n, sizeof *ck->tensors, name);
}

int surg_ckpt_decoded(const surg_ckpt *ck, size_t i)
{
    return i < ck->n && ck->dec && ck->dec[i];
}

