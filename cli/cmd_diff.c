/* cmd_diff.c: `surg diff A B [--recipe R]`: two checkpoints (or what a
 * recipe makes of A, streamed, and B) compared name by name, then element
 * by element, a chunk at a time; exit 0 equal, 1 different, 2 error. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char help[] =
    "usage: surg diff A B [--rtol X] [--atol X] [--json] [--schema] [--format NAME]\n"
    "       surg diff A B --recipe R [--threads N] [options]\n"
    "\n"
    "Compare two checkpoints of any formats surg reads, name by name: names\n"
    "only in A or only in B, dtypes and shapes that differ, then the values,\n"
    "streamed a chunk at a time (each file read once). Bit-exact by default:\n"
    "an element differs when its bits do (so -0 differs from +0, and NaNs\n"
    "with other payloads differ). With --rtol or --atol an element differs\n"
    "when not |a - b| <= atol + rtol * |b| (NumPy's isclose, b from B), a NaN\n"
    "being equal to a NaN in the same place. For each tensor that differs:\n"
    "how many elements, the largest absolute and relative difference and\n"
    "ULP distance, and the first differing index. Tied names are compared as\n"
    "the tensors they are stored as.\n"
    "\n"
    "  --recipe R     compare what `surg run R A` would write with B, without\n"
    "                 writing it: the result is streamed into the comparison\n"
    "  --schema       compare abstract states only (names, dtypes, shapes),\n"
    "                 as when A or B is a schema file\n"
    "  --rtol X       relative tolerance (default 0)\n"
    "  --atol X       absolute tolerance (default 0)\n"
    "  --json         one JSON object on standard output (docs/commands.md)\n"
    "  --format NAME  the format of A and B when their names do not say\n"
    "  --threads N    threads running the recipe (default: the cores)\n"
    "\n"
    "exit status: 0 equal, 1 different, 2 usage or I/O error (or a broken\n"
    "checkpoint or recipe).\n";

enum { CHUNK = 64 * 1024 }; /* elements compared at a time */

typedef enum e_state { E_EQUAL, E_ONLY_A, E_ONLY_B, E_DTYPE, E_SHAPE, E_VALUES } e_state;

/* A name of one side: the tensor it is (a tied name: the one it is stored as). */
typedef struct named {
    const char *name;
    size_t index;
    const surg_tensor_info *info;
} named;

typedef struct entry {
    const char *name;
    const surg_tensor_info *ia, *ib;
    size_t a, b;     /* tensor indices, SIZE_MAX when absent */
    e_state state;
    dv_stats st;
    size_t next;     /* recipe: the next entry made of the same output, or SIZE_MAX */
} entry;

typedef struct diff {
    const char *pa, *pb, *recipe, *format;
    dv_opts o;
    bool json, schema;
    unsigned threads;
    surg_ckpt *a, *b;
    surg_recipe *r;
    surg_program *prog;
    surg_plan *plan;
    entry *e;
    size_t n;
    size_t *head;    /* recipe: per output, its first entry */
    pthread_mutex_t lock;
    surg_sink *sink;
} diff;

/* ---- arguments ---------------------------------------------------------- */

static bool parse_tol(const char *v, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (!*v || *end || errno || !isfinite(x) || x < 0)
        return false;
    *out = x;
    return true;
}

static int parse_args(int argc, char **argv, diff *d)
{
    const char *pos[2];
    int n_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(help, stdout);
            return 0;
        }
        if (strcmp(a, "--json") == 0) {
            d->json = true;
        } else if (strcmp(a, "--schema") == 0) {
            d->schema = true;
        } else if (strcmp(a, "--rtol") == 0 || strcmp(a, "--atol") == 0 ||
                   strcmp(a, "--recipe") == 0 || strcmp(a, "--format") == 0 ||
                   strcmp(a, "--threads") == 0) {
            if (i + 1 >= argc)
                return usage_error("diff", "%s needs a value", a);
            const char *v = argv[++i];
            if (a[2] == 'r' && a[3] == 't') {
                if (!parse_tol(v, &d->o.rtol))
                    return usage_error("diff", "--rtol takes a number of 0 or more, not '%s'", v);
                d->o.tol = true;
            } else if (a[2] == 'a') {
                if (!parse_tol(v, &d->o.atol))
                    return usage_error("diff", "--atol takes a number of 0 or more, not '%s'", v);
                d->o.tol = true;
            } else if (a[2] == 'r') {
                d->recipe = v;
            } else if (a[2] == 'f') {
                d->format = v;
            } else {
                char *end;
                long t = strtol(v, &end, 10);
                if (!*v || *end || t < 1 || t > 1024)
                    return usage_error("diff", "--threads takes a number from 1 to 1024, not '%s'",
                                       v);
                d->threads = (unsigned)t;
            }
        } else if (a[0] == '-' && a[1]) {
            return usage_error("diff", "unknown option '%s'", a);
        } else if (n_pos == 2) {
            return usage_error("diff", "unexpected argument '%s': diff takes two checkpoints", a);
        } else {
            pos[n_pos++] = a;
        }
    }
    if (n_pos < 2)
        return usage_error("diff", "diff takes two checkpoints, A and B");
    d->pa = pos[0];
    d->pb = pos[1];
    if (!d->threads) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        d->threads = cores > 0 ? (unsigned)cores : 1;
    }
    return -1;
}

/* ---- names ------------------------------------------------------------- */

static int by_name(const void *x, const void *y)
{
    return strcmp(((const named *)x)->name, ((const named *)y)->name);
}

/* Every name of a checkpoint (or of a program's result): its tensors, and
 * its tied names as the tensors they are stored as (a tie to nothing is
 * left out), sorted. */
static named *names_of(surg_ckpt *ck, const surg_program *p, size_t *n)
{
    size_t nt = p ? surg_program_output_count(p) : surg_ckpt_count(ck);
    size_t na = p ? surg_program_alias_count(p) : surg_ckpt_tie_count(ck);
    named *v = malloc((nt + na ? nt + na : 1) * sizeof *v);
    if (!v)
        return NULL;
    size_t m = 0;
    for (size_t i = 0; i < nt; i++) {
        const surg_tensor_info *t = p ? surg_program_output(p, i) : surg_ckpt_tensor(ck, i);
        v[m++] = (named){t->name, i, t};
    }
    for (size_t k = 0; k < na; k++) {
        const surg_meta_entry *e = p ? surg_program_alias(p, k) : surg_ckpt_tie(ck, k);
        size_t i = (size_t)-1;
        if (p) {
            for (size_t j = 0; j < nt && i == (size_t)-1; j++) /* few aliases */
                if (strcmp(surg_program_output(p, j)->name, e->value) == 0)
                    i = j;
        } else {
            i = surg_ckpt_find(ck, e->value);
        }
        if (i != (size_t)-1)
            v[m++] = (named){e->key, i, p ? surg_program_output(p, i) : surg_ckpt_tensor(ck, i)};
    }
    qsort(v, m, sizeof *v, by_name);
    *n = m;
    return v;
}

static bool same_shape(const surg_tensor_info *x, const surg_tensor_info *y)
{
    if (x->rank != y->rank)
        return false;
    for (uint32_t d = 0; d < x->rank; d++)
        if (x->shape[d] != y->shape[d])
            return false;
    return true;
}

/* Both sides' names merged into entries, each with its state as far as the
 * abstract states tell. */
static bool join(diff *d, const named *a, size_t na, const named *b, size_t nb)
{
    d->e = malloc((na + nb ? na + nb : 1) * sizeof *d->e);
    if (!d->e)
        return false;
    size_t i = 0, j = 0;
    while (i < na || j < nb) {
        int c = i == na ? 1 : j == nb ? -1 : strcmp(a[i].name, b[j].name);
        entry *e = &d->e[d->n++];
        *e = (entry){.a = SIZE_MAX, .b = SIZE_MAX, .next = SIZE_MAX};
        dv_init(&e->st);
        if (c <= 0) {
            e->name = a[i].name;
            e->a = a[i].index;
            e->ia = a[i++].info;
        }
        if (c >= 0) {
            e->name = b[j].name;
            e->b = b[j].index;
            e->ib = b[j++].info;
        }
        e->state = c < 0                           ? E_ONLY_A
                   : c > 0                         ? E_ONLY_B
                   : e->ia->dtype != e->ib->dtype  ? E_DTYPE
                   : !same_shape(e->ia, e->ib)     ? E_SHAPE
                                                   : E_EQUAL;
    }
    return true;
}

/* ---- values: two checkpoints ----------------------------------------- */

typedef struct bufs {
    unsigned char *a, *b;
    double *va, *vb;
} bufs;

static bool bufs_make(bufs *x, size_t bytes, size_t elems)
{
    x->a = malloc(bytes);
    x->b = malloc(bytes);
    x->va = malloc(elems * sizeof *x->va);
    x->vb = malloc(elems * sizeof *x->vb);
    return x->a && x->b && x->va && x->vb;
}

static void bufs_free(bufs *x)
{
    free(x->a);
    free(x->b);
    free(x->va);
    free(x->vb);
}

/* The unit a tensor is compared in: an element, or a byte below a byte. */
static size_t unit_of(surg_dtype dt)
{
    unsigned bits = surg_dtype_bits(dt);
    return bits % 8 ? 1 : bits / 8;
}

static surg_status compare_files(diff *d, entry *e, bufs *x)
{
    size_t unit = unit_of(e->ia->dtype);
    uint64_t total = e->ia->nbytes;
    for (uint64_t off = 0; off < total;) {
        size_t len = total - off < (uint64_t)CHUNK * unit ? (size_t)(total - off) : CHUNK * unit;
        surg_status st = surg_ckpt_read(d->a, e->a, off, x->a, len, d->sink);
        if (!st)
            st = surg_ckpt_read(d->b, e->b, off, x->b, len, d->sink);
        if (st)
            return st;
        dv_compare(e->ia->dtype, x->a, x->b, off / unit, len / unit, &d->o, x->va, x->vb, &e->st);
        off += len;
    }
    return SURG_OK;
}

static surg_status compare_all_files(diff *d)
{
    bufs x;
    if (!bufs_make(&x, CHUNK * 8, CHUNK)) {
        bufs_free(&x);
        return SURG_ENOMEM;
    }
    surg_status st = SURG_OK;
    for (size_t i = 0; i < d->n && !st; i++)
        if (d->e[i].state == E_EQUAL)
            st = compare_files(d, &d->e[i], &x);
    bufs_free(&x);
    return st;
}

/* ---- values: a recipe's result, streamed ------------------------------ */

/* One chunk of output t against B, for every name made of t. */
static surg_status on_chunk(void *user, size_t t, uint64_t offset, const void *bytes, size_t len)
{
    diff *d = user;
    surg_status st = SURG_OK;
    for (size_t k = d->head[t]; k != SIZE_MAX && !st; k = d->e[k].next) {
        entry *e = &d->e[k];
        size_t unit = unit_of(e->ia->dtype), n = len / unit;
        bufs x;
        dv_stats s;
        dv_init(&s);
        if (!bufs_make(&x, len ? len : 1, n ? n : 1)) {
            bufs_free(&x);
            return SURG_ENOMEM;
        }
        st = surg_ckpt_read(d->b, e->b, offset, x.b, len, d->sink);
        if (!st)
            dv_compare(e->ia->dtype, bytes, x.b, offset / unit, n, &d->o, x.va, x.vb, &s);
        bufs_free(&x);
        pthread_mutex_lock(&d->lock);
        dv_merge(&e->st, &s);
        pthread_mutex_unlock(&d->lock);
    }
    return st;
}

static surg_status compare_stream(diff *d)
{
    size_t n_out = surg_program_output_count(d->prog);
    d->head = malloc((n_out ? n_out : 1) * sizeof *d->head);
    if (!d->head)
        return SURG_ENOMEM;
    for (size_t t = 0; t < n_out; t++)
        d->head[t] = SIZE_MAX;
    for (size_t i = d->n; i-- > 0;)
        if (d->e[i].state == E_EQUAL) {
            d->e[i].next = d->head[d->e[i].a];
            d->head[d->e[i].a] = i;
        }
    surg_status st = surg_plan_build(d->prog, d->threads, &d->plan);
    if (st)
        return st;
    surg_run_opts opts = {.threads = d->threads};
    return surg_run_stream(d->plan, &opts, on_chunk, d, d->sink);
}

/* ---- printing ---------------------------------------------------------- */

static void settle(diff *d)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->e[i].state == E_EQUAL && d->e[i].st.differ)
            d->e[i].state = E_VALUES;
}

/* The multi-index of element k of a C-order tensor. */
static void put_index(FILE *out, const surg_tensor_info *t, uint64_t k)
{
    uint64_t idx[SURG_MAX_RANK];
    for (uint32_t r = t->rank; r-- > 0;) {
        idx[r] = t->shape[r] ? k % t->shape[r] : 0;
        k = t->shape[r] ? k / t->shape[r] : 0;
    }
    fputc('[', out);
    for (uint32_t r = 0; r < t->rank; r++)
        fprintf(out, "%s%llu", r ? ", " : "", (unsigned long long)idx[r]);
    fputc(']', out);
}

static void put_shape(FILE *out, const surg_tensor_info *t)
{
    fputc('[', out);
    for (uint32_t r = 0; r < t->rank; r++)
        fprintf(out, "%s%llu", r ? ", " : "", (unsigned long long)t->shape[r]);
    fputc(']', out);
}

static void print_human(const diff *d, FILE *out)
{
    size_t count[E_VALUES + 1] = {0};
    for (size_t i = 0; i < d->n; i++) {
        const entry *e = &d->e[i];
        count[e->state]++;
        if (e->state == E_EQUAL)
            continue;
        static const char *const what[] = {"", "only in A", "only in B", "dtype differs",
                                           "shape differs", "values differ"};
        fprintf(out, "%s: ", what[e->state]);
        put_safe(out, e->name, false);
        if (e->state == E_DTYPE)
            fprintf(out, ": %s vs %s", surg_dtype_recipe_name(e->ia->dtype),
                    surg_dtype_recipe_name(e->ib->dtype));
        if (e->state == E_SHAPE) {
            fputs(": ", out);
            put_shape(out, e->ia);
            fputs(" vs ", out);
            put_shape(out, e->ib);
        }
        if (e->state == E_VALUES) {
            bool bytes = surg_dtype_bits(e->ia->dtype) % 8;
            fprintf(out, ": %llu of %llu %s (", (unsigned long long)e->st.differ,
                    (unsigned long long)(bytes ? e->ia->nbytes : e->ia->nelems),
                    bytes ? "bytes" : "elements");
            if (dv_has_sizes(e->ia->dtype))
                fprintf(out, "max abs %.6g, max rel %.6g, max ulp %llu, ", e->st.max_abs,
                        e->st.max_rel, (unsigned long long)e->st.max_ulp);
            fputs("first at ", out);
            put_index(out, e->ia, e->st.first);
            fputc(')', out);
        }
        fputc('\n', out);
    }
    size_t both = d->n - count[E_ONLY_A] - count[E_ONLY_B];
    fprintf(out, "%zu compared: %zu equal, %zu differ; %zu only in A, %zu only in B\n", both,
            count[E_EQUAL], both - count[E_EQUAL], count[E_ONLY_A], count[E_ONLY_B]);
}

static void put_json_num(FILE *out, double v)
{
    if (isinf(v))
        fputs("\"inf\"", out);
    else
        fprintf(out, "%.17g", v);
}

static void put_json_entry(FILE *out, const entry *e)
{
    static const char *const what[] = {"equal", "only_in_a", "only_in_b", "dtype", "shape",
                                       "values"};
    fputs("{\"name\": ", out);
    put_json_str(out, e->name);
    fprintf(out, ", \"status\": \"%s\"", what[e->state]);
    if (e->ia && e->ib) {
        fprintf(out, ", \"dtype\": [\"%s\", \"%s\"], \"shape\": [",
                surg_dtype_recipe_name(e->ia->dtype), surg_dtype_recipe_name(e->ib->dtype));
        put_shape(out, e->ia);
        fputs(", ", out);
        put_shape(out, e->ib);
        fputc(']', out);
    }
    if (e->state == E_VALUES) {
        bool bytes = surg_dtype_bits(e->ia->dtype) % 8;
        fprintf(out, ", \"elements\": %llu, \"differing\": %llu",
                (unsigned long long)(bytes ? e->ia->nbytes : e->ia->nelems),
                (unsigned long long)e->st.differ);
        if (dv_has_sizes(e->ia->dtype)) {
            fputs(", \"max_abs\": ", out);
            put_json_num(out, e->st.max_abs);
            fputs(", \"max_rel\": ", out);
            put_json_num(out, e->st.max_rel);
            fprintf(out, ", \"max_ulp\": %llu", (unsigned long long)e->st.max_ulp);
        } else {
            fputs(", \"max_abs\": null, \"max_rel\": null, \"max_ulp\": null", out);
        }
        fputs(", \"first_index\": ", out);
        put_index(out, e->ia, e->st.first);
    }
    fputc('}', out);
}

static void print_json(const diff *d, FILE *out)
{
    size_t count[E_VALUES + 1] = {0};
    for (size_t i = 0; i < d->n; i++)
        count[d->e[i].state]++;
    size_t both = d->n - count[E_ONLY_A] - count[E_ONLY_B];
    fputs("{\"a\": ", out);
    put_json_str(out, d->pa);
    fputs(", \"b\": ", out);
    put_json_str(out, d->pb);
    fputs(", \"recipe\": ", out);
    if (d->recipe)
        put_json_str(out, d->recipe);
    else
        fputs("null", out);
    fprintf(out, ", \"mode\": \"%s\", \"rtol\": ", d->schema ? "schema"
                                                  : d->o.tol ? "tolerance"
                                                             : "bit-exact");
    put_json_num(out, d->o.rtol);
    fputs(", \"atol\": ", out);
    put_json_num(out, d->o.atol);
    fprintf(out, ", \"equal\": %s, \"differences\": [", count[E_EQUAL] == d->n ? "true" : "false");
    bool first = true;
    for (size_t i = 0; i < d->n; i++)
        if (d->e[i].state != E_EQUAL) {
            fputs(first ? "" : ", ", out);
            first = false;
            put_json_entry(out, &d->e[i]);
        }
    fprintf(out, "], \"summary\": {\"compared\": %zu, \"equal\": %zu, \"different\": %zu, "
                 "\"only_in_a\": %zu, \"only_in_b\": %zu}}\n",
            both, count[E_EQUAL], both - count[E_EQUAL], count[E_ONLY_A], count[E_ONLY_B]);
}

/* ---- the command ------------------------------------------------------- */

static surg_status open_side(diff *d, const char *path, surg_ckpt **out)
{
    return d->format ? surg_ckpt_open_as(path, d->format, d->sink, out)
                     : surg_ckpt_open(path, d->sink, out);
}

static surg_status run_diff(diff *d)
{
    surg_status st = open_side(d, d->pa, &d->a);
    surg_status sb = open_side(d, d->pb, &d->b);
    st = st ? st : sb;
    if (!st && d->recipe) {
        st = surg_recipe_load(d->recipe, d->sink, &d->r);
        if (!st)
            st = surg_compile(d->r, d->a, d->sink, &d->prog);
    }
    if (st)
        return st;
    d->schema |= surg_ckpt_kind_of(d->a) == SURG_CKPT_SCHEMA ||
                 surg_ckpt_kind_of(d->b) == SURG_CKPT_SCHEMA;
    size_t na, nb;
    named *a = names_of(d->a, d->prog, &na), *b = names_of(d->b, NULL, &nb);
    bool ok = a && b && join(d, a, na, b, nb);
    free(a);
    free(b);
    if (!ok)
        return SURG_ENOMEM;
    if (!d->schema)
        st = d->prog ? compare_stream(d) : compare_all_files(d);
    return st;
}

int cmd_diff(int argc, char **argv, diag_printer *dp)
{
    diff d = {.o = {0}};
    int rc = parse_args(argc, argv, &d);
    if (rc >= 0)
        return rc;
    surg_sink sink = diag_sink(dp);
    d.sink = &sink;
    pthread_mutex_init(&d.lock, NULL);
    surg_status st = run_diff(&d);
    if (st == SURG_ENOMEM)
        fputs("surg diff: out of memory\n", stderr);
    if (!st) {
        settle(&d);
        if (d.json)
            print_json(&d, stdout);
        else
            print_human(&d, stdout);
        rc = 0;
        for (size_t i = 0; i < d.n && !rc; i++)
            rc = d.e[i].state != E_EQUAL;
    } else {
        rc = 2;
    }
    if (fflush(stdout) != 0 && !rc)
        rc = 2;
    pthread_mutex_destroy(&d.lock);
    free(d.e);
    free(d.head);
    surg_plan_free(d.plan);
    surg_program_free(d.prog);
    surg_recipe_free(d.r);
    surg_ckpt_close(d.a);
    surg_ckpt_close(d.b);
    return rc;
}
