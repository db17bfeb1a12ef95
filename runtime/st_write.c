/* st_write.c: the safetensors writer. One file: sorted header, spaces to a
 * multiple of 8, data in header order (or, where copies can share the
 * input's blocks, their runs in input order and the header padded to their
 * offset: st_share.c). Sharded: tensors in name order cut
 * into shards of at most max_shard_size bytes (a larger tensor alone), named
 * `model-0000N-of-0000M.safetensors`, plus the index Hugging Face writes.
 * All files are written under temporary names and renamed only when every
 * one is complete and synced. */
#include "runtime/st_write.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/diag.h"
#include "runtime/checkpoint.h"
#include "runtime/format.h"
#include "runtime/partition.h"
#include "runtime/st_header.h"
#include "runtime/st_share.h"
#include "support/tensor_name.h"

/* qsort has no context argument, so each index travels with its tensor. */
typedef struct keyed {
    const surg_tensor_info *info;
    size_t idx;
} keyed;

static int ref_order(const void *a, const void *b)
{
    const surg_tensor_info *x = ((const keyed *)a)->info;
    const surg_tensor_info *y = ((const keyed *)b)->info;
    if (x->dtype != y->dtype)
        return x->dtype > y->dtype ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int name_order(const void *a, const void *b)
{
    return strcmp(((const keyed *)a)->info->name, ((const keyed *)b)->info->name);
}

static void sort_idx(const stw_output *out, size_t *idx, size_t n,
                     int (*cmp)(const void *, const void *), bool *nomem)
{
    keyed *k = malloc((n ? n : 1) * sizeof *k);
    if (!k) {
        *nomem = true;
        return;
    }
    for (size_t i = 0; i < n; i++)
        k[i] = (keyed){&out->tensors[idx[i]], idx[i]};
    qsort(k, n, sizeof *k, cmp);
    for (size_t i = 0; i < n; i++)
        idx[i] = k[i].idx;
    free(k);
}

/* The metadata, sorted, with what the writer adds where sorting puts it:
 * "format": "pt" unless given (or dropped by the recipe), and the mark of a sharded output's files
 * or a PEFT adapter's (outpath.h), which no other output carries, whatever its input said. */
static void put_meta(buf *b, const stw_output *out)
{
    bool has_format = false;
    for (size_t i = 0; i < out->n_meta; i++)
        has_format |= strcmp(out->meta[i].key, "format") == 0;
    surg_meta_entry added[3]; /* in the order of their keys */
    size_t n_added = 0;
    if (!has_format && !out->no_format)
        added[n_added++] = (surg_meta_entry){"format", "pt"};
    const char *mark = out->mark ? out->mark : out->max_shard_size ? OUTP_MARK_VALUE : NULL;
    if (mark)
        added[n_added++] = (surg_meta_entry){OUTP_MARK_KEY, mark};
    if (out->digest && out->max_shard_size)
        added[n_added++] = (surg_meta_entry){OUTP_PLAN_KEY, out->digest};
    buf_puts(b, "\"__metadata__\":{");
    bool first = true;
    size_t i = 0, a = 0;
    while (i < out->n_meta || a < n_added) {
        const surg_meta_entry *e;
        if (i < out->n_meta && (strcmp(out->meta[i].key, OUTP_MARK_KEY) == 0 ||
                                strcmp(out->meta[i].key, OUTP_PLAN_KEY) == 0)) {
            i++;
            continue;
        }
        if (a < n_added && (i == out->n_meta || strcmp(added[a].key, out->meta[i].key) < 0))
            e = &added[a++];
        else
            e = &out->meta[i++];
        if (!first)
            buf_putc(b, ',');
        buf_json_string(b, e->key);
        buf_putc(b, ':');
        buf_json_string(b, e->value);
        first = false;
    }
    buf_putc(b, '}');
}

/* A number in decimal, without printf: a header of 100,000 tensors has
 * half a million of them. */
static void put_u64(buf *b, uint64_t v)
{
    char d[20];
    size_t n = 0;
    do
        d[sizeof d - ++n] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    buf_append(b, d + sizeof d - n, n);
}

static void put_entry(buf *b, const surg_tensor_info *t, uint64_t begin)
{
    buf_putc(b, ',');
    buf_json_string(b, t->name);
    buf_puts(b, ":{\"dtype\":\"");
    buf_puts(b, surg_dtype_st_name(t->dtype));
    buf_puts(b, "\",\"shape\":[");
    for (uint32_t d = 0; d < t->rank; d++) {
        if (d)
            buf_putc(b, ',');
        put_u64(b, t->shape[d]);
    }
    buf_puts(b, "],\"data_offsets\":[");
    put_u64(b, begin);
    buf_putc(b, ',');
    put_u64(b, begin + t->nbytes);
    buf_puts(b, "]}");
}

/* The header of tensors[idx[0..n)] in that order, its length (with the
 * 8 bytes before it) padded with spaces to `residue` modulo `block` (a
 * multiple of 8, the reference's padding). */
static surg_status header_bytes(const stw_output *out, const size_t *idx, size_t n,
                                uint64_t residue, uint64_t block, buf *hdr)
{
    bool nomem = false;
    buf json;
    buf_init(&json);
    buf_putc(&json, '{');
    put_meta(&json, out);
    uint64_t at = 0;
    for (size_t i = 0; i < n; i++) {
        put_entry(&json, &out->tensors[idx[i]], at);
        at += out->tensors[idx[i]].nbytes;
    }
    buf_putc(&json, '}');
    while ((8 + json.len) % block != residue && !json.failed) /* a failed buffer no longer grows */
        buf_putc(&json, ' ');
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)((uint64_t)json.len >> (8 * i));
    buf_append(hdr, len, 8);
    buf_append(hdr, json.data, json.len);
    nomem |= json.failed || hdr->failed;
    buf_free(&json);
    return nomem ? SURG_ENOMEM : SURG_OK;
}

surg_status stw_header(const stw_output *out, size_t *idx, size_t n, buf *hdr)
{
    bool nomem = false;
    sort_idx(out, idx, n, ref_order, &nomem);
    return nomem ? SURG_ENOMEM : header_bytes(out, idx, n, 0, 8, hdr);
}

/* File f's data order and header: the reference's, or with its copies
 * where their blocks can be shared (st_share.h). */
static surg_status file_header(const stw_output *out, stw_file *f)
{
    bool nomem = false;
    sort_idx(out, f->idx, f->n, ref_order, &nomem);
    uint64_t residue = 0;
    surg_status st = nomem ? SURG_ENOMEM : sh_layout(out, f, &residue);
    if (!st)
        st = header_bytes(out, f->idx, f->n, residue, f->n_runs ? out->share_block : 8,
                          &f->header);
    for (size_t r = 0; !st && r < f->n_runs; r++)
        f->runs[r].dst += f->header.len;
    return st;
}

/* The directory and prefix of the shards (made, if missing, only when the
 * files are opened). */
surg_status stw_shard_place(surg_sink *sink, const char *out_path, shard_names *sn)
{
    const char *suffix = ".safetensors.index.json";
    size_t n = strlen(out_path), k = strlen(suffix);
    const char *slash = strrchr(out_path, '/');
    if (n > k && strcmp(out_path + n - k, suffix) == 0 &&
        (!slash || (size_t)(slash - out_path) + 1 < n - k)) {
        size_t base = slash ? (size_t)(slash - out_path + 1) : 0;
        sn->dir = base ? strndup(out_path, base > 1 ? base - 1 : base) : strdup(".");
        sn->prefix = strndup(out_path + base, n - k - base);
    } else {
        while (n > 1 && out_path[n - 1] == '/')
            n--; /* "out/" is the directory "out" */
        sn->dir = strndup(out_path, n);
        sn->prefix = strdup("model");
    }
    return sn->dir && sn->prefix ? SURG_OK : dg_nomem(sink, out_path);
}

void stw_put_shard_name(buf *b, const char *prefix, uint64_t i, uint64_t m)
{
    if (m == 1)
        buf_printf(b, "%s.safetensors", prefix);
    else
        buf_printf(b, "%s-%05llu-of-%05llu.safetensors", prefix, (unsigned long long)i + 1,
                   (unsigned long long)m);
}

bool stw_shard_number(const char *prefix, const char *name, uint64_t *i, uint64_t *m)
{
    size_t k = strlen(prefix);
    if (strncmp(name, prefix, k) != 0)
        return false;
    const char *rest = name + k;
    unsigned long long a = 1, n = 1;
    if (strcmp(rest, ".safetensors") != 0) {
        char *end;
        if (rest[0] != '-' || rest[1] < '0' || rest[1] > '9')
            return false;
        errno = 0;
        a = strtoull(rest + 1, &end, 10);
        if (errno || strncmp(end, "-of-", 4) != 0 || end[4] < '0' || end[4] > '9')
            return false;
        n = strtoull(end + 4, &end, 10);
        if (errno || a < 1 || a > n)
            return false;
    }
    buf want; /* the spelling surg writes, and no other */
    buf_init(&want);
    stw_put_shard_name(&want, "", a - 1, n);
    bool same = !want.failed && strcmp(rest, want.data) == 0;
    buf_free(&want);
    *i = a - 1;
    *m = n;
    return same;
}

static char *shard_path(const shard_names *sn, size_t i, size_t m)
{
    buf b;
    buf_init(&b);
    buf_printf(&b, "%s/", sn->dir);
    stw_put_shard_name(&b, sn->prefix, i, m);
    return buf_take(&b);
}

/* Tensors in name order, cut greedily: a shard closes when the next tensor
 * would take it past the limit. */
static size_t assign_shards(const stw_output *out, const size_t *order,
                            size_t *shard_of)
{
    size_t m = 0;
    uint64_t used = 0;
    for (size_t i = 0; i < out->n; i++) {
        uint64_t sz = out->tensors[order[i]].nbytes;
        if (m == 0 || (used > 0 && used + sz > out->max_shard_size)) {
            m++;
            used = 0;
        }
        used += sz;
        shard_of[i] = m - 1;
    }
    return m ? m : 1;
}

/* The index Hugging Face writes beside the shards, as Python's
 * json.dumps(index, indent=2, sort_keys=True) writes it. */
surg_status stw_index_text(buf *b, const char *const *names, const char *const *files, size_t n,
                           uint64_t total)
{
    buf_printf(b, "{\n  \"metadata\": {\n    \"" OUTP_MARK_KEY "\": \"" OUTP_MARK_VALUE
                  "\",\n    \"total_size\": %llu\n  },\n  \"weight_map\": {",
               (unsigned long long)total);
    for (size_t i = 0; i < n; i++) {
        buf_puts(b, i ? ",\n    " : "\n    ");
        buf_json_ascii(b, names[i]);
        buf_puts(b, ": ");
        buf_json_ascii(b, files[i]);
    }
    buf_puts(b, n ? "\n  }\n}\n" : "}\n}\n");
    return b->failed ? SURG_ENOMEM : SURG_OK;
}

static surg_status index_text(const stw_layout *lay, buf *b)
{
    const stw_output *out = lay->out;
    size_t n = out->n;
    const char **names = malloc((n ? n : 1) * sizeof *names);
    const char **files = malloc((n ? n : 1) * sizeof *files);
    uint64_t total = 0;
    for (size_t i = 0; names && files && i < n; i++) {
        size_t t = lay->order[i];
        names[i] = out->tensors[t].name;
        files[i] = strrchr(lay->files[lay->file_of[t]].path, '/') + 1;
        total += out->tensors[t].nbytes;
    }
    surg_status st = names && files ? stw_index_text(b, names, files, n, total) : SURG_ENOMEM;
    free(names);
    free(files);
    return st;
}

/* A header (or index) longer than a reader accepts would make a file that
 * cannot be opened again. */
static surg_status check_header_size(surg_sink *sink, const char *path, size_t len,
                                     const char *what)
{
    if (len <= ST_MAX_HEADER)
        return SURG_OK;
    dg_file(sink, SURG_ERROR, "out-header-too-large", path,
            "the %s would be %zu bytes, more than the %u a reader accepts: shorten the "
            "names%s",
            what, len, ST_MAX_HEADER,
            strcmp(what, "header") == 0 ? ", or write shards (--max-shard-size)" : "");
    return SURG_EINVALID;
}

static surg_status layout_files(surg_sink *sink, const char *out_path, stw_layout *lay)
{
    const stw_output *out = lay->out;
    size_t n = out->n, m = 1;
    size_t *shard_of = calloc(n ? n : 1, sizeof *shard_of);
    if (!shard_of)
        return dg_nomem(sink, out_path);
    if (out->max_shard_size)
        m = assign_shards(out, lay->order, shard_of);
    lay->files = calloc(m, sizeof *lay->files);
    surg_status st = lay->files ? SURG_OK : dg_nomem(sink, out_path);
    for (size_t s = 0; !st && s < m; s++) {
        stw_file *f = &lay->files[lay->n_files++];
        f->path = out->max_shard_size ? shard_path(&lay->sn, s, m) : strdup(out_path);
        f->idx = malloc((n ? n : 1) * sizeof *f->idx);
        if (!f->path || !f->idx) {
            st = dg_nomem(sink, out_path);
            break;
        }
        for (size_t i = 0; i < n; i++)
            if (shard_of[i] == s)
                f->idx[f->n++] = lay->order[i];
        buf_init(&f->header);
        st = file_header(out, f) ? dg_nomem(sink, out_path) : SURG_OK;
        if (!st)
            st = check_header_size(sink, f->path, f->header.len - 8, "header");
        uint64_t at = f->header.len;
        for (size_t i = 0; !st && i < f->n; i++) {
            lay->file_of[f->idx[i]] = (uint32_t)s;
            lay->offset[f->idx[i]] = at;
            at += out->tensors[f->idx[i]].nbytes;
        }
        f->size = at;
    }
    free(shard_of);
    if (!st && lay->n_files > 1) {
        buf path;
        buf_init(&path);
        buf_printf(&path, "%s/%s.safetensors.index.json", lay->sn.dir, lay->sn.prefix);
        if (!(lay->index_path = buf_take(&path)))
            st = dg_nomem(sink, out_path);
    }
    return st;
}

/* The compiler refuses names the output cannot hold (surg_compile_for);
 * a caller that did not ask it still never gets a file its readers refuse. */
static surg_status check_names(surg_sink *sink, const char *out_path, const stw_output *out,
                               fmt_id forced)
{
    tn_format f = fmt_readers[fmt_output_as(out_path, forced)]->names;
    surg_status st = SURG_OK;
    for (size_t i = 0; i < out->n; i++) {
        const char *name = out->tensors[i].name;
        const char *why = tn_format_problem(name, strlen(name), f);
        if (!why)
            continue;
        char shown[80];
        dg_file(sink, SURG_ERROR, "out-name", out_path,
                "tensor \"%s\" (a name of %zu bytes) cannot be written here: %s",
                tn_short(name, shown, 64), strlen(name), why);
        st = SURG_EINVALID;
    }
    return st;
}

/* The tensors in name order, and room for each one's place. */
static surg_status layout_begin(surg_sink *sink, const char *out_path, const stw_output *out,
                                stw_layout *lay)
{
    *lay = (stw_layout){.out = out};
    size_t n = out->n;
    lay->order = malloc((n ? n : 1) * sizeof *lay->order);
    lay->file_of = calloc(n ? n : 1, sizeof *lay->file_of);
    lay->offset = calloc(n ? n : 1, sizeof *lay->offset);
    if (!lay->order || !lay->file_of || !lay->offset)
        return dg_nomem(sink, out_path);
    bool nomem = false;
    for (size_t i = 0; i < n; i++)
        lay->order[i] = i;
    sort_idx(out, lay->order, n, name_order, &nomem);
    return nomem ? dg_nomem(sink, out_path) : SURG_OK;
}

surg_status stw_layout_shards(surg_sink *sink, const stw_output *out, stw_layout *lay)
{
    surg_status st = layout_begin(sink, "surg", out, lay);
    if (!st)
        st = stw_shard_place(sink, "out", &lay->sn);
    return st ? st : layout_files(sink, "surg", lay);
}

surg_status stw_layout_make(surg_sink *sink, const char *out_path, const stw_output *out,
                            stw_layout *lay)
{
    surg_status st0 = layout_begin(sink, out_path, out, lay);
    if (st0)
        return st0;
    outp_kind kind;
    fmt_id forced;
    surg_status st = outp_format(sink, out->format, &forced);
    if (!st)
        st = check_names(sink, out_path, out, forced);
    if (!st)
        st = outp_kind_of(sink, out_path, out->max_shard_size, forced, &kind);
    if (!st && kind != OUTP_SHARDED)
        lay->writer = fmt_readers[fmt_output_as(out_path, forced)]->writer;
    if (!st && kind == OUTP_DIR && !(lay->dir_path = outp_dir_target(out_path)))
        st = dg_nomem(sink, out_path);
    if (!st && kind == OUTP_SHARDED)
        st = stw_shard_place(sink, out_path, &lay->sn);
    if (!st)
        st = lay->writer ? lay->writer->make(sink, out_path, out, lay)
                         : layout_files(sink, out_path, lay);
    if (!st && out->part.count)
        st = part_mark(lay, sink, out_path);
    return st ? st : outp_check_layout(sink, out_path, lay, out->reads);
}

const char *stw_meta(const stw_output *out, const char *key)
{
    for (size_t i = 0; i < out->n_meta; i++)
        if (strcmp(out->meta[i].key, key) == 0)
            return out->meta[i].value;
    return NULL;
}

void stw_warn_metadata(surg_sink *sink, const char *out_path, const stw_output *out,
                       const char *code, const char *what, const char *kept)
{
    buf keys;
    buf_init(&keys);
    size_t n = 0;
    for (size_t i = 0; i < out->n_meta; i++) {
        const char *k = out->meta[i].key;
        if (strcmp(k, "format") == 0 || strcmp(k, "surg.ties") == 0 ||
            strcmp(k, OUTP_MARK_KEY) == 0 || /* only a sharded output's files carry it */
            (kept && strcmp(k, kept) == 0))
            continue;
        buf_printf(&keys, "%s\"%s\"", n++ ? ", " : "", k);
    }
    if (n && !keys.failed)
        dg_file(sink, SURG_WARNING, code, out_path, "%s: the metadata %s is not written", what,
                keys.data);
    buf_free(&keys);
}

surg_status stw_one_file(stw_layout *lay, surg_sink *sink, const char *out_path)
{
    size_t n = lay->out->n;
    lay->files = calloc(1, sizeof *lay->files);
    if (!lay->files)
        return dg_nomem(sink, out_path);
    stw_file *f = &lay->files[0];
    lay->n_files = 1;
    f->path = strdup(out_path);
    f->idx = malloc((n ? n : 1) * sizeof *f->idx);
    buf_init(&f->header);
    return f->path && f->idx ? SURG_OK : dg_nomem(sink, out_path);
}

/* Room for file f, but for the blocks its copies are to share. */
static surg_status reserve(const stw_layout *lay, stw_file *f, surg_sink *sink)
{
    uint64_t *skip = malloc((f->n_runs ? f->n_runs : 1) * 2 * sizeof *skip);
    if (!skip)
        return dg_nomem(sink, f->path);
    size_t n = 0;
    for (size_t r = 0; r < f->n_runs; r++)
        n += sh_span(&f->runs[r], lay->out->share_block, &skip[2 * n], &skip[2 * n + 1]);
    surg_status st = of_reserve_around(f->of, sink, f->size, skip, n);
    free(skip);
    return st;
}

bool stw_layout_makes_any(const stw_layout *lay)
{
    for (size_t i = 0; i < lay->n_files; i++)
        if (!lay->files[i].elsewhere)
            return true;
    return false;
}

surg_status stw_layout_open(stw_layout *lay, surg_sink *sink)
{
    if (lay->dir_path) {
        surg_status st = of_dir_create(sink, lay->dir_path, &lay->dir);
        return st ? st : lay->writer->open(lay, sink);
    }
    bool any = stw_layout_makes_any(lay); /* a part may make nothing */
    if (any && lay->sn.dir && mkdir(lay->sn.dir, 0777) == 0)
        lay->sn.made_dir = true;
    else if (any && lay->sn.dir && errno != EEXIST)
        return dg_errno(sink, lay->sn.dir, "cannot create the output directory", errno);
    for (size_t i = 0; i < lay->n_files; i++) {
        stw_file *f = &lay->files[i];
        if (f->elsewhere)
            continue;
        surg_status st = of_create(sink, f->path, &f->of);
        if (!st)
            st = reserve(lay, f, sink);
        if (!st)
            st = of_write(f->of, sink, f->header.data, f->header.len);
        if (st)
            return st;
    }
    if (lay->writer)
        return lay->writer->open(lay, sink);
    if (lay->index_path && !lay->out->part.count) { /* a part's is surg_index_write's */
        buf text;
        buf_init(&text);
        surg_status st = index_text(lay, &text) ? dg_nomem(sink, lay->sn.dir) : SURG_OK;
        if (!st)
            st = check_header_size(sink, lay->index_path, text.len, "index");
        if (!st)
            st = of_create(sink, lay->index_path, &lay->index);
        if (!st)
            st = of_write(lay->index, sink, text.data, text.len);
        buf_free(&text);
        if (st)
            return st;
    }
    return SURG_OK;
}

bool stw_layout_wants_crc(const stw_layout *lay) { return lay->writer && lay->writer->set_crc; }

void stw_layout_set_crc(stw_layout *lay, size_t i, uint32_t crc)
{
    if (stw_layout_wants_crc(lay))
        lay->writer->set_crc(lay, i, crc);
}

surg_status stw_layout_sync(stw_layout *lay, surg_sink *sink)
{
    surg_status st = SURG_OK;
    if (lay->writer && !lay->synced)
        st = lay->writer->finish(lay, sink);
    if (!st && !lay->synced && lay->dir)
        st = of_dir_sync(lay->dir, sink);
    for (size_t i = 0; !st && !lay->synced && !lay->dir && i < lay->n_files; i++)
        if (lay->files[i].of)
            st = of_finish(lay->files[i].of, sink);
    if (!st && !lay->synced && lay->index)
        st = of_finish(lay->index, sink);
    lay->synced |= !st;
    return st;
}

surg_status stw_layout_commit(stw_layout *lay, surg_sink *sink)
{
    surg_status st = stw_layout_sync(lay, sink);
    if (lay->dir) {
        if (!st)
            st = of_dir_commit(lay->dir, sink, outp_dir_is_ours);
        lay->committed = !st;
        return st;
    }
    if (!st && lay->out->part.count)
        st = part_commit_begin(lay, sink);
    /* Shards first, the index last: a reader going by the index never sees
     * a shard that is not there yet. */
    for (size_t i = 0; !st && i < lay->n_files; i++) {
        if (lay->files[i].of)
            st = of_commit(lay->files[i].of, sink);
        lay->files[i].of = NULL;
    }
    if (!st && lay->index) {
        st = of_commit(lay->index, sink);
        lay->index = NULL;
    }
    if (!st)
        lay->committed = true;
    return st;
}

void stw_layout_free(stw_layout *lay)
{
    for (size_t i = 0; i < lay->n_files; i++) {
        if (!lay->dir) /* else the directory's */
            of_abort(lay->files[i].of);
        free(lay->files[i].path);
        free(lay->files[i].idx);
        free(lay->files[i].runs);
        buf_free(&lay->files[i].header);
    }
    of_abort(lay->index);
    free(lay->index_path);
    for (size_t i = 0; i < lay->n_stale; i++)
        free(lay->stale[i]);
    free(lay->stale);
    if (!lay->committed && lay->sn.made_dir)
        rmdir(lay->sn.dir);
    free(lay->files);
    free(lay->order);
    free(lay->file_of);
    free(lay->offset);
    free(lay->sn.dir);
    free(lay->sn.prefix);
    if (lay->writer)
        lay->writer->free(lay);
    of_dir_abort(lay->dir);
    free(lay->dir_path);
    *lay = (stw_layout){0};
}

const stw_writer *stw_writer_of(const char *out_path, const char *format)
{
    fmt_id forced = format ? fmt_by_id(format) : FMT_NONE;
    return fmt_readers[fmt_output_as(out_path, forced)]->writer;
}

surg_status stw_write(surg_sink *sink, const char *out_path, const stw_output *out)
{
    stw_layout lay;
    surg_status st = stw_layout_make(sink, out_path, out, &lay);
    if (!st)
        st = stw_layout_open(&lay, sink);
    for (size_t f = 0; !st && f < lay.n_files; f++)
        for (size_t i = 0; !st && i < lay.files[f].n; i++) {
            size_t t = lay.files[f].idx[i];
            if (out->same_as && out->same_as[t] != SIZE_MAX)
                continue;
            /* In place: an .npz or .msgpack has headers between the tensors. */
            if (lseek(of_fd(lay.files[f].of), (off_t)lay.offset[t], SEEK_SET) < 0)
                st = dg_errno(sink, lay.files[f].path, "cannot write", errno);
            if (!st)
                st = out->emit(out->ctx, t, lay.files[f].of, sink);
        }
    if (!st)
        st = stw_layout_commit(&lay, sink);
    if (!st)
        st = outp_remove_stale(&lay, sink, out->reads);
    stw_layout_free(&lay);
    return st;
}

/* ---- dtypes an output cannot hold --------------------------------------- */

surg_status stw_refuse_dtypes(surg_sink *sink, const char *code, const char *out_path,
                              const stw_output *out, bool (*holds)(surg_dtype),
                              const char *what)
{
    size_t count[SURG_DTYPE_COUNT] = {0}, n = 0, first = 0;
    for (size_t i = 0; i < out->n; i++)
        if (!holds(out->tensors[i].dtype)) {
            if (!n++)
                first = i;
            count[out->tensors[i].dtype]++;
        }
    if (!n)
        return SURG_OK;
    const surg_tensor_info *t = &out->tensors[first];
    if (n == 1) {
        dg_file(sink, SURG_ERROR, code, out_path,
                "tensor \"%s\" is %s, which %s: cast it (map \"%s\" = cast(x, f32)) or "
                "write .safetensors",
                t->name, surg_dtype_recipe_name(t->dtype), what, t->name);
        return SURG_EINVALID;
    }
    buf b;
    buf_init(&b);
    buf_printf(&b, "%zu tensors are ", n);
    size_t kinds = 0, done = 0;
    for (int d = 0; d < SURG_DTYPE_COUNT; d++)
        kinds += count[d] != 0;
    for (int d = 0; d < SURG_DTYPE_COUNT; d++) {
        if (!count[d])
            continue;
        done++;
        buf_printf(&b, "%s%s", done == 1 ? "" : done == kinds ? " or " : ", ",
                   surg_dtype_recipe_name((surg_dtype)d));
        if (kinds > 1)
            buf_printf(&b, " (%zu)", count[d]);
    }
    buf_printf(&b, ", which %s (", what);
    size_t shown = 0;
    for (size_t i = first; i < out->n && shown < 3; i++)
        if (!holds(out->tensors[i].dtype))
            buf_printf(&b, "%s\"%s\"", shown++ ? ", " : "", out->tensors[i].name);
    if (n > shown)
        buf_printf(&b, " and %zu more", n - shown);
    /* "**" is the fix when it changes nothing else: the others are f32. */
    bool all = true;
    for (size_t i = 0; i < out->n && all; i++)
        all = !holds(out->tensors[i].dtype) || out->tensors[i].dtype == SURG_F32;
    if (all)
        buf_puts(&b, "): cast them (map \"**\" = cast(x, f32)) or write .safetensors");
    else
        buf_printf(&b, "): cast each (map \"%s\" = cast(x, f32), and so on) or write "
                       ".safetensors",
                   t->name);
    if (b.failed)
        dg_nomem(sink, out_path);
    else
        dg_file(sink, SURG_ERROR, code, out_path, "%s", b.data);
    buf_free(&b);
    return SURG_EINVALID;
}
