/* paths.c: the path-keyed metadata of the input (a reader's paths_meta,
 * runtime/format.h: Flax msgpack's "msgpack.tree", the values that are not
 * tensors and the order of the tree), read back as paths that the recipe
 * moves. A path that names a tensor follows that tensor (change.c: renames,
 * ties, and it goes when the tensor goes); any other path is a value's,
 * which rename, drop and keep match as they match names. Nothing here
 * knows what the values mean: the format's writer reads them back. */
#include <stdlib.h>
#include <string.h>

#include "support/diag.h"
#include "support/json.h"
#include "compiler/lower.h"
#include "runtime/format.h"

static bool add_path(lw *L, size_t *cap, lw_path p)
{
    if (L->n_paths == *cap) {
        size_t n = *cap ? *cap * 2 : 64;
        lw_path *x = realloc(L->paths, n * sizeof *x);
        if (!x) {
            L->nomem = true;
            return false;
        }
        L->paths = x;
        *cap = n;
    }
    L->paths[L->n_paths++] = p;
    return true;
}

/* One entry's JSON object of strings, its paths under `prefix`. */
static void load_entry(lw *L, const surg_ckpt *part, const char *prefix,
                       const surg_meta_entry *e, size_t *cap)
{
    size_t first = L->n_paths, plen = strlen(prefix);
    json_reader j;
    json_init(&j, e->value, strlen(e->value), L->ar);
    int more = json_open(&j, '{') ? json_first(&j, '}') : -1;
    for (; more > 0 && !L->nomem; more = json_more(&j, '}')) {
        const char *path, *value;
        if (!json_key(&j, &path) || !json_string(&j, &value)) {
            more = -1;
            break;
        }
        size_t n = strlen(path);
        char *full = ar_alloc(L->ar, plen + n + 1);
        if (!full) {
            L->nomem = true;
            return;
        }
        memcpy(full, prefix, plen);
        memcpy(full + plen, path, n + 1);
        bool tensor = state_find(&L->st, full) != STATE_NONE;
        if (!add_path(L, cap, (lw_path){e->key, full, value, tensor}))
            return;
    }
    if (more == 0 && !json_end(&j))
        more = -1;
    if (more != 0 && !L->nomem) {
        L->n_paths = first;
        dg_file(L->sink, SURG_WARNING, "paths-metadata", surg_ckpt_path(part),
                "the metadata \"%s\" is not an object of paths and strings (%s); it is dropped",
                e->key, j.failed ? j.err : "a value is not a string");
    }
}

void lw_load_paths(lw *L, const surg_ckpt *in)
{
    const char *prefix;
    const surg_ckpt *part;
    size_t cap = 0;
    for (size_t i = 0; !L->nomem && (part = surg_ckpt_part_at(in, i, &prefix)) != NULL; i++)
        for (size_t k = 0; !L->nomem && k < surg_ckpt_meta_count(part); k++) {
            const surg_meta_entry *e = surg_ckpt_meta(part, k);
            if (fmt_paths_meta(e->key))
                load_entry(L, part, prefix, e, &cap);
        }
}

/* Whether p matches value path i; caps filled. */
static bool value_match(lw *L, const gl_pattern *p, size_t i, gl_span *caps)
{
    const lw_path *x = &L->paths[i];
    if (!x->path || x->tensor)
        return false;
    int r = gl_match(p, x->path, (uint32_t)strlen(x->path), caps, &L->scratch);
    L->nomem |= r < 0;
    return r > 0;
}

bool lw_paths_match(lw *L, const gl_pattern *p)
{
    gl_span caps[GL_MAX_CAPTURES + 1];
    for (size_t i = 0; i < L->n_paths && !L->nomem; i++)
        if (value_match(L, p, i, caps))
            return true;
    return false;
}

void lw_paths_rename(lw *L, const gl_pattern *p, const gl_template *t, src_span at)
{
    gl_span caps[GL_MAX_CAPTURES + 1];
    for (size_t i = 0; i < L->n_paths && !L->nomem; i++) {
        if (!value_match(L, p, i, caps))
            continue;
        lw_match m = {.name = L->paths[i].path, .caps = caps};
        const char *to = lw_expand(L, t, at, &m, 0);
        if (!to)
            return;
        L->paths[i].path = to;
    }
}

void lw_paths_drop(lw *L, const gl_pattern *p)
{
    gl_span caps[GL_MAX_CAPTURES + 1];
    for (size_t i = 0; i < L->n_paths && !L->nomem; i++)
        if (value_match(L, p, i, caps))
            L->paths[i].path = NULL;
}

void lw_paths_mark(lw *L, const gl_pattern *p, uint8_t *kept)
{
    gl_span caps[GL_MAX_CAPTURES + 1];
    for (size_t i = 0; kept && i < L->n_paths && !L->nomem; i++)
        if (value_match(L, p, i, caps))
            kept[i] = 1;
}

void lw_paths_keep(lw *L, const uint8_t *kept)
{
    for (size_t i = 0; kept && i < L->n_paths; i++)
        if (!L->paths[i].tensor && !kept[i])
            L->paths[i].path = NULL;
}
