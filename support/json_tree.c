/* json_tree.c: a JSON text as a tree (surg_json_parse), for tools that read
 * messages rather than headers (`surg lsp`'s JSON-RPC). Built on the pull
 * reader of json.c, iteratively: the open containers are a stack of their
 * own, bounded by JSON_MAX_DEPTH, and their finished items wait in one
 * array until the container closes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/json.h"
#include "support/utf8.h"
#include "surg/surg.h"

typedef struct json_doc {
    surg_json root; /* first: the pointer the caller holds */
    arena ar;
} json_doc;

typedef struct frame {
    surg_json node;  /* the container, its items not yet attached */
    size_t first;    /* where its items start in the pending array */
    json_keys keys;  /* an object's keys, checked for duplicates at its end */
} frame;

typedef struct builder {
    json_reader j;
    arena *ar;
    frame stack[JSON_MAX_DEPTH + 1];
    int depth;
    surg_json *pending;
    size_t n, cap;
    size_t values; /* every value added, against JSON_TREE_MAX_VALUES */
    bool nomem;
} builder;

/* The most values one text may hold: each costs a node (and the pending
 * array a copy), so a text of small values would take many times its size. */
#define JSON_TREE_MAX_VALUES (1u << 20)

static bool add(builder *b, const surg_json *v)
{
    if (++b->values > JSON_TREE_MAX_VALUES)
        return json_fail(&b->j, "more than %u values", JSON_TREE_MAX_VALUES);
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 64;
        surg_json *p = realloc(b->pending, cap * sizeof *p);
        if (!p)
            return !(b->nomem = true);
        b->pending = p;
        b->cap = cap;
    }
    b->pending[b->n++] = *v;
    return true;
}

static bool scalar(builder *b, const char *key)
{
    json_reader *j = &b->j;
    surg_json v = {.key = key};
    int c = json_peek(j);
    bool truth;
    if (c == '"') {
        v.kind = SURG_JSON_STRING;
        if (!json_string(j, &v.string))
            return false;
    } else if (c == 't' || c == 'f') {
        if (!json_truth(j, &truth))
            return false;
        v.kind = truth ? SURG_JSON_TRUE : SURG_JSON_FALSE;
    } else if (c == 'n') {
        v.kind = SURG_JSON_NULL;
        if (!json_skip(j))
            return false;
    } else {
        size_t start = j->i;
        v.kind = SURG_JSON_NUMBER;
        if (!json_number(j, &v.number))
            return false;
        while (start < j->i && strchr(" \t\r\n", j->s[start]))
            start++;
        if (!(v.string = ar_strndup(b->ar, j->s + start, j->i - start)))
            return !(b->nomem = true);
    }
    return add(b, &v);
}

/* Close the innermost container: its items move into the arena. */
static bool close_top(builder *b)
{
    frame *f = &b->stack[--b->depth];
    bool ok = f->node.kind != SURG_JSON_OBJECT || json_keys_unique(&b->j, &f->keys, "an object");
    if (!ok)
        return false;
    f->node.n = b->n - f->first;
    surg_json *items = ar_array(b->ar, f->node.n + 1, sizeof *items);
    if (!items)
        return !(b->nomem = true);
    if (f->node.n) /* pending is NULL before the first item */
        memcpy(items, b->pending + f->first, f->node.n * sizeof *items);
    f->node.items = items;
    b->n = f->first;
    return add(b, &f->node);
}

/* After an item: the next one's key (in an object), or the end. Returns 1
 * for another item, 0 when the container closed, -1 on an error. */
static int next_item(builder *b, int more, const char **key)
{
    frame *f = &b->stack[b->depth - 1];
    if (more <= 0)
        return more < 0 ? -1 : close_top(b) ? 0 : -1;
    *key = NULL;
    if (f->node.kind == SURG_JSON_OBJECT &&
        (!json_key(&b->j, key) || !json_keys_add(&b->j, &f->keys, *key)))
        return -1;
    return 1;
}

static bool build(builder *b)
{
    json_reader *j = &b->j;
    const char *key = NULL;
    for (;;) {
        int c = json_peek(j);
        if (c == '{' || c == '[') {
            if (!json_open(j, (char)c)) /* fails past JSON_MAX_DEPTH */
                return false;
            frame *f = &b->stack[b->depth++];
            *f = (frame){.node = {.kind = c == '{' ? SURG_JSON_OBJECT : SURG_JSON_ARRAY,
                                  .key = key},
                         .first = b->n};
            int r = next_item(b, json_first(j, c == '{' ? '}' : ']'), &key);
            if (r < 0)
                return false;
            if (r > 0)
                continue;
        } else if (!scalar(b, key)) {
            return false;
        }
        /* a value is done: close every container it ends */
        for (;;) {
            if (b->depth == 0)
                return json_end(j);
            char close = b->stack[b->depth - 1].node.kind == SURG_JSON_OBJECT ? '}' : ']';
            int r = next_item(b, json_more(j, close), &key);
            if (r < 0)
                return false;
            if (r > 0)
                break;
        }
    }
}

surg_json *surg_json_parse(const char *text, size_t len, char *err, size_t err_cap)
{
    size_t bad;
    if (!utf8_valid((const unsigned char *)text, len, &bad)) {
        snprintf(err, err_cap, "at byte %zu: not valid UTF-8", bad);
        return NULL;
    }
    json_doc *d = calloc(1, sizeof *d);
    if (!d) {
        snprintf(err, err_cap, "out of memory");
        return NULL;
    }
    ar_init(&d->ar);
    builder *b = calloc(1, sizeof *b);
    bool ok = b != NULL;
    if (ok) {
        b->ar = &d->ar;
        json_init(&b->j, text, len, &d->ar);
        ok = build(b) && b->n == 1;
        if (ok)
            d->root = b->pending[0];
        else if (b->nomem)
            snprintf(err, err_cap, "out of memory");
        else
            snprintf(err, err_cap, "at byte %zu: %s", b->j.err_at, b->j.err);
        while (b->depth > 0)
            json_keys_free(&b->stack[--b->depth].keys);
        free(b->pending);
        free(b);
    } else {
        snprintf(err, err_cap, "out of memory");
    }
    if (!ok) {
        surg_json_free(&d->root);
        return NULL;
    }
    return &d->root;
}

void surg_json_free(surg_json *root)
{
    if (!root)
        return;
    json_doc *d = (json_doc *)root;
    ar_free(&d->ar);
    free(d);
}

const surg_json *surg_json_get(const surg_json *obj, const char *key)
{
    if (!obj || obj->kind != SURG_JSON_OBJECT)
        return NULL;
    for (size_t i = 0; i < obj->n; i++)
        if (strcmp(obj->items[i].key, key) == 0)
            return &obj->items[i];
    return NULL;
}
