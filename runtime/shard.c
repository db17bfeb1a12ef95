/* shard.c: a sharded checkpoint, as Hugging Face tooling writes it: an index
 * (`weight_map` from tensor name to shard file) beside the shard files. The
 * index and every shard must agree exactly. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "diag.h"
#include "readfile.h"

#define FAIL(sink, file, code, ...)                                          \
    (dg_file(sink, SURG_ERROR, code, file, __VA_ARGS__), SURG_EINVALID)

/* A shard is a plain file name beside the index: never a path. */
static bool safe_shard_name(const char *s)
{
    return *s && strcmp(s, ".") != 0 && strcmp(s, "..") != 0 &&
           !strchr(s, '/') && !strchr(s, '\\');
}

typedef struct index_map {
    const char **names; /* tensor names, as the index lists them */
    uint32_t *shard;    /* which of the distinct shard files */
    size_t n;
    const char **shards; /* distinct shard file names, first-seen order */
    size_t n_shards;
} index_map;

static surg_status add_shard(surg_ckpt *ck, surg_sink *sink, index_map *m,
                             const char *file, uint32_t *which)
{
    for (size_t i = 0; i < m->n_shards; i++)
        if (strcmp(m->shards[i], file) == 0) {
            *which = (uint32_t)i;
            return SURG_OK;
        }
    if (!safe_shard_name(file))
        return FAIL(sink, ck->path, "shard-name",
                    "shard file name \"%s\" is not a plain file name beside "
                    "the index (no '/', '\\', \".\" or \"..\")",
                    file);
    m->shards[m->n_shards] = ar_strdup(&ck->ar, file);
    if (!m->shards[m->n_shards])
        return dg_nomem(sink, ck->path);
    *which = (uint32_t)m->n_shards++;
    return SURG_OK;
}

static surg_status read_weight_map(surg_ckpt *ck, surg_sink *sink,
                                   const json_t *root, index_map *m)
{
    const json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map")
                                            : NULL;
    if (!json_is_object(wm))
        return FAIL(sink, ck->path, "shard-index",
                    "the index has no \"weight_map\" object");
    size_t n = json_object_size(wm);
    m->names = ar_array(&ck->ar, n ? n : 1, sizeof *m->names);
    m->shard = ar_array(&ck->ar, n ? n : 1, sizeof *m->shard);
    m->shards = ar_array(&ck->ar, n ? n : 1, sizeof *m->shards);
    if (!m->names || !m->shard || !m->shards)
        return dg_nomem(sink, ck->path);
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)wm, key, val) {
        if (!json_is_string(val))
            return FAIL(sink, ck->path, "shard-index",
                        "\"weight_map\" entry \"%s\" must name a shard file",
                        key);
        m->names[m->n] = ar_strdup(&ck->ar, key);
        if (!m->names[m->n])
            return dg_nomem(sink, ck->path);
        surg_status st =
            add_shard(ck, sink, m, json_string_value(val), &m->shard[m->n]);
        if (st)
            return st;
        m->n++;
    }
    return SURG_OK;
}

static const char *dir_of(arena *ar, const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return ".";
    if (slash == path)
        return "/";
    return ar_strndup(ar, path, (size_t)(slash - path));
}

static surg_status open_shards(surg_ckpt *ck, surg_sink *sink,
                               const index_map *m, st_header *headers)
{
    const char *dir = dir_of(&ck->ar, ck->path);
    if (!dir)
        return dg_nomem(sink, ck->path);
    for (size_t i = 0; i < m->n_shards; i++) {
        const char *p = ck_join(&ck->ar, dir, m->shards[i]);
        if (!p)
            return dg_nomem(sink, ck->path);
        surg_status st = st_open(&ck->ar, sink, p, &ck->files[i], &headers[i]);
        if (st)
            return st;
        ck->n_files++;
    }
    return SURG_OK;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Every tensor the index names must be in its shard, and every tensor of a
 * shard must be named by the index. */
static surg_status check_agreement(surg_ckpt *ck, surg_sink *sink,
                                   index_map *m)
{
    surg_status st = SURG_OK;
    for (size_t i = 0; i < m->n; i++) {
        size_t t = surg_ckpt_find(ck, m->names[i]);
        if (t == (size_t)-1)
            st = FAIL(sink, ck->path, "shard-missing-tensor",
                      "the index puts tensor \"%s\" in %s, which does not "
                      "hold it",
                      m->names[i], m->shards[m->shard[i]]);
        else if (ck->file_of[t] != m->shard[i])
            st = FAIL(sink, ck->path, "shard-misplaced-tensor",
                      "the index puts tensor \"%s\" in %s, but it is in %s",
                      m->names[i], m->shards[m->shard[i]],
                      ck->files[ck->file_of[t]].path);
    }
    if (st || ck->n == m->n)
        return st;
    /* Names are unique on both sides: walk both sorted lists together. */
    qsort(m->names, m->n, sizeof *m->names, str_cmp);
    size_t i = 0;
    for (size_t t = 0; t < ck->n; t++) {
        if (i < m->n && strcmp(m->names[i], ck->tensors[t].name) == 0) {
            i++;
            continue;
        }
        return FAIL(sink, ck->path, "shard-unlisted-tensor",
                    "tensor \"%s\" of %s is not in the index's "
                    "\"weight_map\"",
                    ck->tensors[t].name, ck->files[ck->file_of[t]].path);
    }
    return st;
}

/* Sizes come from the shards' own headers; a differing total in the index is
 * worth a warning, not a refusal (some writers count it differently). */
static void check_total_size(const surg_ckpt *ck, surg_sink *sink,
                             json_int_t claimed)
{
    uint64_t total = 0;
    for (size_t i = 0; i < ck->n; i++)
        total += ck->tensors[i].nbytes;
    if (claimed < 0 || (uint64_t)claimed != total)
        dg_file(sink, SURG_WARNING, "shard-total-size", ck->path,
                "the index's metadata.total_size is %lld, but its tensors hold "
                "%llu bytes",
                (long long)claimed, (unsigned long long)total);
}

surg_status ck_open_sharded(surg_ckpt *ck, surg_sink *sink,
                            const char *index_path)
{
    ck->kind = SURG_CKPT_SHARDED;
    ck->path = index_path;
    char *text;
    size_t len;
    surg_status st = rf_read_all(sink, index_path, ST_MAX_HEADER, &text, &len);
    if (st)
        return st;
    json_error_t err;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    free(text);
    if (!root)
        return FAIL(sink, ck->path, "shard-index",
                    "the index is not valid JSON: %s (at byte %d)", err.text,
                    err.position);
    index_map m = {0};
    st = read_weight_map(ck, sink, root, &m);
    const json_t *meta = json_object_get(root, "metadata");
    json_int_t claimed = json_integer_value(json_object_get(meta, "total_size"));
    bool has_total = json_is_integer(json_object_get(meta, "total_size"));
    json_decref(root);
    if (st)
        return st;
    ck->files = ar_array(&ck->ar, m.n_shards ? m.n_shards : 1, sizeof *ck->files);
    st_header *headers = calloc(m.n_shards ? m.n_shards : 1, sizeof *headers);
    if (!ck->files || !headers) {
        free(headers);
        return dg_nomem(sink, ck->path);
    }
    st = open_shards(ck, sink, &m, headers);
    if (!st)
        st = ck_collect(ck, sink, headers);
    free(headers);
    if (!st)
        st = check_agreement(ck, sink, &m);
    if (!st && has_total)
        check_total_size(ck, sink, claimed);
    return st;
}
