/* fuzz_json.c: libFuzzer harness for surg_json_parse, the JSON reader of
 * `surg lsp`'s messages. Any input is refused with a message, or read into a
 * tree whose objects have distinct keys and whose arrays have none; printed
 * back as JSON, the tree reads again to the same tree. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "surg/surg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct text {
    char *p;
    size_t n, cap;
} text;

static void put(text *t, const char *s, size_t n)
{
    if (t->n + n + 1 > t->cap) {
        t->cap = 2 * (t->n + n + 1);
        t->p = realloc(t->p, t->cap);
        if (!t->p)
            abort();
    }
    memcpy(t->p + t->n, s, n);
    t->n += n;
    t->p[t->n] = '\0';
}

static void put_string(text *t, const char *s)
{
    put(t, "\"", 1);
    for (; *s; s++) {
        char esc[8];
        if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", (unsigned char)*s);
            put(t, esc, 6);
        } else {
            put(t, s, 1);
        }
    }
    put(t, "\"", 1);
}

/* Print a value (recursion: the tree nests at most 128 levels). */
static void print(text *t, const surg_json *v, int depth)
{
    if (depth > 129)
        abort();
    switch (v->kind) {
    case SURG_JSON_NULL: put(t, "null", 4); break;
    case SURG_JSON_FALSE: put(t, "false", 5); break;
    case SURG_JSON_TRUE: put(t, "true", 4); break;
    case SURG_JSON_NUMBER: put(t, v->string, strlen(v->string)); break;
    case SURG_JSON_STRING: put_string(t, v->string); break;
    case SURG_JSON_ARRAY:
    case SURG_JSON_OBJECT: {
        bool obj = v->kind == SURG_JSON_OBJECT;
        put(t, obj ? "{" : "[", 1);
        for (size_t i = 0; i < v->n; i++) {
            const surg_json *it = &v->items[i];
            if ((it->key != NULL) != obj)
                abort(); /* members have keys, items none */
            for (size_t k = 0; obj && k < i; k++)
                if (strcmp(v->items[k].key, it->key) == 0)
                    abort(); /* duplicates are refused */
            if (obj && surg_json_get(v, it->key) != it)
                abort();
            if (i)
                put(t, ",", 1);
            if (obj) {
                put_string(t, it->key);
                put(t, ":", 1);
            }
            print(t, it, depth + 1);
        }
        put(t, obj ? "}" : "]", 1);
        break;
    }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[300] = "";
    surg_json *j = surg_json_parse((const char *)data, size, err, sizeof err);
    if (!j) {
        if (!err[0])
            abort(); /* a refusal says why */
        return 0;
    }
    text once = {0}, twice = {0};
    print(&once, j, 0);
    surg_json *back = surg_json_parse(once.p, once.n, err, sizeof err);
    if (!back)
        abort();
    print(&twice, back, 0);
    if (once.n != twice.n || memcmp(once.p, twice.p, once.n) != 0)
        abort();
    surg_json_free(back);
    surg_json_free(j);
    free(once.p);
    free(twice.p);
    return 0;
}
