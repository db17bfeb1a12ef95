/* cmd_invert.c: `surg invert RECIPE --from CKPT|SCHEMA`: print the recipe
 * that takes the recipe's result back to its input. */
#include <stdlib.h>

#include "cli.h"

static const char help[] =
    "usage: surg invert RECIPE --from CKPT|SCHEMA [--format NAME]\n"
    "\n"
    "Print the inverse of a recipe: a recipe that takes what RECIPE makes of\n"
    "CKPT back to CKPT, byte for byte (metadata aside). It is computed from\n"
    "the recipe compiled against CKPT's abstract state (headers only) and\n"
    "printed in canonical layout (surg fmt).\n"
    "\n"
    "What inverts: rename, transpose, reshape, negation, widening casts\n"
    "(f16/bf16 -> f32, f32 -> f64, i8 -> i32, ...), split <-> concat,\n"
    "stack <-> unstack, untie, new tensors (fill \"NEW\", init-lora: dropped),\n"
    "mirror, expect, seed, layout. What does not: drop, keep that drops, fill\n"
    "of existing tensors, tie over a tensor, a lossy cast, any other map,\n"
    "merge-lora: each is an error at its line with what would make it\n"
    "invertible. meta statements are not undone.\n"
    "\n"
    "  --from CKPT   the checkpoint or schema the recipe applies to\n"
    "  --format NAME the format of CKPT when its name does not say\n"
    "\n"
    "Example:\n"
    "  surg invert port.surg --from old.json > unport.surg\n"
    "\n"
    "Exit status: 0 printed, 1 the recipe has no inverse (or does not\n"
    "compile), 2 usage or I/O error.\n";

int cmd_invert(int argc, char **argv, diag_printer *dp)
{
    recipe_args a = {0};
    int rc = parse_recipe_args("invert", help, argc, argv, &a);
    if (rc >= 0) {
        recipe_args_free(&a);
        return rc;
    }
    if (a.to || a.n_ins) {
        recipe_args_free(&a);
        return usage_error("invert", "invert takes one input: --from CKPT");
    }
    surg_sink sink = diag_sink(dp);
    surg_recipe *r = NULL;
    surg_ckpt *from = NULL;
    surg_status st = surg_recipe_load(a.recipe, &sink, &r);
    surg_status st2 = surg_ckpt_open_as(a.from, a.format, &sink, &from);
    if (st2 > st)
        st = st2;
    char *text = NULL;
    if (!st)
        st = surg_invert(r, from, &sink, &text);
    if (!st)
        fputs(text, stdout);
    free(text);
    surg_ckpt_close(from);
    surg_recipe_free(r);
    recipe_args_free(&a);
    return surg_exit_code(st);
}
