/* shard.c: a sharded checkpoint, as Hugging Face tooling writes it: an index
 * (`weight_map` from tensor name to shard file) beside the shard files, all
 * of one format (format.h), each read by its reader and the tables
 * assembled into one (ck_table.c). The index and every shard must agree
 * exactly. */
#include <stdlib.h>
#include <string.h>

#include "runtime/checkpoint.h"
#include "support/diag.h"
#include "support/json.h"
#include "support/readfile.h"
#include "support/strsort.h"

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

static void index_map_free(index_map *m)
{
    free(m->names);
    free(m->shard);
    free(m->shards);
    *m = (index_map){0};
}

typedef struct shard_ref {
    const char *file; /* first: the key ss_sort sorts by */
    size_t entry;
} shard_ref;

/* The distinct shard files of the entries, in first-seen order, each entry
 * pointed at its own: the names are sorted once, so n entries naming n
 * files cost n log n, not n squared. */
static surg_status distinct_shards(surg_ckpt *ck, surg_sink *sink, index_map *m,
                                   const char **files)
{
    shard_ref *refs = malloc((m->n ? m->n : 1) * sizeof *refs);
    m->shards = malloc((m->n ? m->n : 1) * sizeof *m->shards);
    if (!refs || !m->shards) {
        free(refs);
        return dg_nomem(sink, ck->path);
    }
    for (size_t i = 0; i < m->n; i++)
        refs[i] = (shard_ref){files[i], i};
    if (ss_sort(refs, m->n, sizeof *refs) != 0) {
        free(refs);
        return dg_nomem(sink, ck->path);
    }
    /* shard[i] first holds the first entry naming the same file... */
    for (size_t g = 0, e; g < m->n; g = e) {
        size_t first = refs[g].entry;
        for (e = g + 1; e < m->n && strcmp(refs[e].file, refs[g].file) == 0; e++)
            first = refs[e].entry < first ? refs[e].entry : first;
        for (size_t k = g; k < e; k++)
            m->shard[refs[k].entry] = (uint32_t)first;
    }
    free(refs);
    /* ...then, in entry order, the number of that file. */
    for (size_t i = 0; i < m->n; i++) {
        if (m->shard[i] == i) {
            m->shards[m->n_shards] = files[i];
            m->shard[i] = (uint32_t)m->n_shards++;
        } else {
            m->shard[i] = m->shard[m->shard[i]];
        }
    }
    return SURG_OK;
}

static surg_status index_json_error(surg_ckpt *ck, surg_sink *sink, const json_reader *j)
{
    return FAIL(sink, ck->path, "shard-index", "the index is not valid JSON: %s (at byte %zu)",
                j->err, j->err_at);
}

/* The entries of "weight_map": tensor name to shard file. */
static surg_status read_entries(surg_ckpt *ck, surg_sink *sink, json_reader *j, index_map *m,
                                const char ***files)
{
    size_t cap = 64;
    m->names = malloc(cap * sizeof *m->names);
    m->shard = malloc(cap * sizeof *m->shard);
    *files = malloc(cap * sizeof **files);
    if (!m->names || !m->shard || !*files)
        return dg_nomem(sink, ck->path);
    if (json_peek(j) != '{')
        return FAIL(sink, ck->path, "shard-index", "the index's \"weight_map\" must be an object");
    int more;
    if (!json_open(j, '{'))
        return index_json_error(ck, sink, j);
    for (more = json_first(j, '}'); more > 0; more = json_more(j, '}')) {
        const char *key, *file;
        if (!json_key(j, &key))
            return index_json_error(ck, sink, j);
        if (json_peek(j) != '"')
            return FAIL(sink, ck->path, "shard-index",
                        "\"weight_map\" entry \"%s\" must name a shard file", key);
        if (!json_string(j, &file))
            return index_json_error(ck, sink, j);
        if (!safe_shard_name(file))
            return FAIL(sink, ck->path, "shard-name",
                        "shard file name \"%s\" is not a plain file name beside "
                        "the index (no '/', '\\', \".\" or \"..\")",
                        file);
        if (m->n == cap) {
            cap *= 2;
            const char **n = realloc(m->names, cap * sizeof *n);
            uint32_t *sh = n ? realloc(m->shard, cap * sizeof *sh) : NULL;
            const char **f = sh ? realloc(*files, cap * sizeof *f) : NULL;
            if (n)
                m->names = n;
            if (sh)
                m->shard = sh;
            if (f)
                *files = f;
            if (!n || !sh || !f)
                return dg_nomem(sink, ck->path);
        }
        m->names[m->n] = key;
        (*files)[m->n++] = file;
    }
    return more < 0 ? index_json_error(ck, sink, j) : SURG_OK;
}

static surg_status read_weight_map(surg_ckpt *ck, surg_sink *sink, json_reader *j, index_map *m)
{
    const char **files = NULL;
    surg_status st = read_entries(ck, sink, j, m, &files);
    if (!st)
        st = distinct_shards(ck, sink, m, files);
    free(files);
    return st;
}

/* The index's "metadata": only a whole-number "total_size" is kept (it is not
 * trusted, only compared); the rest is checked and passed over. */
static bool read_index_metadata(json_reader *j, bool *has_total, uint64_t *total)
{
    json_keys keys = {0};
    int more = json_open(j, '{') ? json_first(j, '}') : -1;
    for (; more > 0; more = json_more(j, '}')) {
        const char *key;
        if (!json_key(j, &key) || !json_keys_add(j, &keys, key))
            break;
        if (strcmp(key, "total_size") == 0 && json_is_count(j)) {
            if (!json_count(j, total))
                break;
            *has_total = true;
        } else if (!json_skip(j)) {
            break;
        }
    }
    return json_keys_unique(j, &keys, "the index's metadata") && more == 0;
}

/* {"metadata": {"total_size": N, ...}, "weight_map": {...}}; other keys are
 * passed over. */
static surg_status read_index(surg_ckpt *ck, surg_sink *sink, json_reader *j, index_map *m,
                              bool *has_total, uint64_t *total)
{
    json_keys keys = {0};
    bool has_map = false;
    if (json_peek(j) != '{')
        return FAIL(sink, ck->path, "shard-index", "the index must be a JSON object");
    int more;
    if (!json_open(j, '{'))
        return index_json_error(ck, sink, j);
    for (more = json_first(j, '}'); more > 0; more = json_more(j, '}')) {
        const char *key;
        if (!json_key(j, &key) || !json_keys_add(j, &keys, key)) {
            json_keys_free(&keys);
            return index_json_error(ck, sink, j);
        }
        surg_status st = SURG_OK;
        if (strcmp(key, "weight_map") == 0 && !has_map) {
            has_map = true;
            st = read_weight_map(ck, sink, j, m);
        } else if (strcmp(key, "metadata") == 0 && json_peek(j) == '{') {
            if (!read_index_metadata(j, has_total, total))
                st = index_json_error(ck, sink, j);
        } else if (!json_skip(j)) {
            st = index_json_error(ck, sink, j);
        }
        if (st) {
            json_keys_free(&keys);
            return st;
        }
    }
    if (!json_keys_unique(j, &keys, "the index") || more < 0 || !json_end(j))
        return index_json_error(ck, sink, j);
    /* Sort a copy: the names stay in step with their shards. */
    const char **names = malloc((m->n ? m->n : 1) * sizeof *names);
    if (!names)
        return dg_nomem(sink, ck->path);
    if (m->n)
        memcpy(names, m->names, m->n * sizeof *names);
    bool unique = json_unique(j, names, m->n, "\"weight_map\"");
    free(names);
    if (!unique)
        return index_json_error(ck, sink, j);
    if (!has_map)
        return FAIL(sink, ck->path, "shard-index", "the index has no \"weight_map\" object");
    return SURG_OK;
}

/* `dir`/`name` in the arena ("dir/" not doubled). */
static char *join(arena *ar, const char *dir, const char *name)
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

static const char *dir_of(arena *ar, const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return ".";
    if (slash == path)
        return "/";
    return ar_strndup(ar, path, (size_t)(slash - path));
}

/* The shards' paths, beside the index, and their format (fmt_of_shard:
 * safetensors where a name says nothing): all of one, never a mixture. */
static surg_status shard_paths(surg_ckpt *ck, surg_sink *sink, const index_map *m,
                               const char ***paths, fmt_id *format)
{
    const char *dir = dir_of(&ck->ar, ck->path);
    *paths = ar_array(&ck->ar, m->n_shards ? m->n_shards : 1, sizeof **paths);
    if (!dir || !*paths)
        return dg_nomem(sink, ck->path);
    *format = m->n_shards ? fmt_of_shard(m->shards[0]) : (fmt_id)0;
    for (size_t i = 0; i < m->n_shards; i++) {
        if (fmt_of_shard(m->shards[i]) != *format)
            return FAIL(sink, ck->path, "shard-format",
                        "the index names shards of two formats, \"%s\" and \"%s\"",
                        m->shards[0], m->shards[i]);
        if (!((*paths)[i] = join(&ck->ar, dir, m->shards[i])))
            return dg_nomem(sink, ck->path);
    }
    return SURG_OK;
}

/* Every shard read, in order (the first that fails stops them), and their
 * tables assembled; shard_of[f] says which shard file f is of (a shard's
 * file may have its scratch file after it). */
static surg_status open_shards(surg_ckpt *ck, surg_sink *sink, size_t n,
                               const char *const *paths, fmt_id format, uint32_t **shard_of)
{
    fmt_table *t = calloc(n ? n : 1, sizeof *t);
    surg_status st = t ? SURG_OK : dg_nomem(sink, ck->path);
    size_t opened = 0;
    for (; !st && opened < n; opened++)
        st = fmt_open(format, &ck->ar, sink, paths[opened], &t[opened]);
    if (!st)
        st = ck_assemble(ck, sink, t, n);
    *shard_of = st ? NULL : malloc((ck->n_files ? ck->n_files : 1) * sizeof **shard_of);
    if (!st && !*shard_of)
        st = dg_nomem(sink, ck->path);
    for (size_t i = 0, f = 0; !st && i < n; i++)
        for (size_t k = t[i].src ? 2 : 1; k; k--)
            (*shard_of)[f++] = (uint32_t)i;
    for (size_t i = 0; i < opened; i++)
        fmt_table_free(&t[i]);
    free(t);
    return st;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The ties are sorted by alias (ck_table.c): found by bisection. */
static bool is_tied(const surg_ckpt *ck, const char *name)
{
    return ss_find(ck->ties, ck->n_ties, sizeof *ck->ties, name) != (size_t)-1;
}

/* Every tensor the index names must be in its shard, and every tensor of a
 * shard must be named by the index. File f is of shard shard_of[f], at
 * paths[shard]. A name the index lists may also be tied to a stored tensor
 * (a torch.save shard stores one tensor for two names of one view). */
static surg_status check_agreement(surg_ckpt *ck, surg_sink *sink, index_map *m,
                                   const uint32_t *shard_of, const char *const *paths)
{
    surg_status st = SURG_OK;
    for (size_t i = 0; i < m->n; i++) {
        size_t t = surg_ckpt_find(ck, m->names[i]);
        if (t == (size_t)-1 && is_tied(ck, m->names[i]))
            continue;
        if (t == (size_t)-1)
            st = FAIL(sink, ck->path, "shard-missing-tensor",
                      "the index puts tensor \"%s\" in %s, which does not "
                      "hold it",
                      m->names[i], m->shards[m->shard[i]]);
        else if (shard_of[ck->file_of[t]] != m->shard[i])
            st = FAIL(sink, ck->path, "shard-misplaced-tensor",
                      "the index puts tensor \"%s\" in %s, but it is in %s",
                      m->names[i], m->shards[m->shard[i]], paths[shard_of[ck->file_of[t]]]);
    }
    if (st || ck->n == m->n)
        return st;
    /* Names are unique on both sides: walk both sorted lists together (the
     * index's tied names are the ones no tensor has). */
    qsort(m->names, m->n, sizeof *m->names, str_cmp);
    size_t i = 0;
    for (size_t t = 0; t < ck->n; t++) {
        while (i < m->n && strcmp(m->names[i], ck->tensors[t].name) < 0)
            i++;
        if (i < m->n && strcmp(m->names[i], ck->tensors[t].name) == 0) {
            i++;
            continue;
        }
        return FAIL(sink, ck->path, "shard-unlisted-tensor",
                    "tensor \"%s\" of %s is not in the index's "
                    "\"weight_map\"",
                    ck->tensors[t].name, paths[shard_of[ck->file_of[t]]]);
    }
    return st;
}

/* Sizes come from the shards' own headers; a differing total in the index is
 * worth a warning, not a refusal (some writers count it differently). */
static void check_total_size(const surg_ckpt *ck, surg_sink *sink, uint64_t claimed)
{
    uint64_t total = 0;
    for (size_t i = 0; i < ck->n; i++)
        total += ck->tensors[i].nbytes;
    if (claimed != total)
        dg_file(sink, SURG_WARNING, "shard-total-size", ck->path,
                "the index's metadata.total_size is %llu, but its tensors hold %llu bytes",
                (unsigned long long)claimed, (unsigned long long)total);
}

surg_status ck_open_index(surg_ckpt *ck, surg_sink *sink)
{
    ck->kind = SURG_CKPT_SHARDED;
    char *text;
    size_t len;
    surg_status st = fmt_check_lfs(sink, ck->path);
    if (st)
        return st;
    st = rf_read_into(&ck->ar, sink, ck->path, ST_MAX_HEADER, &text, &len);
    if (st)
        return st;
    json_reader j;
    json_init_in_place(&j, text, len);
    index_map m = {0};
    bool has_total = false;
    uint64_t claimed = 0;
    st = read_index(ck, sink, &j, &m, &has_total, &claimed);
    if (st) {
        index_map_free(&m);
        return st;
    }
    const char **paths = NULL;
    fmt_id format = FMT_NONE;
    uint32_t *shard_of = NULL;
    st = shard_paths(ck, sink, &m, &paths, &format);
    if (!st)
        st = open_shards(ck, sink, m.n_shards, paths, format, &shard_of);
    if (!st)
        st = check_agreement(ck, sink, &m, shard_of, paths);
    if (!st && has_total)
        check_total_size(ck, sink, claimed);
    free(shard_of);
    index_map_free(&m);
    return st;
}
