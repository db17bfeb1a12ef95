/* cmd_suggest.c: `surg suggest --from OLD --to NEW`: print a recipe drafted
 * from two abstract states, and say on standard error what it maps. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char help[] =
    "usage: surg suggest --from OLD --to NEW [--format NAME]\n"
    "\n"
    "Draft a recipe that takes OLD's tensors to NEW's, from their abstract\n"
    "states alone (checkpoints or schema files: headers only). Tensors pair by\n"
    "dtype, dimensions and the words and numbers of their names; the draft\n"
    "renames (one line, with * and {a,b}, for names that move together),\n"
    "transposes where only the axis order differs (a PyTorch weight becoming a\n"
    "Flax kernel), and stacks or unstacks Flax nn.scan layers. What it cannot\n"
    "pair, or could pair several ways, is left as a comment naming the\n"
    "candidates. The draft is printed in canonical layout (surg fmt); when\n"
    "every tensor is mapped it passes surg check --from OLD --to NEW.\n"
    "\n"
    "  --from OLD    the checkpoint or schema the recipe will apply to\n"
    "  --to NEW      the checkpoint or schema it should make\n"
    "  --format NAME the format of OLD or NEW when its name does not say\n"
    "\n"
    "Example:\n"
    "  surg suggest --from two_layer_mlp.json --to modified_two_layer_mlp.json > port.surg\n"
    "\n"
    "Exit status: 0 every tensor is mapped and the draft checks, 1 some are\n"
    "left as comments (the draft is printed all the same), 2 usage or I/O\n"
    "error, or OLD or NEW is malformed (nothing is printed).\n";

static void summary(const surg_suggest_stats *s)
{
    if (s->checked) {
        fprintf(stderr,
                "surg suggest: every tensor mapped (%zu renamed, %zu transposed, %zu stacked, "
                "%zu unstacked, %zu as they are); the draft passes surg check\n",
                s->renamed, s->transposed, s->stacked, s->unstacked, s->same);
        return;
    }
    if (!s->unmapped_old && !s->unmapped_new)
        return; /* the library said why */
    fprintf(stderr,
            "surg suggest: %zu of %zu old and %zu of %zu new tensors are not mapped: see the "
            "comments at the end of the draft\n",
            s->unmapped_old, s->old_tensors, s->unmapped_new, s->new_tensors);
}

int cmd_suggest(int argc, char **argv, diag_printer *dp)
{
    const char *from = NULL, *to = NULL, *format = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(help, stdout);
            return 0;
        }
        const char **slot = strcmp(a, "--from") == 0     ? &from
                            : strcmp(a, "--to") == 0     ? &to
                            : strcmp(a, "--format") == 0 ? &format
                                                         : NULL;
        if (!slot)
            return usage_error("suggest", a[0] == '-' && a[1] ? "unknown option '%s'"
                                                              : "unexpected argument '%s'",
                               a);
        if (i + 1 >= argc)
            return usage_error("suggest", "%s needs a value", a);
        if (*slot)
            return usage_error("suggest", "%s is given twice", a);
        *slot = argv[++i];
    }
    if (!from || !to)
        return usage_error("suggest", "both --from OLD and --to NEW are needed");
    surg_sink sink = diag_sink(dp);
    surg_ckpt *old = NULL, *new = NULL;
    surg_status st = surg_ckpt_open_as(from, format, &sink, &old);
    surg_status st2 = surg_ckpt_open_as(to, format, &sink, &new);
    if (st2 > st)
        st = st2;
    char *text = NULL;
    surg_suggest_stats stats = {0};
    if (!st)
        st = surg_suggest(old, new, &sink, &text, &stats);
    if (!st) {
        fputs(text, stdout);
        fflush(stdout);
        summary(&stats);
    }
    free(text);
    surg_ckpt_close(old);
    surg_ckpt_close(new);
    if (st)
        return 2; /* 1 says "a draft with comments": a broken input is an error */
    return stats.checked ? 0 : 1;
}
