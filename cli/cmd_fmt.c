/* cmd_fmt.c: `surg fmt [--check] RECIPE...`: print recipes in the canonical
 * layout, or check that they already are. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char help[] =
    "usage: surg fmt [--check] [--tree] RECIPE...\n"
    "\n"
    "Print each recipe in the one canonical layout: one statement per line,\n"
    "single spaces, minimal parentheses, comments and single blank lines kept.\n"
    "Formatting never changes what a recipe means. RECIPE '-' is standard input.\n"
    "\n"
    "  --check  print nothing; exit 1 if a recipe is not formatted (naming it)\n"
    "  --tree   print the syntax tree instead (for debugging the grammar)\n";

static surg_status load(const char *path, surg_sink *sink, surg_recipe **r,
                        char **text, size_t *len)
{
    *r = NULL;
    surg_status st = surg_recipe_read(path, sink, text, len);
    if (st)
        return st;
    return surg_recipe_parse(strcmp(path, "-") == 0 ? "<stdin>" : path, *text, *len,
                             sink, r);
}

static int fmt_one(const char *path, bool check, bool tree, surg_sink *sink)
{
    surg_recipe *r;
    char *text;
    size_t len;
    surg_status st = load(path, sink, &r, &text, &len);
    if (st) {
        free(text);
        return surg_exit_code(st);
    }
    char *out = tree ? surg_recipe_dump(r) : surg_recipe_format(r);
    surg_recipe_free(r);
    int rc = 0;
    if (!out) {
        fprintf(stderr, "surg fmt: %s: out of memory\n", path);
        rc = 2;
    } else if (check) {
        if (strlen(out) != len || memcmp(out, text, len) != 0) {
            fprintf(stderr, "%s: not formatted (run `surg fmt %s`)\n", path, path);
            rc = 1;
        }
    } else {
        fputs(out, stdout);
    }
    free(out);
    free(text);
    return rc;
}

int cmd_fmt(int argc, char **argv, diag_printer *dp)
{
    bool check = false, tree = false;
    int n_files = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(help, stdout);
            return 0;
        }
        if (strcmp(argv[i], "--check") == 0)
            check = true;
        else if (strcmp(argv[i], "--tree") == 0)
            tree = true;
        else if (argv[i][0] == '-' && argv[i][1])
            return usage_error("fmt", "unknown option '%s'", argv[i]);
        else
            argv[1 + n_files++] = argv[i];
    }
    if (!n_files)
        return usage_error("fmt", "which recipe?");
    surg_sink sink = diag_sink(dp);
    int rc = 0;
    for (int i = 0; i < n_files; i++) {
        int r = fmt_one(argv[1 + i], check, tree, &sink);
        rc = r > rc ? r : rc;
    }
    if (fflush(stdout) != 0) {
        fputs("surg fmt: cannot write to standard output\n", stderr);
        rc = 2;
    }
    return rc;
}
