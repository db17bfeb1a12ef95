/* fuzz_recipe.c: libFuzzer harness for the recipe front end. Any input must
 * parse or be rejected with diagnostics, never crash; and a recipe that
 * parses must format to text that parses to the same tree and formats to
 * itself. Any input has tokens (surg_recipe_tokens) in order, apart and
 * inside it; the pattern found at a token (surg_recipe_pattern_at) holds
 * that place, inside its statement. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "surg/surg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *format_text(const char *text, size_t len, char **tree)
{
    surg_recipe *r;
    if (surg_recipe_parse("fuzz.surg", text, len, NULL, &r) != SURG_OK)
        return NULL;
    char *out = surg_recipe_format(r);
    *tree = surg_recipe_dump(r);
    surg_recipe_free(r);
    return out;
}

/* The tokens of any text, and the patterns at their starts. */
static void check_tokens(const char *text, size_t len)
{
    surg_token *t;
    size_t n;
    if (surg_recipe_tokens(text, len, &t, &n) != SURG_OK)
        abort();
    for (size_t i = 0; i < n; i++)
        if (t[i].start >= t[i].end || t[i].end > len || (i && t[i].start < t[i - 1].end) ||
            t[i].kind > SURG_TOK_OTHER)
            abort();
    surg_recipe *r;
    if (surg_recipe_parse("fuzz.surg", text, len, NULL, &r) == SURG_OK) {
        for (size_t i = 0; i < n; i++) {
            surg_pattern_ref ref;
            if (surg_recipe_pattern_at(r, t[i].start, &ref) &&
                (!ref.text || ref.start > t[i].start || ref.end <= t[i].start ||
                 ref.stmt_start > ref.start || ref.end > len))
                abort();
        }
        surg_recipe_free(r);
    }
    free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_tokens((const char *)data, size);
    char *tree1 = NULL, *tree2 = NULL, *tree3 = NULL;
    char *once = format_text((const char *)data, size, &tree1);
    if (once) {
        char *twice = format_text(once, strlen(once), &tree2);
        if (!twice || strcmp(once, twice) != 0 || strcmp(tree1, tree2) != 0)
            abort(); /* fmt must keep the meaning and be idempotent */
        free(twice);
        (void)tree3;
    }
    free(once);
    free(tree1);
    free(tree2);
    return 0;
}
