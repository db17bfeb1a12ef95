/* partition.c: partitioned runs (partition.h): the part a spec or a
 * launcher's variables name, the shards each part owns, what each part
 * costs, and how a part's commit differs from a whole run's. */
#include "runtime/partition.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/exec_out.h"
#include "support/diag.h"

#define PART_FAIL(sink, ...) \
    (dg_file(sink, SURG_ERROR, "part", "--part", __VA_ARGS__), SURG_EUSAGE)

/* ---- which part is this ------------------------------------------------ */

/* A whole decimal number of at most 10 digits (no sign, no space). */
static bool parse_count(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    size_t n = 0;
    for (; s[n] >= '0' && s[n] <= '9' && n < 11; n++)
        v = v * 10 + (uint64_t)(s[n] - '0');
    *out = v;
    return n > 0 && n <= 10 && s[n] == '\0';
}

/* I of N, or an error saying which rule `said` breaks. */
static surg_status check_part(surg_sink *sink, const char *said, uint64_t i, uint64_t n,
                              surg_part *out)
{
    if (n == 0)
        return PART_FAIL(sink, "%s: the number of parts must be at least 1", said);
    if (n > SURG_PART_MAX)
        return PART_FAIL(sink, "%s: at most %u parts", said, SURG_PART_MAX);
    if (i >= n)
        return PART_FAIL(sink, "%s: parts count from 0, so part %llu of %llu does not exist "
                               "(the last is %llu)",
                         said, (unsigned long long)i, (unsigned long long)n,
                         (unsigned long long)(n - 1));
    out->index = (uint32_t)i;
    out->count = (uint32_t)n;
    return SURG_OK;
}

static const char *const source_names[] = {
    [SURG_PART_GIVEN] = "--part",
    [SURG_PART_OMPI] = "Open MPI (OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE)",
    [SURG_PART_PMI] = "PMI (PMI_RANK, PMI_SIZE)",
    [SURG_PART_SLURM] = ("the Slurm job array (SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_MIN, "
                         "SLURM_ARRAY_TASK_COUNT)"),
    [SURG_PART_TORCHRUN] = "torchrun (RANK, WORLD_SIZE)",
};

const char *surg_part_source_name(surg_part_source s)
{
    return (unsigned)s < sizeof source_names / sizeof *source_names ? source_names[s] : "?";
}

/* A launcher's variables: the part's number, the number of parts, and for
 * a Slurm array the first task's id and the step between ids. */
typedef struct launcher {
    surg_part_source source;
    const char *rank, *size, *min, *step;
} launcher;

static const launcher launchers[] = {
    {SURG_PART_OMPI, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", NULL, NULL},
    {SURG_PART_PMI, "PMI_RANK", "PMI_SIZE", NULL, NULL},
    {SURG_PART_SLURM, "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN",
     "SLURM_ARRAY_TASK_STEP"},
    {SURG_PART_TORCHRUN, "RANK", "WORLD_SIZE", NULL, NULL},
};

/* One variable: its number, or an error naming it. */
static surg_status env_count(surg_sink *sink, const char *name, const char *value,
                             uint64_t *out)
{
    if (parse_count(value, out))
        return SURG_OK;
    char shown[24];
    size_t n = strnlen(value, 20);
    memcpy(shown, value, n);
    strcpy(shown + n, value[n] ? "..." : "");
    return PART_FAIL(sink, "auto: %s is '%s', not a whole number", name, shown);
}

/* The part one launcher's variables name (*found false when none of them
 * is set). */
static surg_status from_launcher(surg_sink *sink, surg_env_fn env, const launcher *l,
                                 bool *found, surg_part *out)
{
    const char *rank = env(l->rank), *size = env(l->size);
    const char *min = l->min ? env(l->min) : NULL, *step = l->step ? env(l->step) : NULL;
    *found = rank || size || min;
    if (!*found)
        return SURG_OK;
    const char *missing = !rank ? l->rank : !size ? l->size : l->min && !min ? l->min : NULL;
    if (missing)
        return PART_FAIL(sink, "auto: %s is not set, though %s is", missing,
                         rank ? l->rank : size ? l->size : l->min);
    uint64_t i, n, first = 0, by = 1;
    surg_status st = env_count(sink, l->rank, rank, &i);
    if (!st)
        st = env_count(sink, l->size, size, &n);
    if (!st && min)
        st = env_count(sink, l->min, min, &first);
    if (!st && step)
        st = env_count(sink, l->step, step, &by);
    if (st)
        return st;
    if (i < first)
        return PART_FAIL(sink, "auto: %s=%llu is below %s=%llu", l->rank, (unsigned long long)i,
                         l->min, (unsigned long long)first);
    if (by == 0 || (i - first) % by)
        return PART_FAIL(sink, "auto: %s=%llu is not %s=%llu plus a multiple of %s=%llu",
                         l->rank, (unsigned long long)i, l->min, (unsigned long long)first,
                         l->step, (unsigned long long)by);
    char said[128];
    snprintf(said, sizeof said, "auto: %s=%llu of %s=%llu", l->rank, (unsigned long long)i,
             l->size, (unsigned long long)n);
    out->source = l->source;
    return check_part(sink, said, (i - first) / by, n, out);
}

static surg_status from_env(surg_sink *sink, surg_env_fn env, surg_part *out)
{
    bool any = false;
    for (size_t k = 0; k < sizeof launchers / sizeof *launchers; k++) {
        bool found;
        surg_part p = {0};
        surg_status st = from_launcher(sink, env, &launchers[k], &found, &p);
        if (st)
            return st;
        if (!found)
            continue;
        if (any && (p.index != out->index || p.count != out->count))
            return PART_FAIL(sink, "auto: %s says part %u of %u, and %s says part %u of %u: "
                                   "unset the variables that do not belong to this run, or "
                                   "give --part I/N",
                             surg_part_source_name(out->source), out->index, out->count,
                             surg_part_source_name(p.source), p.index, p.count);
        if (!any)
            *out = p;
        any = true;
    }
    if (!any)
        return PART_FAIL(sink, "auto: no launcher's variables are set (Open MPI's "
                               "OMPI_COMM_WORLD_RANK, PMI_RANK, a Slurm array's "
                               "SLURM_ARRAY_TASK_ID, torchrun's RANK, each with its count): "
                               "give --part I/N");
    return SURG_OK;
}

static const char *process_env(const char *name) { return getenv(name); }

surg_status surg_part_parse(const char *spec, surg_env_fn env, surg_part *out, surg_sink *sink)
{
    *out = (surg_part){0};
    if (spec && strcmp(spec, "auto") == 0)
        return from_env(sink, env ? env : process_env, out);
    const char *slash = spec ? strchr(spec, '/') : NULL;
    uint64_t i, n;
    char *first = slash ? strndup(spec, (size_t)(slash - spec)) : NULL;
    bool ok = first && parse_count(first, &i) && parse_count(slash + 1, &n);
    free(first);
    if (slash && !first)
        return dg_nomem(sink, "--part");
    if (!ok) {
        char shown[40];
        size_t len = spec ? strnlen(spec, 30) : 0;
        memcpy(shown, spec ? spec : "", len);
        strcpy(shown + len, spec && spec[len] ? "..." : "");
        return PART_FAIL(sink, "takes I/N (part I of N, counting from 0: 0/4 to 3/4) or auto "
                               "(from the launcher), not '%s'",
                         shown);
    }
    out->source = SURG_PART_GIVEN;
    return check_part(sink, spec, i, n, out);
}

/* ---- which shards are this part's ------------------------------------- */

typedef struct shard_size {
    uint64_t size;
    size_t i;
} shard_size;

static int larger_first(const void *a, const void *b)
{
    const shard_size *x = a, *y = b;
    if (x->size != y->size)
        return x->size > y->size ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* The parts as a binary heap, least loaded (then lowest) on top. */
typedef struct load {
    uint64_t bytes;
    uint32_t part;
} load;

static bool lighter(const load *a, const load *b)
{
    return a->bytes != b->bytes ? a->bytes < b->bytes : a->part < b->part;
}

static void sift_down(load *h, size_t n, size_t at)
{
    for (;;) {
        size_t l = 2 * at + 1, r = l + 1, min = at;
        if (l < n && lighter(&h[l], &h[min]))
            min = l;
        if (r < n && lighter(&h[r], &h[min]))
            min = r;
        if (min == at)
            return;
        load t = h[at];
        h[at] = h[min];
        h[min] = t;
        at = min;
    }
}

bool part_assign(const uint64_t *sizes, size_t m, uint32_t count, uint32_t *owner)
{
    shard_size *s = malloc((m ? m : 1) * sizeof *s);
    /* Only the parts that can get a shard take part: at most m. */
    size_t k = count < m ? count : m;
    load *h = malloc((k ? k : 1) * sizeof *h);
    if (!s || !h) {
        free(s);
        free(h);
        return false;
    }
    for (size_t i = 0; i < m; i++)
        s[i] = (shard_size){sizes[i], i};
    qsort(s, m, sizeof *s, larger_first);
    for (size_t p = 0; p < k; p++) /* all at 0 bytes, in order: a heap already */
        h[p] = (load){0, (uint32_t)p};
    for (size_t i = 0; i < m; i++) {
        owner[s[i].i] = h[0].part;
        h[0].bytes = h[0].bytes + s[i].size < h[0].bytes ? UINT64_MAX : h[0].bytes + s[i].size;
        sift_down(h, k, 0);
    }
    free(s);
    free(h);
    return true;
}

/* The part each file of a laid-out output goes to (malloc'd), or NULL
 * when out of memory. A file weighs its tensors' bytes: not its size,
 * whose header padding depends on the host (the zero-copy layout's block,
 * st_share.h), so that parts on different machines agree. */
static uint32_t *owners_of(const stw_layout *lay, uint32_t count)
{
    size_t m = lay->n_files;
    uint64_t *sizes = calloc(m ? m : 1, sizeof *sizes);
    uint32_t *owner = calloc(m ? m : 1, sizeof *owner);
    for (size_t i = 0; sizes && i < m; i++)
        for (size_t k = 0; k < lay->files[i].n; k++)
            sizes[i] += lay->out->tensors[lay->files[i].idx[k]].nbytes;
    if (!sizes || !owner || !part_assign(sizes, m, count, owner)) {
        free(owner);
        owner = NULL;
    }
    free(sizes);
    return owner;
}

static surg_status no_parts(surg_sink *sink, const char *out_path)
{
    dg_file(sink, SURG_ERROR, "part", out_path,
            "--part writes one part of a sharded safetensors output: give --max-shard-size "
            "(with one output, and no --out-format but safetensors)");
    return SURG_EUSAGE;
}

surg_status part_mark(stw_layout *lay, surg_sink *sink, const char *out_path)
{
    const surg_part *p = &lay->out->part;
    if (!lay->sn.dir || lay->writer || lay->dir_path)
        return no_parts(sink, out_path);
    uint32_t *owner = owners_of(lay, p->count);
    if (!owner)
        return dg_nomem(sink, out_path);
    for (size_t i = 0; i < lay->n_files; i++)
        lay->files[i].elsewhere = owner[i] != p->index;
    free(owner);
    struct stat sb;
    if (lay->index_path && lstat(lay->index_path, &sb) == 0 && S_ISREG(sb.st_mode) &&
        !outp_is_ours(lay->index_path)) {
        dg_file(sink, SURG_ERROR, "out-stale", lay->index_path,
                "a part removes the index of an earlier output before its shards go in place "
                "(surg index writes the new one), and surg did not write this file (no \""
                OUTP_MARK_KEY "\": \"" OUTP_MARK_VALUE "\" in its metadata), so it is not "
                "removed: move it away, or write the output to another directory");
        return SURG_EUSAGE;
    }
    return SURG_OK;
}

surg_status part_commit_begin(stw_layout *lay, surg_sink *sink)
{
    if (!stw_layout_makes_any(lay)) {
        for (size_t i = 0; i < lay->n_stale; i++)
            free(lay->stale[i]);
        lay->n_stale = 0;
        return SURG_OK;
    }
    struct stat sb;
    if (!lay->index_path || (lstat(lay->index_path, &sb) != 0 && errno == ENOENT))
        return SURG_OK;
    if (!outp_is_ours(lay->index_path)) {
        dg_file(sink, SURG_ERROR, "out-stale", lay->index_path,
                "this file appeared while the part ran, and surg did not write it: it is not "
                "removed, and the part's shards are not put in place");
        return SURG_EUSAGE;
    }
    if (unlink(lay->index_path) != 0 && errno != ENOENT)
        return dg_errno(sink, lay->index_path,
                        "cannot remove the index of the earlier output (a part's shards go in "
                        "place only once it is gone)",
                        errno);
    int fd = open(lay->sn.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd); /* the index gone for good before any shard is replaced */
        close(fd);
    }
    return SURG_OK;
}

/* ---- what each part costs --------------------------------------------- */

surg_status surg_plan_parts(const surg_plan *pl, uint64_t max_shard_size, uint32_t count,
                            surg_part_cost *costs, surg_sink *sink)
{
    if (!max_shard_size || !count || count > SURG_PART_MAX)
        return PART_FAIL(sink, "parts are of a sharded output (a size of shards, and 1 to %u "
                               "parts)",
                         SURG_PART_MAX);
    char digest[SURG_DIGEST_CHARS + 1];
    surg_status st = surg_plan_digest(pl, max_shard_size, digest);
    surg_tensor_info *info = malloc((pl->n ? pl->n : 1) * sizeof *info);
    if (st || !info) {
        free(info);
        return dg_nomem(sink, "surg");
    }
    for (size_t t = 0; t < pl->n; t++)
        info[t] = xo_tensor_info(&pl->t[t], 0);
    stw_output out = {.tensors = info, .n = pl->n, .meta = pl->meta, .n_meta = pl->n_meta,
                      .no_format = pl_drops_format(&pl->rec),
                      .max_shard_size = max_shard_size, .digest = digest};
    stw_layout lay;
    st = stw_layout_shards(sink, &out, &lay);
    size_t m = lay.n_files;
    uint32_t *owner = st ? NULL : owners_of(&lay, count);
    if (!st && !owner)
        st = dg_nomem(sink, "surg");
    for (uint32_t p = 0; !st && p < count; p++)
        costs[p] = (surg_part_cost){0};
    for (size_t i = 0; !st && i < m; i++) {
        surg_part_cost *c = &costs[owner[i]];
        c->shards++;
        c->written += lay.files[i].size;
        c->tensors += lay.files[i].n;
        for (size_t j = 0; j < lay.files[i].n; j++) {
            const pl_tensor *x = &pl->t[lay.files[i].idx[j]];
            c->read += x->read + (x->kind == PL_COPY ? x->nbytes : 0);
        }
    }
    free(owner);
    stw_layout_free(&lay);
    free(info);
    return st;
}
