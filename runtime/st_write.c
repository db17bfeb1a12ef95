/* st_write.c: the safetensors writer. One file: sorted header, spaces to a
 * multiple of 8, data in header order. Sharded: tensors in name order cut
 * into shards of at most max_shard_size bytes (a larger tensor alone), named
 * `model-0000N-of-0000M.safetensors`, plus the index Hugging Face writes.
 * All files are written under temporary names and renamed only when every
 * one is complete and synced. */
#include "st_write.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "diag.h"

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

static void put_meta(buf *b, const stw_output *out)
{
    bool has_format = false;
    for (size_t i = 0; i < out->n_meta; i++)
        has_format |= strcmp(out->meta[i].key, "format") == 0;
    buf_puts(b, "\"__metadata__\":{");
    bool first = true, pending = !has_format;
    for (size_t i = 0; i <= out->n_meta; i++) {
        /* "format": "pt" goes where sorting puts it. */
        if (pending && (i == out->n_meta || strcmp(out->meta[i].key, "format") > 0)) {
            buf_puts(b, first ? "\"format\":\"pt\"" : ",\"format\":\"pt\"");
            first = pending = false;
        }
        if (i == out->n_meta)
            break;
        if (!first)
            buf_putc(b, ',');
        buf_json_string(b, out->meta[i].key);
        buf_putc(b, ':');
        buf_json_string(b, out->meta[i].value);
        first = false;
    }
    buf_putc(b, '}');
}

static void put_entry(buf *b, const surg_tensor_info *t, uint64_t begin)
{
    buf_putc(b, ',');
    buf_json_string(b, t->name);
    buf_printf(b, ":{\"dtype\":\"%s\",\"shape\":[", surg_dtype_st_name(t->dtype));
    for (uint32_t d = 0; d < t->rank; d++)
        buf_printf(b, "%s%llu", d ? "," : "", (unsigned long long)t->shape[d]);
    buf_printf(b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)begin,
               (unsigned long long)(begin + t->nbytes));
}

surg_status stw_header(const stw_output *out, size_t *idx, size_t n, buf *hdr)
{
    bool nomem = false;
    sort_idx(out, idx, n, ref_order, &nomem);
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
    while (json.len % 8)
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

/* Write one file's temporary; on success *of is finished but not renamed. */
static surg_status write_file(surg_sink *sink, const char *path,
                              const stw_output *out, size_t *idx, size_t n,
                              of_file **of)
{
    buf hdr;
    buf_init(&hdr);
    surg_status st = stw_header(out, idx, n, &hdr);
    if (st) {
        buf_free(&hdr);
        return dg_nomem(sink, path);
    }
    st = of_create(sink, path, of);
    if (!st)
        st = of_write(*of, sink, hdr.data, hdr.len);
    buf_free(&hdr);
    for (size_t i = 0; i < n && !st; i++)
        st = out->emit(out->ctx, idx[i], *of, sink);
    if (!st)
        st = of_finish(*of, sink);
    if (st) {
        of_abort(*of);
        *of = NULL;
    }
    return st;
}

/* Where the shards of `out_path` go: a directory, or `DIR/PREFIX.safetensors.index.json`. */
typedef struct shard_names {
    char *dir;
    char *prefix; /* "model" */
    bool made_dir;
} shard_names;

static surg_status shard_place(surg_sink *sink, const char *out_path,
                               shard_names *sn)
{
    const char *suffix = ".safetensors.index.json";
    size_t n = strlen(out_path), k = strlen(suffix);
    const char *slash = strrchr(out_path, '/');
    if (n > k && strcmp(out_path + n - k, suffix) == 0 &&
        (!slash || (size_t)(slash - out_path) + 1 < n - k)) {
        size_t base = slash ? (size_t)(slash - out_path + 1) : 0;
        sn->dir = base ? strndup(out_path, base) : strdup(".");
        sn->prefix = strndup(out_path + base, n - k - base);
    } else {
        sn->dir = strdup(out_path);
        sn->prefix = strdup("model");
        if (sn->dir && mkdir(sn->dir, 0777) == 0)
            sn->made_dir = true;
        else if (sn->dir && errno != EEXIST)
            return dg_errno(sink, out_path, "cannot create the output directory",
                            errno);
    }
    if (!sn->dir || !sn->prefix)
        return dg_nomem(sink, out_path);
    struct stat sb;
    if (stat(sn->dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        dg_file(sink, SURG_ERROR, "io", out_path,
                "a sharded output must be a directory or a "
                "*.safetensors.index.json path in an existing directory");
        return SURG_EIO;
    }
    return SURG_OK;
}

static char *shard_path(const shard_names *sn, size_t i, size_t m)
{
    buf b;
    buf_init(&b);
    if (m == 1)
        buf_printf(&b, "%s/%s.safetensors", sn->dir, sn->prefix);
    else
        buf_printf(&b, "%s/%s-%05zu-of-%05zu.safetensors", sn->dir, sn->prefix,
                   i + 1, m);
    return buf_take(&b);
}

static surg_status write_index(surg_sink *sink, const shard_names *sn,
                               const stw_output *out, const size_t *order,
                               const size_t *shard_of, size_t m,
                               of_file **of)
{
    buf b;
    buf_init(&b);
    uint64_t total = 0;
    for (size_t i = 0; i < out->n; i++)
        total += out->tensors[i].nbytes;
    buf_printf(&b, "{\n  \"metadata\": {\n    \"total_size\": %llu\n  },\n"
                   "  \"weight_map\": {",
               (unsigned long long)total);
    /* As Python's json.dumps(index, indent=2, sort_keys=True) writes it. */
    for (size_t i = 0; i < out->n; i++) {
        char *p = shard_path(sn, shard_of[i], m);
        const char *base = p ? strrchr(p, '/') + 1 : "";
        buf_puts(&b, i ? ",\n    " : "\n    ");
        buf_json_ascii(&b, out->tensors[order[i]].name);
        buf_puts(&b, ": ");
        buf_json_ascii(&b, base);
        b.failed |= !p;
        free(p);
    }
    buf_puts(&b, out->n ? "\n  }\n}\n" : "}\n}\n");
    buf ipath;
    buf_init(&ipath);
    buf_printf(&ipath, "%s/%s.safetensors.index.json", sn->dir, sn->prefix);
    surg_status st = b.failed || ipath.failed ? dg_nomem(sink, sn->dir) : SURG_OK;
    if (!st)
        st = of_create(sink, ipath.data, of);
    if (!st)
        st = of_write(*of, sink, b.data, b.len);
    if (!st)
        st = of_finish(*of, sink);
    if (st) {
        of_abort(*of);
        *of = NULL;
    }
    buf_free(&b);
    buf_free(&ipath);
    return st;
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

static surg_status commit_all(surg_sink *sink, of_file **files, size_t n)
{
    surg_status st = SURG_OK;
    for (size_t i = 0; i < n; i++) {
        if (!st)
            st = of_commit(files[i], sink);
        else
            of_abort(files[i]);
        files[i] = NULL;
    }
    return st;
}

static surg_status write_sharded(surg_sink *sink, const char *out_path,
                                 const stw_output *out)
{
    shard_names sn = {0};
    size_t n = out->n;
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    size_t *shard_of = malloc((n ? n : 1) * sizeof *shard_of);
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    of_file **files = calloc(n + 2, sizeof *files);
    surg_status st = order && shard_of && idx && files ? SURG_OK
                                                        : dg_nomem(sink, out_path);
    if (!st)
        st = shard_place(sink, out_path, &sn);
    bool nomem = false;
    for (size_t i = 0; !st && i < n; i++)
        order[i] = i;
    if (!st)
        sort_idx(out, order, n, name_order, &nomem);
    if (nomem)
        st = dg_nomem(sink, out_path);
    size_t m = st ? 0 : assign_shards(out, order, shard_of);
    size_t done = 0;
    for (size_t s = 0; !st && s < m; s++) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (shard_of[i] == s)
                idx[k++] = order[i];
        char *p = shard_path(&sn, s, m);
        st = p ? write_file(sink, p, out, idx, k, &files[done]) : dg_nomem(sink, out_path);
        done += !st;
        free(p);
    }
    if (!st && m > 1) {
        st = write_index(sink, &sn, out, order, shard_of, m, &files[done]);
        done += !st;
    }
    if (st)
        for (size_t i = 0; i < done; i++)
            of_abort(files[i]);
    else
        st = commit_all(sink, files, done);
    if (st && sn.made_dir)
        rmdir(sn.dir);
    free(sn.dir);
    free(sn.prefix);
    free(order);
    free(shard_of);
    free(idx);
    free(files);
    return st;
}

surg_status stw_write(surg_sink *sink, const char *out_path,
                      const stw_output *out)
{
    if (out->max_shard_size)
        return write_sharded(sink, out_path, out);
    size_t *idx = malloc((out->n ? out->n : 1) * sizeof *idx);
    if (!idx)
        return dg_nomem(sink, out_path);
    for (size_t i = 0; i < out->n; i++)
        idx[i] = i;
    of_file *f = NULL;
    surg_status st = write_file(sink, out_path, out, idx, out->n, &f);
    free(idx);
    return st ? st : of_commit(f, sink);
}
