/* recipe.c: the public face of the front end: a parsed recipe, formatted or
 * dumped. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support/diag.h"
#include "support/readfile.h"
#include "grammar/parse.h"
#include "grammar/print.h"
#include "grammar/recipe.h"

struct surg_recipe {
    arena ar;
    ast_recipe *ast;
};

/* Recipes are small; a larger file is surely not one. */
#define MAX_RECIPE SURG_RECIPE_MAX

/* With `partial`, a recipe with syntax errors is kept (see
 * surg_recipe_load_partial). */
static surg_status parse(const char *path, const char *text, size_t len, surg_sink *sink,
                         bool partial, surg_recipe **out)
{
    *out = NULL;
    if (len > MAX_RECIPE) {
        dg_file(sink, SURG_ERROR, "too-large", path, "a recipe may have at most %u bytes",
                MAX_RECIPE);
        return SURG_EINVALID;
    }
    surg_recipe *r = calloc(1, sizeof *r);
    if (!r)
        return dg_nomem(sink, path);
    ar_init(&r->ar);
    surg_status st = gr_parse(&r->ar, sink, path, text, (uint32_t)len, &r->ast);
    if (st == SURG_ENOMEM)
        dg_nomem(sink, path);
    if (st && !(partial && st == SURG_EINVALID && r->ast)) {
        surg_recipe_free(r);
        return st;
    }
    *out = r;
    return st;
}

surg_status surg_recipe_parse(const char *path, const char *text, size_t len,
                              surg_sink *sink, surg_recipe **out)
{
    return parse(path, text, len, sink, false, out);
}

surg_status surg_recipe_parse_partial(const char *path, const char *text, size_t len,
                                      surg_sink *sink, surg_recipe **out)
{
    return parse(path, text, len, sink, true, out);
}

surg_status surg_recipe_read(const char *path, surg_sink *sink, char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    if (strcmp(path, "-") == 0)
        return rf_read_stream(sink, "<stdin>", STDIN_FILENO, MAX_RECIPE, text, len);
    return rf_read_all(sink, path, MAX_RECIPE, text, len);
}

static surg_status load(const char *path, surg_sink *sink, bool partial, surg_recipe **out)
{
    char *text;
    size_t len;
    *out = NULL;
    surg_status st = surg_recipe_read(path, sink, &text, &len);
    if (st) {
        free(text);
        return st;
    }
    st = parse(strcmp(path, "-") == 0 ? "<stdin>" : path, text, len, sink, partial, out);
    free(text);
    return st;
}

surg_status surg_recipe_load(const char *path, surg_sink *sink, surg_recipe **out)
{
    return load(path, sink, false, out);
}

surg_status surg_recipe_load_partial(const char *path, surg_sink *sink, surg_recipe **out)
{
    return load(path, sink, true, out);
}

void surg_recipe_free(surg_recipe *r)
{
    if (!r)
        return;
    ar_free(&r->ar);
    free(r);
}

static char *print(const surg_recipe *r, void (*fn)(buf *, const ast_recipe *))
{
    buf b;
    buf_init(&b);
    fn(&b, r->ast);
    return buf_take(&b);
}

char *surg_recipe_format(const surg_recipe *r) { return print(r, pr_format); }
char *surg_recipe_dump(const surg_recipe *r) { return print(r, pr_dump); }

const ast_recipe *gr_recipe_ast(const surg_recipe *r) { return r->ast; }
