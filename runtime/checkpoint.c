/* checkpoint.c: opening a checkpoint by its name (one safetensors file, a
 * sharded set, a NumPy .npz or .npy, or a schema) into one name-sorted table
 * of tensors; decoding the tensors whose bytes are not in place on demand. */
#include "checkpoint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "diag.h"
#include "json.h"
#include "strsort.h"
#include "readfile.h"

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

char *ck_join(arena *ar, const char *dir, const char *name)
{
    size_t d = strlen(dir), n = strlen(name);
    char *p = ar_alloc(ar, d + n + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, d);
    size_t at = d;
    if (d && dir[d - 1] != '/')
        p[at++] = '/';
    memcpy(p + at, name, n + 1);
    return p;
}

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

surg_status ck_collect(surg_ckpt *ck, surg_sink *sink, st_header *headers)
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

surg_status ck_scratch_file(surg_ckpt *ck, surg_sink *sink, size_t f, const char *of,
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

surg_status ck_link_decoded(surg_ckpt *ck, surg_sink *sink, const st_header *headers,
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

surg_status ck_collect_scratch(surg_ckpt *ck, surg_sink *sink, st_header *headers,
                               dc_source **src, uint64_t scratch_size)
{
    surg_status st = ck_scratch_file(ck, sink, 1, ck->path, scratch_size);
    if (st)
        return st;
    ck->n_files = 2;
    st = ck_collect(ck, sink, headers);
    dc_source **const srcs[2] = {NULL, src};
    return st ? st : ck_link_decoded(ck, sink, headers, srcs);
}

static surg_status open_single(surg_ckpt *ck, surg_sink *sink)
{
    ck->kind = SURG_CKPT_SAFETENSORS;
    ck->files = ar_alloc(&ck->ar, sizeof *ck->files);
    if (!ck->files)
        return dg_nomem(sink, ck->path);
    st_header h;
    surg_status st = st_open(&ck->ar, sink, ck->path, &ck->files[0], &h);
    if (st)
        return st;
    ck->n_files = 1;
    st = ck_collect(ck, sink, &h);
    st_header_free(&h);
    return st;
}

static surg_status open_schema(surg_ckpt *ck, surg_sink *sink)
{
    ck->kind = SURG_CKPT_SCHEMA;
    char *json;
    size_t len;
    surg_status st = rf_read_into(&ck->ar, sink, ck->path, ST_MAX_HEADER, &json, &len);
    if (st)
        return st;
    st_header h;
    st = st_parse_header(&ck->ar, sink, ck->path, json, len, 0, ST_SCHEMA, &h);
    if (st)
        return st;
    /* A schema is one header without a file behind it. */
    ck->files = ar_alloc(&ck->ar, sizeof *ck->files);
    if (!ck->files)
        return dg_nomem(sink, ck->path);
    ck->files[0] = (st_file){.path = ck->path, .fd = -1};
    ck->n_files = 1;
    st = ck_collect(ck, sink, &h);
    st_header_free(&h);
    return st;
}

/* A directory holds what Hugging Face's save_pretrained writes, taken in
 * this order: `model.safetensors.index.json`, one `model.safetensors`, and
 * the same for torch.save files. */
static surg_status open_directory(surg_ckpt *ck, surg_sink *sink)
{
    static const char *const names[] = {"model.safetensors.index.json", "model.safetensors",
                                        "pytorch_model.bin.index.json", "pytorch_model.bin"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char *p = ck_join(&ck->ar, ck->path, names[i]);
        struct stat sb;
        if (!p)
            return dg_nomem(sink, ck->path);
        if (stat(p, &sb) != 0)
            continue;
        if (i % 2 == 0)
            return ck_open_sharded(ck, sink, p);
        ck->path = p;
        return i == 1 ? open_single(ck, sink) : pt_open(ck, sink);
    }
    dg_file(sink, SURG_ERROR, "ck-empty-dir", ck->path,
            "the directory has none of model.safetensors.index.json, model.safetensors, "
            "pytorch_model.bin.index.json or pytorch_model.bin");
    return SURG_EIO;
}

static surg_status open_by_name(surg_ckpt *ck, surg_sink *sink)
{
    struct stat sb;
    if (stat(ck->path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return open_directory(ck, sink);
    if (ends_with(ck->path, ".index.json"))
        return ck_open_sharded(ck, sink, ck->path);
    if (ends_with(ck->path, ".safetensors"))
        return open_single(ck, sink);
    if (ends_with(ck->path, ".npz"))
        return npz_open(ck, sink);
    if (ends_with(ck->path, ".npy"))
        return npy_open(ck, sink);
    if (pt_wanted(ck->path))
        return pt_open(ck, sink);
    if (ends_with(ck->path, ".json"))
        return open_schema(ck, sink);
    if (stat(ck->path, &sb) != 0)
        return dg_errno(sink, ck->path, "cannot open", errno);
    dg_file(sink, SURG_ERROR, "ck-format", ck->path,
            "cannot tell the format from the name: expected a .safetensors "
            "file, a sharded checkpoint (a directory or a "
            ".safetensors.index.json), a NumPy .npz or .npy, a PyTorch .pt, .pth or "
            ".bin, or a .json schema");
    return SURG_EUSAGE;
}

surg_status surg_ckpt_open(const char *path, surg_sink *sink, surg_ckpt **out)
{
    *out = NULL;
    surg_ckpt *ck = calloc(1, sizeof *ck);
    if (!ck)
        return dg_nomem(sink, path);
    ar_init(&ck->ar);
    ck->path = ar_strdup(&ck->ar, path);
    surg_status st = ck->path ? open_by_name(ck, sink) : dg_nomem(sink, path);
    if (st) {
        surg_ckpt_close(ck);
        return st;
    }
    *out = ck;
    return SURG_OK;
}

void surg_ckpt_close(surg_ckpt *ck)
{
    if (!ck)
        return;
    for (size_t i = 0; i < ck->n_files; i++)
        st_close(&ck->files[i]);
    for (size_t i = 0; i < ck->n_parts; i++)
        surg_ckpt_close(ck->parts[i]);
    free(ck->parts);
    ar_free(&ck->ar);
    free(ck);
}

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

surg_status surg_ckpt_data(surg_ckpt *ck, size_t i, surg_sink *sink,
                           const void **data)
{
    *data = NULL;
    if (ck->kind == SURG_CKPT_SCHEMA || i >= ck->n) {
        dg_file(sink, SURG_ERROR, "ck-no-data", ck->path,
                ck->kind == SURG_CKPT_SCHEMA
                    ? "a schema holds no tensor data"
                    : "no such tensor");
        return SURG_EUSAGE;
    }
    st_file *f = &ck->files[ck->file_of[i]];
    surg_status st = ck_ready(ck, i, sink);
    if (!st)
        st = st_map(f, sink);
    if (st)
        return st;
    static const char empty[1];
    *data = f->map ? (const char *)f->map + ck->offset[i] : empty;
    return SURG_OK;
}

/* ---- tensors decoded on demand ----------------------------------------- */

surg_status ck_scratch_open(surg_ckpt *ck, size_t i, surg_sink *sink)
{
    st_file *f = &ck->files[ck->file_of[i]];
    if (f->fd >= 0)
        return SURG_OK;
    surg_status st = dc_temp_file(ck->scratch_dir, f->path, sink, &f->fd);
    /* Sparse: only the decoded tensors take room. */
    if (!st && ftruncate(f->fd, (off_t)f->size) != 0) {
        st = dg_errno(sink, f->path, "cannot size the scratch file", errno);
        close(f->fd);
        f->fd = -1;
    }
    return st;
}

surg_status ck_decode(surg_ckpt *ck, size_t i, surg_sink *sink)
{
    dc_source *s = ck->dec[i];
    surg_status st = dc_decode(s, ck->files[ck->file_of[i]].fd, ck->offset[i], ck->scratch_dir,
                               sink);
    s->done = !st;
    return st;
}

surg_status ck_ready(surg_ckpt *ck, size_t i, surg_sink *sink)
{
    if (!ck_needs_decode(ck, i))
        return SURG_OK;
    surg_status st = ck_scratch_open(ck, i, sink);
    return st ? st : ck_decode(ck, i, sink);
}

/* ---- a checkpoint of parts ------------------------------------------- */

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
