/* compiled.c: what check, plan and run share: their arguments, and opening
 * a recipe, its input and its target and compiling. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static bool is(const char *arg, const char *name) { return strcmp(arg, name) == 0; }

/* --in NAME=PATH (or --params/--state, the inputs "params" and
 * "opt_state"): the next input. -1 to go on, else the exit code. */
static int add_input(const char *cmd, recipe_args *a, const char *opt, const char *name,
                     const char *path)
{
    if (!*path)
        return usage_error(cmd, "%s %s=: which file is the input \"%s\"?", opt, name, name);
    if (!surg_input_name_ok(name))
        return usage_error(cmd, "%s %s=%s: \"%s\" cannot name an input: a name is one "
                                "segment of at most %d letters, digits, '_' and '-', not "
                                "starting with '-'",
                           opt, name, path, name, SURG_INPUT_NAME_MAX);
    char *copy = strdup(name);
    if (!copy) {
        fputs("surg: out of memory\n", stderr);
        return 2;
    }
    a->ins[a->n_ins++] = (surg_input){copy, path, NULL};
    return -1;
}

static int by_name(const void *x, const void *y)
{
    return strcmp(((const surg_input *)x)->name, ((const surg_input *)y)->name);
}

/* No input name twice: sorted, the twins are neighbours. -1 or 2. */
static int inputs_once(const char *cmd, const recipe_args *a)
{
    surg_input *sorted = malloc((a->n_ins ? a->n_ins : 1) * sizeof *sorted);
    if (!sorted) {
        fputs("surg: out of memory\n", stderr);
        return 2;
    }
    memcpy(sorted, a->ins, a->n_ins * sizeof *sorted);
    qsort(sorted, a->n_ins, sizeof *sorted, by_name);
    int rc = -1;
    for (size_t i = 1; i < a->n_ins && rc < 0; i++)
        if (strcmp(sorted[i - 1].name, sorted[i].name) == 0)
            rc = usage_error(cmd, a->split ? "--%s is given twice"
                                           : "the input name \"%s\" is given twice",
                             is(sorted[i].name, "params") || !a->split ? sorted[i].name
                                                                       : "state");
    free(sorted);
    return rc;
}

static const char *const split_prefix[] = {"params/", "opt_state/"};

int parse_recipe_args(const char *cmd, const char *help, int argc, char **argv,
                      recipe_args *a)
{
    recipe_args allowed = *a;
    *a = (recipe_args){.allow_graph = allowed.allow_graph, .allow_json = allowed.allow_json,
                       .allow_shards = allowed.allow_shards, .allow_quiet = allowed.allow_quiet,
                       .allow_part = allowed.allow_part,
                       .positional_io = allowed.positional_io};
    a->ins = calloc((size_t)(argc > 0 ? argc : 1), sizeof *a->ins); /* at most one per word */
    if (!a->ins) {
        fputs("surg: out of memory\n", stderr);
        return 2;
    }
    bool by_in = false, by_parts = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (is(arg, "-h") || is(arg, "--help")) {
            fputs(help, stdout);
            return 0;
        }
        if (is(arg, "--in")) {
            if (i + 1 >= argc)
                return usage_error(cmd, "--in needs a value: NAME=PATH");
            const char *v = argv[++i], *eq = strchr(v, '=');
            if (!eq)
                return usage_error(cmd, "--in takes NAME=PATH, not '%s'", v);
            char *name = strndup(v, (size_t)(eq - v));
            if (!name) {
                fputs("surg: out of memory\n", stderr);
                return 2;
            }
            int rc = add_input(cmd, a, "--in", name, eq + 1);
            free(name);
            if (rc >= 0)
                return rc;
            by_in = true;
        } else if (is(arg, "--params") || is(arg, "--state")) {
            if (i + 1 >= argc)
                return usage_error(cmd, "%s needs a value", arg);
            int rc = add_input(cmd, a, arg, is(arg, "--params") ? "params" : "opt_state",
                               argv[++i]);
            if (rc >= 0)
                return rc;
            by_parts = a->split = true;
        } else if (is(arg, "--from") || is(arg, "--to") || is(arg, "--threads") ||
                   is(arg, "--format") ||
                   (is(arg, "--max-shard-size") && (a->allow_shards || a->allow_part)) ||
                   ((is(arg, "--out-format") || is(arg, "--writers") || is(arg, "--reflink")) &&
                    a->allow_shards) ||
                   (is(arg, "--part") && a->allow_part)) {
            if (i + 1 >= argc)
                return usage_error(cmd, "%s needs a value", arg);
            const char *v = argv[++i];
            if (is(arg, "--max-shard-size")) {
                if (surg_parse_size(v, &a->max_shard_size) != SURG_OK)
                    return usage_error(cmd, "--max-shard-size takes a size such as 5GB, "
                                            "500MiB or 1000000, not '%s'", v);
            } else if (is(arg, "--threads") || is(arg, "--writers")) {
                char *end;
                long n = strtol(v, &end, 10);
                if (*end || n < 1 || n > 1024)
                    return usage_error(cmd, "%s takes a number from 1 to 1024, not '%s'", arg, v);
                *(is(arg, "--threads") ? &a->threads : &a->writers) = (unsigned)n;
            } else if (is(arg, "--reflink")) {
                static const char *const when[] = {"auto", "always", "never"};
                size_t w = 0;
                while (w < 3 && !is(v, when[w]))
                    w++;
                if (w == 3)
                    return usage_error(cmd, "--reflink takes auto, always or never, not '%s'", v);
                a->reflink = (surg_reflink)w;
            } else if (is(arg, "--format")) {
                a->format = v;
            } else if (is(arg, "--part")) {
                a->part = v;
            } else if (is(arg, "--out-format")) {
                a->out_format = v;
            } else {
                *(is(arg, "--from") ? &a->from : &a->to) = v;
            }
        } else if (is(arg, "--graph") && a->allow_graph) {
            a->graph = true;
        } else if (is(arg, "--json") && a->allow_json) {
            a->json = true;
        } else if ((is(arg, "-q") || is(arg, "--quiet")) && a->allow_quiet) {
            a->quiet = true;
        } else if (arg[0] == '-' && arg[1]) {
            return usage_error(cmd, "unknown option '%s'", arg);
        } else if (!a->recipe) {
            a->recipe = arg;
        } else if (a->positional_io && a->n_outs < 2) {
            a->outs[a->n_outs++].path = arg; /* IN OUT, OUT after --in, or OUT_P OUT_S */
        } else {
            return usage_error(cmd, a->positional_io ? "too many arguments: RECIPE IN OUT"
                                                     : "one recipe at a time");
        }
    }
    if (!a->recipe)
        return usage_error(cmd, "which recipe?");
    if (by_in && by_parts)
        return usage_error(cmd, "--in and --params/--state both name the inputs: use one "
                                "(--params P is the input \"params\" with an output of its "
                                "own, OUT_P)");
    int rc = inputs_once(cmd, a);
    if (rc >= 0)
        return rc;
    if (a->n_ins && a->from)
        return usage_error(cmd, "%s replace%s %s: give one or the other",
                           by_in ? "--in" : "--params/--state", by_in ? "s" : "",
                           a->positional_io ? "IN" : "--from");
    if (a->positional_io && a->split) {
        /* The outputs follow the parts in the order given on the line. */
        if (a->n_outs != a->n_ins)
            return usage_error(cmd, "give one output per input: %s",
                               a->n_ins == 2 ? "OUT_PARAMS OUT_STATE" : "OUT");
    } else if (a->positional_io && a->n_ins) {
        if (a->n_outs == 2)
            return usage_error(cmd, "--in names every input: give RECIPE --in NAME=PATH ... "
                                    "OUT, without a positional IN ('%s')",
                               a->outs[0].path);
        if (a->n_outs != 1)
            return usage_error(cmd, "RECIPE --in NAME=PATH ... OUT: where does the result go?");
        a->out = a->outs[0].path;
        a->n_outs = 0;
    } else if (a->positional_io) {
        if (a->n_outs != 2)
            return usage_error(cmd, "RECIPE IN OUT: which checkpoint in, and where out?");
        a->from = a->outs[0].path;
        a->out = a->outs[1].path;
        a->n_outs = 0;
    }
    if (a->split)
        for (size_t k = 0; k < a->n_ins; k++) {
            a->outs[k].prefix = split_prefix[is(a->ins[k].name, "opt_state")];
            a->outs[k].path = a->n_outs ? a->outs[k].path : NULL;
        }
    if (!a->from && !a->n_ins)
        return usage_error(cmd, "--from CKPT|SCHEMA is needed: what does the recipe apply to?");
    for (size_t k = 0; k < a->n_ins; k++)
        a->ins[k].format = a->format; /* for each input whose name says none */
    /* --format for an output whose name says nothing, where no other
     * reading of it is possible: without --out-format and --max-shard-size
     * (whose directory says nothing either), and for a format surg writes
     * (the library names those it does not). */
    if (a->allow_shards && !a->out_format && a->format && !a->max_shard_size) {
        bool silent = true;
        for (size_t k = 0; k < (a->n_outs ? a->n_outs : 1); k++) {
            const char *o = a->n_outs ? a->outs[k].path : a->out;
            silent &= o && !surg_format_by_name(o);
        }
        if (silent)
            a->out_format = a->format;
    }
    if (a->part && !a->max_shard_size)
        return usage_error(cmd, "--part %s: the parts are of a sharded output: give "
                                "--max-shard-size too (the same in every part)",
                           a->part);
    if (!a->threads) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        a->threads = cores > 0 ? (unsigned)cores : 1;
    }
    if (!a->writers)
        a->writers = a->threads;
    return -1;
}

void recipe_args_free(recipe_args *a)
{
    for (size_t k = 0; a->ins && k < a->n_ins; k++)
        free((char *)a->ins[k].name);
    free(a->ins);
    a->ins = NULL;
    a->n_ins = 0;
}

surg_status compile_recipe(const recipe_args *a, surg_sink *sink, compiled *c)
{
    *c = (compiled){0};
    /* Open everything first, so a missing file is reported before any
     * recipe error. */
    /* After syntax errors the statements that parsed are still compiled,
     * so that every error of the recipe is reported at once. */
    surg_status st = surg_recipe_load_partial(a->recipe, sink, &c->recipe);
    bool syntax = st == SURG_EINVALID && c->recipe;
    surg_status st_from = a->n_ins ? surg_ckpt_open_inputs(a->ins, a->n_ins, sink, &c->from)
                                   : surg_ckpt_open_as(a->from, a->format, sink, &c->from);
    surg_status st_to = a->to ? surg_ckpt_open_as(a->to, a->format, sink, &c->to) : SURG_OK;
    if (st_from > st)
        st = st_from;
    if (st_to > st)
        st = st_to;
    /* What is known of the output, so every name is checked against it:
     * one output, or one per input of a split run. */
    size_t n_split = a->split ? a->n_ins : 0;
    surg_compile_opts o = {.out_path = a->out, .outputs = a->outs, .n_outputs = n_split,
                           .out_format = a->out_format, .target = syntax ? NULL : c->to};
    if (!st || (syntax && !st_from && !st_to)) {
        surg_status st_compile = surg_compile_for(c->recipe, c->from, &o, sink, &c->prog);
        st = syntax ? SURG_EINVALID : st_compile;
        if (st_compile > st)
            st = st_compile;
    }
    /* Split inputs make split outputs: every tensor must have a place
     * (named by its output, or, before one is given, by its input). */
    surg_ckpt_part placed[2];
    for (size_t k = 0; k < n_split; k++)
        placed[k] = (surg_ckpt_part){a->outs[k].prefix,
                                     a->outs[k].path ? a->outs[k].path : a->ins[k].path};
    if (!st && n_split)
        st = surg_program_check_parts(c->prog, placed, n_split, sink);
    return st;
}

surg_status plan_recipe(const recipe_args *a, surg_sink *sink, compiled *c)
{
    surg_status st = compile_recipe(a, sink, c);
    return st ? st : surg_plan_build(c->prog, a->threads, &c->plan);
}

void compiled_free(compiled *c)
{
    surg_plan_free(c->plan);
    surg_program_free(c->prog);
    surg_ckpt_close(c->from);
    surg_ckpt_close(c->to);
    surg_recipe_free(c->recipe);
    *c = (compiled){0};
}
