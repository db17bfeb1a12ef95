/* surg_tokens.c: the scanner's tokens of recipes (surg_recipe_tokens), for
 * tests/py/test_editors.py to hold the editors' grammars against: one line
 * per file, `FILE<TAB>KIND START END,KIND START END,...` (byte offsets);
 * with --keywords, the keywords instead, `WORD STARTS_STATEMENT` a line.
 * usage: surg_tokens FILE... | surg_tokens --keywords */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "surg/surg.h"

static const char *const kinds[] = {"keyword", "word", "number", "string",
                                    "operator", "separator", "comment", "other"};

static int dump(const char *path)
{
    surg_sink sink = {0};
    char *text;
    size_t len, n;
    surg_token *t;
    if (surg_recipe_read(path, &sink, &text, &len) != SURG_OK) {
        fprintf(stderr, "surg_tokens: cannot read %s\n", path);
        return 1;
    }
    surg_status st = surg_recipe_tokens(text, len, &t, &n);
    free(text);
    if (st != SURG_OK) {
        fprintf(stderr, "surg_tokens: %s: out of memory\n", path);
        return 1;
    }
    printf("%s\t", path);
    for (size_t i = 0; i < n; i++)
        printf("%s%s %u %u", i ? "," : "", kinds[t[i].kind], t[i].start, t[i].end);
    putchar('\n');
    free(t);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--keywords") == 0) {
        const char *w;
        int starts;
        for (size_t i = 0; (w = surg_recipe_keyword(i, &starts)); i++)
            printf("%s %d\n", w, starts);
        return 0;
    }
    int rc = 0;
    for (int i = 1; i < argc; i++)
        rc |= dump(argv[i]);
    return rc;
}
