/* cmd_schema.c: `surg schema CKPT [--json]`: the abstract state as a tree
 * nested by path segments (as jax.tree_util.tree_map(jnp.shape, params)
 * shows it), or as a schema file. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char help[] =
    "usage: surg schema CKPT [--json] [--format NAME]\n"
    "\n"
    "Print the abstract state of a checkpoint: every tensor's name, dtype and\n"
    "shape, read from the header alone (no tensor data is read).\n"
    "CKPT is a .safetensors file, a sharded checkpoint (a directory or its\n"
    "model.safetensors.index.json), a NumPy .npz or .npy, a PyTorch .pt, .pth\n"
    "or .bin (its pickle read as data, never run), a Flax .msgpack, or a .json\n"
    "schema. Names\n"
    "recorded as tied to a stored tensor are listed after the tree, after\n"
    "the metadata (`__metadata__`: each key and its value, a long one cut).\n"
    "\n"
    "  --json          write a schema file (SPEC §2) to standard output instead\n"
    "  --format NAME   the format of a CKPT whose name does not say: safetensors,\n"
    "                  npz, npy, torch, msgpack or schema\n";

/* A node of the name tree. A label is a path segment with the separator that
 * follows it ("Dense_0/", "layers.", "kernel"). */
typedef struct node {
    char *label;
    const surg_tensor_info *leaf; /* non-NULL for a tensor */
    struct node **kids;
    size_t n_kids, cap;
} node;

static void node_free(node *n)
{
    for (size_t i = 0; i < n->n_kids; i++)
        node_free(n->kids[i]);
    free(n->kids);
    free(n->label);
    free(n);
}

/* Names arrive in byte order, so names that share a label under a parent
 * arrive one after another: only the newest child can be the one. */
static node *child(node *parent, const char *label, size_t len,
                   bool want_leaf, bool *nomem)
{
    node *k = parent->n_kids ? parent->kids[parent->n_kids - 1] : NULL;
    if (k && strlen(k->label) == len && memcmp(k->label, label, len) == 0 &&
        (k->leaf == NULL) != want_leaf)
        return k;
    if (parent->n_kids == parent->cap) {
        size_t cap = parent->cap ? parent->cap * 2 : 4;
        node **kids = realloc(parent->kids, cap * sizeof *kids);
        if (!kids)
            return *nomem = true, NULL;
        parent->kids = kids;
        parent->cap = cap;
    }
    k = calloc(1, sizeof *k);
    if (k)
        k->label = strndup(label, len);
    if (!k || !k->label) {
        free(k);
        return *nomem = true, NULL;
    }
    parent->kids[parent->n_kids++] = k;
    return k;
}

/* How deep the tree nests: the segments of a name past this depth stay
 * together on its line, so no name (a header may hold one of a million
 * segments) makes the walks below recurse deeper, or fold longer chains. */
enum { MAX_DEPTH = 32 };

static bool insert(node *root, const surg_tensor_info *t)
{
    bool nomem = false;
    node *at = root;
    const char *s = t->name;
    for (size_t depth = 1; *s && at; depth++) {
        size_t len = depth < MAX_DEPTH ? strcspn(s, "/.") : strlen(s);
        if (s[len])
            len++; /* keep the separator with its segment */
        if (s[len] == '\0') {
            node *leaf = child(at, s, len, true, &nomem);
            if (leaf)
                leaf->leaf = t;
            return !nomem;
        }
        at = child(at, s, len, false, &nomem);
        s += len;
    }
    return !nomem && at;
}

static int kid_cmp(const void *x, const void *y)
{
    const node *a = *(node *const *)x, *b = *(node *const *)y;
    int c = surg_natural_cmp(a->label, b->label);
    return c ? c : (a->leaf != NULL) - (b->leaf != NULL);
}

/* Sort children, and fold a group with one member into its parent's line
 * ("embed_tokens.weight" rather than two lines). */
static bool tidy(node *n)
{
    if (n->n_kids > 1)
        qsort(n->kids, n->n_kids, sizeof *n->kids, kid_cmp);
    for (size_t i = 0; i < n->n_kids; i++) {
        node *k = n->kids[i];
        while (!k->leaf && k->n_kids == 1) {
            node *only = k->kids[0];
            size_t la = strlen(k->label), lb = strlen(only->label);
            char *label = malloc(la + lb + 1);
            if (!label)
                return false;
            memcpy(label, k->label, la);
            memcpy(label + la, only->label, lb + 1);
            free(only->label);
            only->label = label;
            k->n_kids = 0;
            node_free(k);
            n->kids[i] = k = only;
        }
        if (!tidy(k))
            return false;
    }
    return true;
}

static size_t text_width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

/* Types line up in one column after the widest name, unless that is wider
 * than MAX_COLUMN: a longer name then has its type two spaces after it,
 * so one very long name does not pad every other line. */
enum { MAX_COLUMN = 80 };

static size_t label_column(const node *n, size_t depth)
{
    size_t w = 0;
    for (size_t i = 0; i < n->n_kids; i++) {
        const node *k = n->kids[i];
        size_t kw = k->leaf ? 2 * depth + text_width(k->label)
                            : label_column(k, depth + 1);
        w = kw > w && kw <= MAX_COLUMN ? kw : w;
    }
    return w;
}

static void print_type(const surg_tensor_info *t)
{
    printf("%s[", surg_dtype_recipe_name(t->dtype));
    for (uint32_t d = 0; d < t->rank; d++)
        printf("%s%llu", d ? ", " : "", (unsigned long long)t->shape[d]);
    fputs("]\n", stdout);
}

static void print_tree(const node *n, size_t depth, size_t column)
{
    for (size_t i = 0; i < n->n_kids; i++) {
        const node *k = n->kids[i];
        printf("%*s", (int)(2 * depth), "");
        put_safe(stdout, k->label, false);
        if (k->leaf) {
            size_t used = 2 * depth + text_width(k->label);
            printf("%*s", used < column ? (int)(column + 2 - used) : 2, "");
            print_type(k->leaf);
        } else {
            putchar('\n');
            print_tree(k, depth + 1, column);
        }
    }
}

static void print_bytes(unsigned long long n)
{
    char s[32];
    surg_format_size(n, s, sizeof s);
    fputs(s, stdout);
}

static void print_summary(const surg_ckpt *ck)
{
    unsigned long long elems = 0, bytes = 0;
    size_t n = surg_ckpt_count(ck);
    for (size_t i = 0; i < n; i++) {
        elems += surg_ckpt_tensor(ck, i)->nelems;
        bytes += surg_ckpt_tensor(ck, i)->nbytes;
    }
    printf("%zu tensor%s, %llu parameter%s, ", n, n == 1 ? "" : "s", elems,
           elems == 1 ? "" : "s");
    print_bytes(bytes);
    putchar('\n');
}

/* `__metadata__`, one key a line in key order, a long value shortened:
 *   __metadata__
 *     format: pt
 *     surg.ties: {"lm_head.weight": "model.embed_tokens.weight", "x": ... (4123 bytes) */
#define META_SHOWN 72

static void print_metadata(const surg_ckpt *ck)
{
    size_t n = surg_ckpt_meta_count(ck);
    if (n)
        fputs("__metadata__\n", stdout);
    char cut[META_SHOWN + 1];
    for (size_t i = 0; i < n; i++) {
        const surg_meta_entry *m = surg_ckpt_meta(ck, i);
        fputs("  ", stdout);
        put_safe(stdout, m->key, false);
        fputs(": ", stdout);
        size_t len = strlen(m->value);
        if (len <= META_SHOWN) {
            put_safe(stdout, m->value, false);
            putchar('\n');
            continue;
        }
        size_t k = META_SHOWN;
        while (k && ((unsigned char)m->value[k] & 0xC0) == 0x80)
            k--; /* not inside a UTF-8 character */
        memcpy(cut, m->value, k);
        cut[k] = '\0';
        put_safe(stdout, cut, false);
        printf(" ... (%zu bytes)\n", len);
    }
}

/* Names recorded as tied (surg.ties), as `surg plan` shows them. */
static void print_ties(const surg_ckpt *ck)
{
    const surg_meta_entry *t;
    for (size_t i = 0; (t = surg_ckpt_tie(ck, i)) != NULL; i++) {
        fputs("tied: \"", stdout);
        put_safe(stdout, t->key, false);
        fputs("\" is stored as \"", stdout);
        put_safe(stdout, t->value, false);
        fputs("\"\n", stdout);
    }
}

static int print_as_tree(const surg_ckpt *ck)
{
    node *root = calloc(1, sizeof *root);
    bool ok = root != NULL;
    for (size_t i = 0; ok && i < surg_ckpt_count(ck); i++)
        ok = insert(root, surg_ckpt_tensor(ck, i));
    ok = ok && tidy(root);
    if (ok) {
        print_tree(root, 0, label_column(root, 0));
        print_metadata(ck);
        print_ties(ck);
        print_summary(ck);
    }
    if (root)
        node_free(root);
    if (!ok)
        fputs("surg schema: out of memory\n", stderr);
    return ok ? 0 : 2;
}

int cmd_schema(int argc, char **argv, diag_printer *dp)
{
    const char *path = NULL, *format = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(help, stdout);
            return 0;
        }
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (strcmp(argv[i], "--format") == 0 && i + 1 < argc)
            format = argv[++i];
        else if (strcmp(argv[i], "--format") == 0)
            return usage_error("schema", "--format needs a value");
        else if (argv[i][0] == '-' && argv[i][1])
            return usage_error("schema", "unknown option '%s'", argv[i]);
        else if (path)
            return usage_error("schema", "one checkpoint at a time");
        else
            path = argv[i];
    }
    if (!path)
        return usage_error("schema", "which checkpoint?");
    surg_sink sink = diag_sink(dp);
    surg_ckpt *ck;
    surg_status st = surg_ckpt_open_as(path, format, &sink, &ck);
    if (st)
        return surg_exit_code(st);
    int rc = 0;
    if (json) {
        char *text;
        st = surg_ckpt_schema_json(ck, &text);
        if (st == SURG_OK) {
            fputs(text, stdout);
            free(text);
        }
        rc = surg_exit_code(st);
    } else {
        rc = print_as_tree(ck);
    }
    surg_ckpt_close(ck);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fputs("surg schema: cannot write to standard output\n", stderr);
        rc = 2;
    }
    return rc;
}
