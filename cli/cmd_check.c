/* cmd_check.c: `surg check RECIPE --from CKPT|SCHEMA [--to TARGET]`: compile
 * against the abstract state, reading headers only. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char help[] =
    "usage: surg check RECIPE --from CKPT|SCHEMA [--to TARGET] [--graph]\n"
    "       surg check RECIPE --in NAME=CKPT|SCHEMA [--in NAME=...] [...]\n"
    "       surg check RECIPE --params P --state S [...]\n"
    "\n"
    "Compile a recipe against a checkpoint's abstract state (names, dtypes,\n"
    "shapes: headers only, never tensor data) and report every error.\n"
    "\n"
    "  RECIPE        the recipe file; '-' reads it from standard input\n"
    "  --from CKPT   the checkpoint or schema the recipe applies to\n"
    "  --in NAME=PATH\n"
    "                one of several inputs (checkpoints or schemas), the recipe\n"
    "                seeing its tensors under \"NAME/\" (see surg run --help)\n"
    "  --params P, --state S\n"
    "                parameters and optimizer state in separate files: the\n"
    "                recipe sees them under \"params/\" and \"opt_state/\"\n"
    "  --to TARGET   also check the result against this checkpoint or schema\n"
    "                (the new model's abstract state): every missing,\n"
    "                unexpected or mismatched tensor is an error\n"
    "  --graph       print the compiled op graph\n"
    "  --format NAME the format of each CKPT or TARGET whose name does not say\n"
    "                (safetensors, npz, npy, torch, msgpack or schema)\n"
    "\n"
    "Exit status: 0 the recipe is sound, 1 it is not (or a checkpoint is\n"
    "malformed), 2 usage or I/O error.\n";

int cmd_check(int argc, char **argv, diag_printer *dp)
{
    recipe_args a = {.allow_graph = true};
    int rc = parse_recipe_args("check", help, argc, argv, &a);
    if (rc >= 0) {
        recipe_args_free(&a);
        return rc;
    }
    surg_sink sink = diag_sink(dp);
    compiled c;
    surg_status st = compile_recipe(&a, &sink, &c);
    if (!st && a.graph) {
        char *g = surg_program_dump(c.prog);
        put_safe(stdout, g, true);
        free(g);
    }
    if (!st) {
        size_t in = surg_ckpt_count(c.from);
        printf("%s: ok: %zu tensor%s in, %zu out%s\n",
               strcmp(a.recipe, "-") == 0 ? "<stdin>" : a.recipe, in, in == 1 ? "" : "s",
               surg_program_output_count(c.prog), c.to ? ", matching the target" : "");
    }
    compiled_free(&c);
    recipe_args_free(&a);
    return surg_exit_code(st);
}
