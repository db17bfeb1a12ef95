/* cmd_check.c: `surg check RECIPE --from CKPT|SCHEMA [--to TARGET]`: compile
 * against the abstract state, reading headers only. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char help[] =
    "usage: surg check RECIPE --from CKPT|SCHEMA [--to TARGET] [--graph]\n"
    "\n"
    "Compile a recipe against a checkpoint's abstract state (names, dtypes,\n"
    "shapes: headers only, never tensor data) and report every error.\n"
    "\n"
    "  --from CKPT   the checkpoint or schema the recipe applies to\n"
    "  --to TARGET   also check the result against this checkpoint or schema\n"
    "                (the new model's abstract state): every missing,\n"
    "                unexpected or mismatched tensor is an error\n"
    "  --graph       print the compiled op graph\n"
    "\n"
    "Exit status: 0 the recipe is sound, 1 it is not (or a checkpoint is\n"
    "malformed), 2 usage or I/O error.\n";

typedef struct check_args {
    const char *recipe, *from, *to;
    bool graph;
} check_args;

static int parse_args(int argc, char **argv, check_args *a)
{
    *a = (check_args){0};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            fputs(help, stdout);
            return 0;
        }
        if (strcmp(arg, "--from") == 0 || strcmp(arg, "--to") == 0) {
            if (i + 1 >= argc)
                return usage_error("check", "%s needs a checkpoint or schema", arg);
            *(arg[2] == 'f' ? &a->from : &a->to) = argv[++i];
        } else if (strcmp(arg, "--graph") == 0) {
            a->graph = true;
        } else if (arg[0] == '-' && arg[1]) {
            return usage_error("check", "unknown option '%s'", arg);
        } else if (a->recipe) {
            return usage_error("check", "one recipe at a time");
        } else {
            a->recipe = arg;
        }
    }
    if (!a->recipe)
        return usage_error("check", "which recipe?");
    if (!a->from)
        return usage_error("check", "--from CKPT|SCHEMA is needed: what does the recipe apply to?");
    return -1;
}

int cmd_check(int argc, char **argv, diag_printer *dp)
{
    check_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0)
        return rc;
    surg_sink sink = diag_sink(dp);
    surg_recipe *recipe = NULL;
    surg_ckpt *from = NULL, *to = NULL;
    surg_program *prog = NULL;
    /* Open everything first, so a missing file is reported before any
     * recipe error. */
    surg_status st = surg_recipe_load(a.recipe, &sink, &recipe);
    surg_status st_from = surg_ckpt_open(a.from, &sink, &from);
    surg_status st_to = a.to ? surg_ckpt_open(a.to, &sink, &to) : SURG_OK;
    if (st_from > st)
        st = st_from;
    if (st_to > st)
        st = st_to;
    if (!st)
        st = surg_compile(recipe, from, &sink, &prog);
    if (!st && to)
        st = surg_program_check_target(prog, to, &sink);
    if (!st && a.graph) {
        char *g = surg_program_dump(prog);
        fputs(g ? g : "", stdout);
        free(g);
    }
    if (!st)
        printf("%s: ok: %zu tensor%s in, %zu out%s\n", a.recipe, surg_ckpt_count(from),
               surg_ckpt_count(from) == 1 ? "" : "s", surg_program_output_count(prog),
               to ? ", matching the target" : "");
    surg_program_free(prog);
    surg_ckpt_close(from);
    surg_ckpt_close(to);
    surg_recipe_free(recipe);
    return surg_exit_code(st);
}
