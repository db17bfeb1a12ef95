/* cmd_run.c: `surg run RECIPE IN OUT` (or `--in NAME=PATH ... OUT`): compile (every error before anything
 * is read), plan, and execute; with a progress bar on a terminal. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static const char help[] =
    "usage: surg run RECIPE IN OUT [--to TARGET] [--threads N] [--max-shard-size SIZE]\n"
    "                [--format NAME] [--out-format NAME] [--writers N]\n"
    "                [--reflink auto|always|never]\n"
    "       surg run RECIPE --in NAME=PATH [--in NAME=PATH ...] OUT [options]\n"
    "       surg run RECIPE --params P --state S OUT_P OUT_S [options]\n"
    "\n"
    "Apply a recipe to the checkpoint IN and write the result to OUT. The recipe\n"
    "is compiled and checked first (nothing is read if it has an error), then\n"
    "executed exactly as `surg plan` shows. OUT appears only when complete: it\n"
    "is written under a temporary name, synced, and renamed into place.\n"
    "IN is a .safetensors file, a sharded checkpoint, a NumPy .npz or .npy,\n"
    "a PyTorch .pt, .pth or .bin (its pickle read as data, never run), or a\n"
    "Flax .msgpack; OUT is a .safetensors file, a NumPy .npz or a Flax\n"
    ".msgpack (arrays only: tied names become arrays of their own, other\n"
    "metadata is dropped). OUT is checked\n"
    "before anything is read: it may not be a file the run reads, nor a link,\n"
    "device, FIFO or socket, and an unknown extension is an error.\n"
    "\n"
    "Several inputs: --in NAME=PATH mounts each under \"NAME/\" (input \"base\"'s\n"
    "tensor \"w\" is \"base/w\"), so every statement sees them in one state:\n"
    "  map \"a/**\" = (x + tensor(\"b/$1\")) / 2; keep \"a/**\"; rename \"a/**\" -> \"$1\"\n"
    "OUT holds every tensor the recipe leaves, under the names it leaves, with\n"
    "the first input's metadata. NAME is letters, digits, '_' and '-'; the\n"
    "inputs may be of different formats. OUT may replace no input's file.\n"
    "\n"
    "Parameters and optimizer state in separate files: --params P and --state S\n"
    "show the recipe P's tensors under \"params/\" and S's under \"opt_state/\"\n"
    "(as Flax flattens a train state, so the same recipe serves a combined\n"
    "checkpoint); OUT_P gets the tensors under \"params/\" and OUT_S those under\n"
    "\"opt_state/\", without the prefix. Both are synced before either appears.\n"
    "(They are the inputs \"params\" and \"opt_state\": --in params=P\n"
    "--in opt_state=S OUT writes both into one OUT.)\n"
    "\n"
    "On success a line to standard error says what was written:\n"
    "  surg run: wrote 13 tensors (9.4 MiB) to out.safetensors in 0.3 s\n"
    "\n"
    "  --in NAME=PATH        an input, mounted under \"NAME/\" (instead of IN)\n"
    "  -q, --quiet           no summary line on success\n"
    "  --to TARGET           refuse to run unless the result matches TARGET\n"
    "  --threads N           threads (default: the number of cores)\n"
    "  --format NAME         the format of each input whose name does not say:\n"
    "                        safetensors, npz, npy, torch, msgpack or schema;\n"
    "                        also of OUT when its name says none either (and\n"
    "                        neither --out-format nor --max-shard-size is given)\n"
    "  --out-format NAME     the format OUT is written in, whatever its name:\n"
    "                        safetensors, npz, msgpack or orbax (an Orbax\n"
    "                        checkpoint directory, built beside OUT and renamed\n"
    "                        into place whole; an existing OUT is replaced only\n"
    "                        when it is an earlier Orbax output of surg). A name\n"
    "                        that says another format is refused\n"
    "  --max-shard-size SIZE write shards of at most SIZE bytes of data (5GB,\n"
    "                        500MiB, ...) into the directory OUT, with\n"
    "                        model.safetensors.index.json (or beside OUT named\n"
    "                        PREFIX.safetensors.index.json); files of an earlier\n"
    "                        sharded output of surg there that are not written\n"
    "                        again are removed once the new output is in place\n"
    "  --writers N           output files written and synced at once (default:\n"
    "                        --threads); 1 suits a spinning disk. The bytes are\n"
    "                        the same for any N\n"
    "  --reflink WHEN        lay a safetensors OUT out so that its copied tensors\n"
    "                        share blocks with IN's (copies without copying, on\n"
    "                        XFS or btrfs): auto (where OUT's directory can share\n"
    "                        blocks with IN; the default), always, or never (the\n"
    "                        reference's layout, byte for byte)\n"
    "  --part I/N            write only the shards part I of N owns (0 <= I < N),\n"
    "                        never the index: `surg index OUT` writes it once\n"
    "                        every part is done (needs --max-shard-size)\n"
    "  --part auto           the part from the launcher: Open MPI, PMI, a Slurm\n"
    "                        job array or torchrun (docs/scale.md); under mpirun\n"
    "                        with an MPI build, rank 0 writes the index itself\n"
    "\n" HELP_RECIPE;

typedef struct bar {
    struct timespec start;
    bool shown;
} bar;

static double now_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* [########......]  45%  1.2 GiB of 2.5 GiB  310.0 MiB/s  4 s left */
static void progress(void *user, uint64_t done, uint64_t total)
{
    bar *b = user;
    double secs = now_since(&b->start);
    if (secs < 0.5 && done < total)
        return; /* short work needs no bar */
    int width = 30, filled = total ? (int)((double)done / (double)total * width) : width;
    char d[32], t[32], rate[32];
    surg_format_size(done, d, sizeof d);
    surg_format_size(total, t, sizeof t);
    surg_format_size(secs > 0 ? (uint64_t)((double)done / secs) : 0, rate, sizeof rate);
    double left = done && secs > 0 ? (double)(total - done) / ((double)done / secs) : 0;
    fprintf(stderr, "\r[%.*s%.*s] %3d%%  %s of %s  %s/s  %.0f s left  ", filled,
            "##############################", width - filled, "..............................",
            total ? (int)(100.0 * (double)done / (double)total) : 100, d, t, rate, left);
    b->shown = true;
}

/* surg run: part 1 of 3 wrote 2 shards (5 tensors, 9.4 MiB) to out in 0.3 s */
static void part_summary(const compiled *c, const recipe_args *a, const surg_part *p,
                         double secs)
{
    surg_part_cost *costs = calloc(p->count, sizeof *costs);
    surg_sink quiet = {0};
    if (!costs || surg_plan_parts(c->plan, a->max_shard_size, p->count, costs, &quiet)) {
        free(costs);
        return;
    }
    const surg_part_cost *k = &costs[p->index];
    char size[32];
    surg_format_size(k->written, size, sizeof size);
    fprintf(stderr, "surg run: part %u of %u ", p->index, p->count);
    if (k->shards)
        fprintf(stderr, "wrote %zu shard%s (%zu tensor%s, %s) to ", k->shards,
                k->shards == 1 ? "" : "s", k->tensors, k->tensors == 1 ? "" : "s", size);
    else
        fputs("has no shard to write in ", stderr);
    put_safe(stderr, a->out, false);
    fprintf(stderr, " in %.1f s\n", secs);
    free(costs);
}

/* surg run: wrote 13 tensors (9.4 MiB) to out.safetensors in 0.3 s */
static void summary(const compiled *c, const recipe_args *a, double secs)
{
    size_t n = surg_program_output_count(c->prog);
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += surg_program_output(c->prog, i)->nbytes;
    char size[32];
    surg_format_size(bytes, size, sizeof size);
    fprintf(stderr, "surg run: wrote %zu tensor%s (%s) to ", n, n == 1 ? "" : "s", size);
    if (a->n_outs) {
        for (size_t k = 0; k < a->n_outs; k++) {
            fputs(k ? " and " : "", stderr);
            put_safe(stderr, a->outs[k].path, false);
        }
    } else {
        put_safe(stderr, a->out, false);
    }
    fprintf(stderr, " in %.1f s\n", secs);
}

/* The ranks of an MPI run agree on their plan before any writes: a rank
 * that failed to plan, or holds another plan than rank 0, stops them all. */
static surg_status agree(mpi_run *m, const compiled *c, const recipe_args *a, surg_status st)
{
    char mine[SURG_DIGEST_CHARS + 1] = "", first[SURG_DIGEST_CHARS + 1];
    if (!st && surg_plan_digest(c->plan, a->max_shard_size, mine) != SURG_OK)
        st = SURG_ENOMEM;
    mpi_first_digest(m, mine, first);
    bool same = !st && strcmp(mine, first) == 0;
    if (!st && !same && first[0]) /* (rank 0 failed: it says why) */
        fprintf(stderr, "surg run: rank %d holds another plan (%s) than rank 0 (%s): every "
                        "rank must run the same recipe on the same inputs with the same "
                        "options; nothing is written\n",
                m->rank, mine, first);
    if (!mpi_all_ok(m, same)) {
        if (same && m->rank == 0)
            fputs("surg run: another rank could not plan the run, or holds another plan: "
                  "nothing is written\n", stderr);
        return st ? st : SURG_EINVALID;
    }
    return SURG_OK;
}

/* After the parts: rank 0 writes the index when every rank succeeded, and
 * every rank ends with its status (a failure anywhere: no index). */
static surg_status finish_mpi(mpi_run *m, const recipe_args *a, surg_status st,
                              surg_sink *sink)
{
    bool all = mpi_all_ok(m, st == SURG_OK);
    if (!all && !st && m->rank == 0)
        fputs("surg run: another rank failed: the index is not written, so the output is "
              "not complete; run again (the shards written stay, and are written again)\n",
              stderr);
    int ist = SURG_OK;
    surg_index_info info;
    if (all && m->rank == 0) {
        ist = surg_index_write(a->out, NULL, &info, sink);
        if (!ist && !a->quiet)
            index_summary(a->out, &info);
    }
    ist = all ? mpi_from_first(m, ist) : SURG_OK;
    if (st)
        return st;
    return !all ? SURG_EINVALID : (surg_status)ist;
}

int cmd_run(int argc, char **argv, diag_printer *dp)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    recipe_args a = {.positional_io = true, .allow_shards = true, .allow_quiet = true,
                     .allow_part = true};
    int rc = parse_recipe_args("run", help, argc, argv, &a);
    if (rc >= 0) {
        recipe_args_free(&a);
        return rc;
    }
    for (size_t k = 0; k < (a.n_outs ? a.n_outs : 1); k++)
        if (strcmp(a.n_outs ? a.outs[k].path : a.out, "-") == 0) {
            recipe_args_free(&a);
            return usage_error("run", "an output is a file, not standard output: name one "
                                      "(./- for a file named \"-\")");
        }
    surg_sink sink = diag_sink(dp);
    surg_part part = {0};
    mpi_run mpi = {0};
    if (a.part && (surg_part_parse(a.part, NULL, &part, &sink) || !mpi_begin(&mpi, &part))) {
        recipe_args_free(&a);
        return 2;
    }
    compiled c;
    surg_status st = plan_recipe(&a, &sink, &c);
    if (mpi.on)
        st = agree(&mpi, &c, &a, st);
    bar b = {0};
    clock_gettime(CLOCK_MONOTONIC, &b.start);
    /* The recipe and the target were read too: no output may replace them. */
    const char *read[] = {a.recipe};
    const surg_ckpt *opened[] = {c.to};
    surg_run_opts opts = {.threads = a.threads, .max_shard_size = a.max_shard_size,
                          .outputs = a.outs, .n_outputs = a.n_outs,
                          .also_read = read, .n_also_read = strcmp(a.recipe, "-") ? 1 : 0,
                          .also_opened = opened, .n_also_opened = c.to ? 1 : 0,
                          .out_format = a.out_format, .reflink = a.reflink,
                          .writers = a.writers, .part = part};
    if (isatty(STDERR_FILENO) && !getenv("CI")) {
        opts.progress = progress;
        opts.progress_user = &b;
    }
    bool planned = !st;
    if (!st)
        st = surg_run(c.plan, a.out, &opts, &sink);
    if (b.shown)
        fputs("\n", stderr);
    if (st == SURG_ENOMEM)
        fputs("surg run: out of memory\n", stderr);
    if (!st && !a.quiet && part.count)
        part_summary(&c, &a, &part, now_since(&t0));
    else if (!st && !a.quiet)
        summary(&c, &a, now_since(&t0));
    if (mpi.on && planned)
        st = finish_mpi(&mpi, &a, st, &sink);
    mpi_end(&mpi);
    compiled_free(&c);
    recipe_args_free(&a);
    return surg_exit_code(st);
}
