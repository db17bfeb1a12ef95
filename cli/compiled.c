/* compiled.c: what check, plan and run share: their arguments, and opening
 * a recipe, its input and its target and compiling. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static bool is(const char *arg, const char *name) { return strcmp(arg, name) == 0; }

int parse_recipe_args(const char *cmd, const char *help, int argc, char **argv,
                      recipe_args *a)
{
    recipe_args allowed = *a;
    *a = (recipe_args){.allow_graph = allowed.allow_graph, .allow_json = allowed.allow_json,
                       .allow_shards = allowed.allow_shards,
                       .positional_io = allowed.positional_io};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (is(arg, "-h") || is(arg, "--help")) {
            fputs(help, stdout);
            return 0;
        }
        if (is(arg, "--params") || is(arg, "--state")) {
            if (i + 1 >= argc)
                return usage_error(cmd, "%s needs a value", arg);
            const char *prefix = is(arg, "--params") ? "params/" : "opt_state/";
            for (size_t k = 0; k < a->n_parts; k++)
                if (strcmp(a->parts[k].prefix, prefix) == 0)
                    return usage_error(cmd, "%s is given twice", arg);
            a->parts[a->n_parts++] = (surg_ckpt_part){prefix, argv[++i]};
        } else if (is(arg, "--from") || is(arg, "--to") || is(arg, "--threads") ||
                   is(arg, "--format") ||
                   ((is(arg, "--max-shard-size") || is(arg, "--out-format")) &&
                    a->allow_shards)) {
            if (i + 1 >= argc)
                return usage_error(cmd, "%s needs a value", arg);
            const char *v = argv[++i];
            if (is(arg, "--max-shard-size")) {
                if (surg_parse_size(v, &a->max_shard_size) != SURG_OK)
                    return usage_error(cmd, "--max-shard-size takes a size such as 5GB, "
                                            "500MiB or 1000000, not '%s'", v);
            } else if (is(arg, "--threads")) {
                char *end;
                long n = strtol(v, &end, 10);
                if (*end || n < 1 || n > 1024)
                    return usage_error(cmd, "--threads takes a number from 1 to 1024, not '%s'", v);
                a->threads = (unsigned)n;
            } else if (is(arg, "--format")) {
                a->format = v;
            } else if (is(arg, "--out-format")) {
                a->out_format = v;
            } else {
                *(is(arg, "--from") ? &a->from : &a->to) = v;
            }
        } else if (is(arg, "--graph") && a->allow_graph) {
            a->graph = true;
        } else if (is(arg, "--json") && a->allow_json) {
            a->json = true;
        } else if (arg[0] == '-' && arg[1]) {
            return usage_error(cmd, "unknown option '%s'", arg);
        } else if (!a->recipe) {
            a->recipe = arg;
        } else if (a->positional_io && a->n_outs < 2) {
            a->outs[a->n_outs++].path = arg; /* IN OUT, or OUT_P OUT_S after --params */
        } else {
            return usage_error(cmd, a->positional_io ? "too many arguments: RECIPE IN OUT"
                                                     : "one recipe at a time");
        }
    }
    if (!a->recipe)
        return usage_error(cmd, "which recipe?");
    if (a->n_parts && a->from)
        return usage_error(cmd, "--params/--state replace %s: give one or the other",
                           a->positional_io ? "IN" : "--from");
    if (a->positional_io && a->n_parts) {
        /* The outputs follow the parts in the order given on the line. */
        if (a->n_outs != a->n_parts)
            return usage_error(cmd, "give one output per input: %s",
                               a->n_parts == 2 ? "OUT_PARAMS OUT_STATE" : "OUT");
        for (size_t k = 0; k < a->n_parts; k++)
            a->outs[k].prefix = a->parts[k].prefix;
    } else if (a->positional_io) {
        if (a->n_outs != 2)
            return usage_error(cmd, "RECIPE IN OUT: which checkpoint in, and where out?");
        a->from = a->outs[0].path;
        a->out = a->outs[1].path;
        a->n_outs = 0;
    }
    if (!a->from && !a->n_parts)
        return usage_error(cmd, "--from CKPT|SCHEMA is needed: what does the recipe apply to?");
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
    if (!a->threads) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        a->threads = cores > 0 ? (unsigned)cores : 1;
    }
    return -1;
}

surg_status compile_recipe(const recipe_args *a, surg_sink *sink, compiled *c)
{
    *c = (compiled){0};
    /* Open everything first, so a missing file is reported before any
     * recipe error. */
    surg_status st = surg_recipe_load(a->recipe, sink, &c->recipe);
    surg_status st_from = a->n_parts ? surg_ckpt_open_parts(a->parts, a->n_parts, sink, &c->from)
                                     : surg_ckpt_open_as(a->from, a->format, sink, &c->from);
    surg_status st_to = a->to ? surg_ckpt_open_as(a->to, a->format, sink, &c->to) : SURG_OK;
    if (st_from > st)
        st = st_from;
    if (st_to > st)
        st = st_to;
    /* What is known of the output, so every name is checked against it. */
    surg_ckpt_part split[2];
    surg_compile_opts o = {.out_path = a->out, .outputs = split, .n_outputs = a->n_parts,
                           .out_format = a->out_format};
    for (size_t k = 0; k < a->n_parts; k++)
        split[k] = (surg_ckpt_part){a->parts[k].prefix, a->n_outs ? a->outs[k].path : NULL};
    if (!st)
        st = surg_compile_for(c->recipe, c->from, &o, sink, &c->prog);
    if (!st && c->to)
        st = surg_program_check_target(c->prog, c->to, sink);
    /* Split inputs make split outputs: every tensor must have a place. */
    if (!st && a->n_parts)
        st = surg_program_check_parts(c->prog, a->n_outs ? a->outs : a->parts, a->n_parts, sink);
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
