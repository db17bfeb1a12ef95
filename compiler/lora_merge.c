/* lora_merge.c: merge-lora: a PEFT adapter merged into its base as PEFT's
 * merge_and_unload does (lora/layer.py: get_delta_weight, merge), every
 * module the adapter holds in one statement, the scaling and the layout
 * read from its adapter_config.json. The adapter's tensors are consumed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "compiler/mirror.h"
#include "compiler/statements.h"
#include "runtime/numeric.h"
#include "support/json.h"

#define PEFT_ROOT "base_model.model."
/* Errors of one kind said before the rest are only counted. */
#define MG_SHOWN 4

typedef struct mg_pattern {
    const char *key;
    double value;
} mg_pattern;

/* What adapter_config.json says (LoraConfig's defaults where it is silent). */
typedef struct mg_config {
    const char *path;
    src_span at; /* where its errors point */
    int64_t r;
    double alpha;
    bool rslora, fan_in_fan_out, dora;
    const char **targets; /* target_modules as a list; NULL: a string or null */
    size_t n_targets;
    mg_pattern *ranks, *alphas; /* rank_pattern, alpha_pattern */
    size_t n_ranks, n_alphas;
} mg_config;

/* One module of the adapter: its pair, and the base tensor it goes into. */
typedef struct mg_module {
    const char *name; /* as PEFT names it: model.layers.0.self_attn.q_proj */
    size_t a, b, bias; /* state entries (bias: STATE_NONE if none) */
    bool embedding;    /* lora_embedding_A/B: the delta is transposed */
} mg_module;

typedef struct mg {
    lw *L;
    const ast_stmt *s;
    const char *adapter, *base; /* the prefixes */
    src_span adapter_at, base_at;
    mg_config cfg;
    change c;
    unsigned before;
} mg;

static bool ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

static const char *concat3(lw *L, const char *a, const char *b, size_t b_len, const char *c)
{
    size_t la = strlen(a), lc = strlen(c);
    char *p = ar_alloc(L->ar, la + b_len + lc + 1);
    if (!p) {
        L->nomem = true;
        return NULL;
    }
    memcpy(p, a, la);
    memcpy(p + la, b, b_len);
    memcpy(p + la + b_len, c, lc + 1);
    return p;
}

/* ---- the config ----------------------------------------------------------- */

static void config_error(mg *M, const char *fmt, const char *key, const char *what)
{
    lw_error(M->L, M->cfg.at, "merge-config", NULL, 0, fmt, M->cfg.path, key, what);
}

static const char *json_kind_name(int c)
{
    return c == '"' ? "a string" : c == '{' ? "an object" : c == '[' ? "an array"
           : c == 't' || c == 'f' ? "a boolean" : c == 'n' ? "null" : "a number";
}

/* A JSON number at j (false: not a number; the value is left unread). */
static bool read_number(json_reader *j, double *out)
{
    int c = json_peek(j);
    if (c != '-' && (c < '0' || c > '9'))
        return false;
    size_t start = j->i;
    if (!json_skip(j))
        return false;
    char text[64];
    size_t n = j->i - start;
    if (n >= sizeof text)
        n = sizeof text - 1;
    memcpy(text, j->s + start, n);
    text[n] = '\0';
    *out = strtod(text, NULL);
    return isfinite(*out);
}

static bool read_bool(mg *M, json_reader *j, const char *key, bool *out)
{
    int c = json_peek(j);
    if (c == 'n') /* null: the default, false */
        return json_skip(j);
    if (c != 't' && c != 'f') {
        config_error(M, "\"%s\": \"%s\" is %s, not true or false", key, json_kind_name(c));
        return false;
    }
    *out = c == 't';
    return json_skip(j);
}

/* A pattern key surg matches as PEFT does with re.match(r"(.*\.)?(KEY)$"):
 * a module name whose '.' may stand for any character. */
static bool plain_key(const char *key)
{
    for (const char *p = key; *p; p++)
        if (!(*p == '.' || *p == '_' || *p == '-' || (*p >= '0' && *p <= '9') ||
              (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
            return false;
    return *key != '\0';
}

static bool key_matches(const char *key, const char *module)
{
    size_t k = strlen(key), n = strlen(module);
    if (k > n || (k < n && module[n - k - 1] != '.'))
        return false;
    for (size_t i = 0; i < k; i++)
        if (key[i] != '.' && key[i] != module[n - k + i])
            return false;
    return true;
}

/* rank_pattern or alpha_pattern: {"module": number, ...}, in file order. */
static bool read_patterns(mg *M, json_reader *j, const char *key, bool whole, mg_pattern **out,
                          size_t *n)
{
    lw *L = M->L;
    if (json_peek(j) == 'n')
        return json_skip(j);
    if (json_peek(j) != '{') {
        config_error(M, "\"%s\": \"%s\" is %s, not an object", key, json_kind_name(json_peek(j)));
        return false;
    }
    json_open(j, '{');
    size_t cap = 0;
    int more = json_first(j, '}');
    for (; more > 0; more = json_more(j, '}')) {
        const char *k;
        double v;
        if (!json_key(j, &k))
            return false;
        if (!plain_key(k)) {
            lw_error(L, M->cfg.at, "merge-config", NULL, 0,
                     "\"%s\": the %s key \"%s\" is a regular expression; merge-lora matches "
                     "module names (letters, digits, '_', '-', '.'), as PEFT matches them at "
                     "the end of a name",
                     M->cfg.path, key, k);
            return false;
        }
        if (!read_number(j, &v) || (whole && (v < 1 || v != floor(v) || v > (1 << 24)))) {
            lw_error(L, M->cfg.at, "merge-config", NULL, 0,
                     "\"%s\": %s[\"%s\"] is not %s", M->cfg.path, key, k,
                     whole ? "a whole number of at least 1" : "a number");
            return false;
        }
        if (*n == cap) {
            mg_pattern *p = ar_array(L->ar, cap = cap ? 2 * cap : 8, sizeof *p);
            if (!p)
                return !(L->nomem = true);
            if (*n)
                memcpy(p, *out, *n * sizeof *p);
            *out = p;
        }
        (*out)[(*n)++] = (mg_pattern){k, v};
    }
    return more == 0;
}

/* target_modules: a list of names, or a string (a regular expression, or
 * "all-linear"), or null. */
static bool read_targets(mg *M, json_reader *j)
{
    lw *L = M->L;
    int c = json_peek(j);
    if (c == 'n' || c == '"')
        return json_skip(j);
    if (c != '[') {
        config_error(M, "\"%s\": \"%s\" is %s, not a list of names", "target_modules",
                     json_kind_name(c));
        return false;
    }
    json_open(j, '[');
    size_t cap = 0;
    M->cfg.targets = ar_array(L->ar, 1, sizeof *M->cfg.targets);
    if (!M->cfg.targets)
        return !(L->nomem = true);
    int more = json_first(j, ']');
    for (; more > 0; more = json_more(j, ']')) {
        const char *t;
        if (json_peek(j) != '"' || !json_string(j, &t)) {
            config_error(M, "\"%s\": \"%s\" holds %s, not only names", "target_modules",
                         json_kind_name(json_peek(j)));
            return false;
        }
        if (M->cfg.n_targets == cap) {
            const char **p = ar_array(L->ar, cap = cap ? 2 * cap : 8, sizeof *p);
            if (!p)
                return !(L->nomem = true);
            if (M->cfg.n_targets)
                memcpy(p, M->cfg.targets, M->cfg.n_targets * sizeof *p);
            M->cfg.targets = p;
        }
        M->cfg.targets[M->cfg.n_targets++] = t;
    }
    return more == 0;
}

static bool read_member(mg *M, json_reader *j, const char *key)
{
    mg_config *c = &M->cfg;
    double v;
    if (strcmp(key, "peft_type") == 0) {
        const char *t;
        if (json_peek(j) == '"' && json_string(j, &t) && strcmp(t, "LORA") == 0)
            return true;
        lw_error(M->L, c->at, "merge-config", NULL, 0,
                 "\"%s\" is not a LoRA adapter's config: its peft_type is not \"LORA\"", c->path);
        return false;
    }
    if (strcmp(key, "r") == 0 || strcmp(key, "lora_alpha") == 0) {
        bool r = key[0] == 'r';
        if (!read_number(j, &v) || (r && (v < 1 || v != floor(v) || v > (1 << 24)))) {
            config_error(M, "\"%s\": \"%s\" is %s", key,
                         r ? "not a whole number of at least 1" : "not a number");
            return false;
        }
        if (r)
            c->r = (int64_t)v;
        else
            c->alpha = v;
        return true;
    }
    if (strcmp(key, "use_rslora") == 0)
        return read_bool(M, j, key, &c->rslora);
    if (strcmp(key, "fan_in_fan_out") == 0)
        return read_bool(M, j, key, &c->fan_in_fan_out);
    if (strcmp(key, "use_dora") == 0)
        return read_bool(M, j, key, &c->dora);
    if (strcmp(key, "target_modules") == 0)
        return read_targets(M, j);
    if (strcmp(key, "rank_pattern") == 0)
        return read_patterns(M, j, key, true, &c->ranks, &c->n_ranks);
    if (strcmp(key, "alpha_pattern") == 0)
        return read_patterns(M, j, key, false, &c->alphas, &c->n_alphas);
    return json_skip(j); /* the rest says how to train, not how to merge */
}

static bool read_config(mg *M)
{
    lw *L = M->L;
    mg_config *c = &M->cfg;
    c->r = 8; /* LoraConfig's defaults */
    c->alpha = 8;
    struct stat sb;
    if (stat(c->path, &sb) != 0) {
        const char *notes[] = {"PEFT's save_pretrained writes adapter_config.json beside "
                               "adapter_model.safetensors; name another file with "
                               "config \"FILE\" (from the recipe's directory)"};
        lw_error(L, c->at, "merge-config", notes, 1, "cannot read \"%s\": no such file",
                 c->path);
        return false;
    }
    size_t len;
    const char *text = lw_json_file(L, c->path, c->at, "merge-config", &len);
    if (!text)
        return false;
    json_reader j;
    json_init(&j, text, len, L->ar);
    if (json_peek(&j) != '{') {
        lw_error(L, c->at, "merge-config", NULL, 0, "\"%s\" is not a JSON object", c->path);
        return false;
    }
    json_open(&j, '{');
    int more = json_first(&j, '}');
    bool ok = true;
    for (; ok && more > 0; more = json_more(&j, '}')) {
        const char *key;
        ok = json_key(&j, &key) && read_member(M, &j, key);
    }
    if (ok && c->dora)
        lw_error(L, c->at, "merge-config", NULL, 0,
                 "\"%s\": the adapter is DoRA (use_dora: true); merge-lora merges LoRA's "
                 "W + scaling * (B @ A) only",
                 c->path);
    L->nomem |= j.failed && !ok && L->errors == M->before; /* the file was checked as JSON */
    return ok && !c->dora && L->errors == M->before;
}

/* The config's default place: adapter_config.json in the directory of the
 * input mounted under the adapter's prefix (or holding it). */
static const char *default_config(mg *M)
{
    lw *L = M->L;
    const surg_ckpt *best = NULL, *part;
    const char *prefix;
    size_t best_len = 0;
    for (size_t i = 0; L->input && (part = surg_ckpt_part_at(L->input, i, &prefix)) != NULL; i++) {
        size_t n = strlen(prefix);
        if (strncmp(M->adapter, prefix, n) == 0 && (!best || n > best_len)) {
            best = part;
            best_len = n;
        }
    }
    if (!best) {
        lw_error(L, M->s->keyword_span, "merge-config", NULL, 0,
                 "\"%s\" is under no input's prefix, so its adapter_config.json cannot be "
                 "found: name it with config \"FILE\"",
                 M->adapter);
        return NULL;
    }
    const char *path = surg_ckpt_path(best);
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return concat3(L, path, "/", 1, "adapter_config.json");
    const char *slash = strrchr(path, '/');
    return concat3(L, "", path, slash ? (size_t)(slash - path) + 1 : 0, "adapter_config.json");
}

/* The recipe's directory for a config it names, as json() reads files. */
static const char *recipe_relative(lw *L, const char *file)
{
    const char *slash = strrchr(L->src->path, '/');
    if (file[0] == '/' || !slash)
        return file;
    return concat3(L, "", L->src->path, (size_t)(slash - L->src->path) + 1, file);
}

static bool clauses(mg *M)
{
    lw *L = M->L;
    const ast_clause *into = NULL, *config = NULL;
    for (const ast_clause *c = M->s->clauses; c; c = c->next) {
        const ast_clause **slot = c->kind == CL_INTO ? &into : &config;
        if (*slot) {
            lw_error(L, c->span, "merge-clause", NULL, 0, "this merge-lora clause is given twice");
            return false;
        }
        *slot = c;
    }
    if (!into) {
        lw_error(L, M->s->span, "merge-clause", NULL, 0,
                 "merge-lora needs the base's prefix: merge-lora \"%s\" into \"PREFIX\"",
                 M->adapter);
        return false;
    }
    M->base = into->names->text;
    M->base_at = into->names->span;
    M->cfg.at = config ? config->names->span : M->s->keyword_span;
    M->cfg.path = config ? recipe_relative(L, config->names->text) : NULL;
    return !config || M->cfg.path != NULL;
}

/* ---- the values --------------------------------------------------------- */

static const cg_node *nd(mg *M, cg_id id) { return cg_get(&M->L->g, id); }

static cg_id make(mg *M, cg_op op, surg_dtype dt, uint32_t rank, const uint64_t *shape,
                  const cg_id *in, uint32_t n_in)
{
    cg_id *ins = ar_array(M->L->ar, n_in, sizeof *ins);
    if (!ins)
        return M->L->nomem = true, CG_NONE;
    memcpy(ins, in, n_in * sizeof *in);
    cg_node n = {.op = op, .dtype = dt, .rank = rank, .in = ins, .n_in = n_in,
                 .origin = M->s->span};
    return lw_node(M->L, n, shape);
}

static cg_id transpose2(mg *M, cg_id x)
{
    static const uint32_t swap[2] = {1, 0};
    const cg_node *n = nd(M, x);
    uint64_t shape[2] = {n->shape[1], n->shape[0]};
    cg_id id = make(M, OP_TRANSPOSE, n->dtype, 2, shape, &x, 1);
    if (id != CG_NONE)
        M->L->g.nodes[id].a.perm = swap;
    return id;
}

/* Where two floats meet, as arithmetic promotes them: the wider; f16 and
 * bf16 in f32. */
static surg_dtype meet(surg_dtype a, surg_dtype b)
{
    if (a == b)
        return a;
    unsigned wa = surg_dtype_bits(a), wb = surg_dtype_bits(b);
    return wa != wb ? (wa > wb ? a : b) : wa <= 16 ? SURG_F32 : SURG_F64;
}

static cg_id cast_to(mg *M, cg_id x, surg_dtype dt)
{
    const cg_node *n = nd(M, x);
    if (n->dtype == dt)
        return x;
    uint64_t shape[SURG_MAX_RANK];
    memcpy(shape, n->shape, n->rank * sizeof *shape);
    return make(M, OP_CAST, dt, n->rank, shape, &x, 1);
}

/* W + cast(product * scaling, dt) in W's dtype: PEFT's merge, whose delta
 * (computed in f32 on a CPU) takes lora_B's dtype before it is added. */
static cg_id add_delta(mg *M, cg_id w, cg_id product, double scaling, surg_dtype dt)
{
    const cg_node *p = nd(M, product);
    surg_dtype math = p->dtype;
    cg_node k = {.op = OP_CONST, .dtype = math, .origin = M->s->span};
    k.a.value = nm_round(math, scaling, NM_ROUND);
    cg_id kid = lw_node(M->L, k, NULL);
    if (kid == CG_NONE)
        return CG_NONE;
    uint64_t shape[SURG_MAX_RANK];
    uint32_t rank = p->rank;
    memcpy(shape, p->shape, rank * sizeof *shape);
    cg_id in[2] = {product, kid};
    cg_id d = make(M, OP_MUL, math, rank, shape, in, 2);
    if (d == CG_NONE || (d = cast_to(M, d, dt)) == CG_NONE)
        return CG_NONE;
    surg_dtype wdt = nd(M, w)->dtype;
    in[0] = w;
    in[1] = d;
    cg_id sum = make(M, OP_ADD, meet(wdt, dt), rank, shape, in, 2);
    return sum == CG_NONE ? CG_NONE : cast_to(M, sum, wdt);
}

/* B @ A in f32 (f64 when either is f64), or A^T @ B^T when the base stores
 * the weight transposed (fan_in_fan_out, an embedding): the same sums. */
static cg_id product(mg *M, cg_id a, cg_id b, bool transposed)
{
    surg_dtype math = nd(M, a)->dtype == SURG_F64 || nd(M, b)->dtype == SURG_F64 ? SURG_F64
                                                                                 : SURG_F32;
    cg_id l = transposed ? transpose2(M, a) : b, r = transposed ? transpose2(M, b) : a;
    if (l == CG_NONE || r == CG_NONE)
        return CG_NONE;
    cg_node n = {.op = OP_MATMUL};
    uint64_t shape[SURG_MAX_RANK];
    if (!lw_matmul_type(M->L, M->s->span, nd(M, l), nd(M, r), &n, shape) ||
        !lw_held_fits(M->L, M->adapter_at, nd(M, r), math == SURG_F64 ? 8 : 4,
                      "an adapter's factor"))
        return CG_NONE;
    cg_id in[2] = {l, r};
    cg_id id = make(M, OP_MATMUL, math, n.rank, shape, in, 2);
    if (id != CG_NONE)
        M->L->g.nodes[id].a.matmul = n.a.matmul;
    return id;
}

/* ---- the adapter's tensors ------------------------------------------------ */

static const char *entry_name(mg *M, size_t e) { return M->L->st.e[e].name; }
static cg_id entry_node(mg *M, size_t e) { return state_node(&M->L->st, e); }

static bool is_float(const cg_node *n)
{
    return surg_dtype_kind_of(n->dtype) == SURG_KIND_FLOAT && surg_dtype_bits(n->dtype) >= 16;
}

/* The base's tensor `module` + `suffix`, a stored tensor (a tied name has
 * no value of its own to merge into); STATE_NONE after an error. */
static size_t base_entry(mg *M, const char *module, size_t len, const char *suffix,
                         const char *from)
{
    lw *L = M->L;
    const char *name = concat3(L, M->base, module, len, suffix);
    size_t e = name ? state_find(&L->st, name) : STATE_NONE;
    if (!name)
        return STATE_NONE;
    if (e == STATE_NONE) {
        lw_error(L, M->base_at, "merge-base", NULL, 0,
                 "the adapter's \"%s\" has no base tensor \"%s\"", from, name);
        return STATE_NONE;
    }
    if (L->st.e[e].tied) {
        lw_error(L, M->base_at, "tied-value", NULL, 0,
                 "cannot merge into \"%s\": it is tied to \"%s\" (one tensor, stored once); "
                 "untie \"%s\" first to give it a value of its own",
                 name, L->st.e[e].tied, name);
        return STATE_NONE;
    }
    if (!is_float(cg_get(&L->g, L->st.e[e].node))) {
        lw_error(L, M->base_at, "merge-base", NULL, 0, "cannot merge into \"%s\": it is %s",
                 name, lw_type(cg_get(&L->g, L->st.e[e].node), 0));
        return STATE_NONE;
    }
    return e;
}

/* The rank and alpha the config gives a module. */
static void module_config(const mg_config *c, const char *module, int64_t *r, double *alpha)
{
    *r = c->r;
    *alpha = c->alpha;
    for (size_t i = 0; i < c->n_ranks; i++)
        if (key_matches(c->ranks[i].key, module)) {
            *r = (int64_t)c->ranks[i].value;
            break;
        }
    for (size_t i = 0; i < c->n_alphas; i++)
        if (key_matches(c->alphas[i].key, module)) {
            *alpha = c->alphas[i].value;
            break;
        }
}

static bool check_factors(mg *M, const mg_module *m, const cg_node *a, const cg_node *b)
{
    lw *L = M->L;
    const char *an = entry_name(M, m->a), *bn = entry_name(M, m->b);
    if (!is_float(a) || !is_float(b) || a->rank != 2 || b->rank != 2) {
        lw_error(L, M->adapter_at, "merge-adapter", NULL, 0,
                 "\"%s\" is %s and \"%s\" is %s: merge-lora merges 2-D float factors "
                 "(Linear, Conv1D and Embedding layers)",
                 an, lw_type(a, 0), bn, lw_type(b, 1));
        return false;
    }
    if (a->shape[0] != b->shape[1]) {
        lw_error(L, M->adapter_at, "merge-rank", NULL, 0,
                 "\"%s\" is %s and \"%s\" is %s: their ranks differ (%llu and %llu)", an,
                 lw_type(a, 0), bn, lw_type(b, 1), (unsigned long long)a->shape[0],
                 (unsigned long long)b->shape[1]);
        return false;
    }
    int64_t r;
    double alpha;
    module_config(&M->cfg, m->name, &r, &alpha);
    if ((uint64_t)r != a->shape[0]) {
        lw_error(L, M->adapter_at, "merge-rank", NULL, 0,
                 "\"%s\" has rank %llu (%s), but \"%s\" gives \"%s\" r = %lld", an,
                 (unsigned long long)a->shape[0], lw_type(a, 0), M->cfg.path, m->name,
                 (long long)r);
        return false;
    }
    return true;
}

/* One module: W + scaling * (B @ A), transposed for fan_in_fan_out and
 * embeddings; the bias of lora_B (lora_bias) into the base's bias. */
static bool merge_module(mg *M, const mg_module *m)
{
    lw *L = M->L;
    size_t len = strlen(m->name);
    cg_id a = entry_node(M, m->a), b = entry_node(M, m->b);
    if (!check_factors(M, m, nd(M, a), nd(M, b)))
        return false;
    size_t we = base_entry(M, m->name, len, ".weight", entry_name(M, m->a));
    if (we == STATE_NONE)
        return false;
    cg_id w = L->st.e[we].node;
    bool transposed = m->embedding || M->cfg.fan_in_fan_out;
    const cg_node *wn = nd(M, w), *an = nd(M, a), *bn = nd(M, b);
    uint64_t out = bn->shape[0], in = an->shape[1];
    uint64_t want[2] = {transposed ? in : out, transposed ? out : in};
    if (wn->rank != 2 || wn->shape[0] != want[0] || wn->shape[1] != want[1]) {
        char note[256];
        const char *notes[] = {note};
        bool flip = !m->embedding && wn->rank == 2 && wn->shape[0] == want[1] &&
                    wn->shape[1] == want[0];
        snprintf(note, sizeof note, "it would fit with fan_in_fan_out: %s in \"%s\"",
                 M->cfg.fan_in_fan_out ? "false" : "true", M->cfg.path);
        buf at;
        buf_init(&at);
        lw_type_text(&at, an->dtype, an->rank, an->shape);
        lw_error(L, M->base_at, "merge-shape", notes, flip,
                 "\"%s\" is %s, but its adapter makes [%llu, %llu] (lora_B %s, lora_A %s%s)",
                 entry_name(M, we), lw_type(wn, 0), (unsigned long long)want[0],
                 (unsigned long long)want[1], lw_type(bn, 1), at.failed ? "?" : at.data,
                 transposed ? ", transposed" : "");
        buf_free(&at);
        return false;
    }
    int64_t r;
    double alpha;
    module_config(&M->cfg, m->name, &r, &alpha);
    double scaling = M->cfg.rslora ? alpha / sqrt((double)r) : alpha / (double)r;
    surg_dtype dt = bn->dtype; /* PEFT's delta takes lora_B's dtype */
    cg_id p = product(M, a, b, transposed);
    cg_id merged = p == CG_NONE ? CG_NONE : add_delta(M, w, p, scaling, dt);
    if (merged == CG_NONE)
        return false;
    change_update(L, &M->c, we, merged);
    if (m->bias == STATE_NONE)
        return true;
    cg_id bb = entry_node(M, m->bias);
    size_t be = base_entry(M, m->name, len, ".bias", entry_name(M, m->bias));
    if (be == STATE_NONE)
        return false;
    const cg_node *bbn = nd(M, bb), *base_b = nd(M, L->st.e[be].node);
    if (bbn->rank != 1 || base_b->rank != 1 || bbn->shape[0] != base_b->shape[0] ||
        !is_float(bbn)) {
        lw_error(L, M->adapter_at, "merge-shape", NULL, 0, "\"%s\" is %s, but \"%s\" is %s",
                 entry_name(M, m->bias), lw_type(bbn, 0), entry_name(M, be), lw_type(base_b, 1));
        return false;
    }
    cg_id pb = cast_to(M, bb, bbn->dtype == SURG_F64 ? SURG_F64 : SURG_F32);
    cg_id bias = pb == CG_NONE ? CG_NONE : add_delta(M, L->st.e[be].node, pb, scaling, bbn->dtype);
    if (bias == CG_NONE)
        return false;
    change_update(L, &M->c, be, bias);
    return true;
}

/* A tensor of the adapter that is no LoRA factor: a module PEFT saved whole
 * (modules_to_save), which replaces the base's tensor of its name. */
static bool replace_module(mg *M, size_t e, const char *rest)
{
    lw *L = M->L;
    const char *name = entry_name(M, e);
    if (ends_with(rest, strlen(rest), ".lora_magnitude_vector")) {
        lw_error(L, M->adapter_at, "merge-adapter", NULL, 0,
                 "\"%s\" is DoRA's magnitude: merge-lora merges LoRA's W + scaling * (B @ A) "
                 "only",
                 name);
        return false;
    }
    if (strncmp(rest, PEFT_ROOT, strlen(PEFT_ROOT)) != 0) {
        lw_error(L, M->adapter_at, "merge-adapter", NULL, 0,
                 "\"%s\" is not named as PEFT saves an adapter (\"%s" PEFT_ROOT
                 "<module>.lora_A.weight\")",
                 name, M->adapter);
        return false;
    }
    const char *module = rest + strlen(PEFT_ROOT);
    const char *target = concat3(L, M->base, module, strlen(module), "");
    size_t t = target ? state_find(&L->st, target) : STATE_NONE;
    if (!target)
        return false;
    if (t == STATE_NONE) {
        lw_error(L, M->adapter_at, "merge-adapter", NULL, 0,
                 "\"%s\" is no LoRA factor (lora_A, lora_B) and the base has no \"%s\" for it "
                 "to replace (a module PEFT saves whole, modules_to_save)",
                 name, target);
        return false;
    }
    t = base_entry(M, module, strlen(module), "", name);
    if (t == STATE_NONE)
        return false;
    const cg_node *x = nd(M, entry_node(M, e)), *y = nd(M, L->st.e[t].node);
    if (x->rank != y->rank || memcmp(x->shape, y->shape, x->rank * sizeof *x->shape) != 0 ||
        !is_float(x)) {
        lw_error(L, M->adapter_at, "merge-shape", NULL, 0,
                 "\"%s\" (%s) cannot replace \"%s\" (%s): the shapes differ", name, lw_type(x, 0),
                 target, lw_type(y, 1));
        return false;
    }
    cg_id v = cast_to(M, entry_node(M, e), y->dtype);
    if (v == CG_NONE)
        return false;
    change_update(L, &M->c, t, v);
    return true;
}

/* The adapter's modules: each lora_A (or lora_embedding_A) with its B. */
static mg_module *find_modules(mg *M, size_t lo, size_t hi, uint8_t *used, size_t *n)
{
    lw *L = M->L;
    size_t plen = strlen(M->adapter), root = strlen(PEFT_ROOT);
    mg_module *mods = calloc(hi - lo + 1, sizeof *mods);
    if (!mods)
        return L->nomem = true, NULL;
    *n = 0;
    for (size_t e = lo; e < hi; e++) {
        const char *rest = entry_name(M, e) + plen;
        size_t len = strlen(rest);
        bool linear = ends_with(rest, len, ".lora_A.weight");
        bool emb = !linear && ends_with(rest, len, ".lora_embedding_A");
        if ((!linear && !emb) || strncmp(rest, PEFT_ROOT, root) != 0)
            continue;
        size_t mlen = len - root - strlen(linear ? ".lora_A.weight" : ".lora_embedding_A");
        const char *module = concat3(L, "", rest + root, mlen, "");
        const char *a_end = linear ? "A.weight" : "embedding_A";
        const char *bname = module ? concat3(L, M->adapter, rest, len - strlen(a_end),
                                             linear ? "B.weight" : "embedding_B")
                                   : NULL;
        const char *bias = bname && linear
                               ? concat3(L, M->adapter, rest, len - strlen(a_end), "B.bias")
                               : NULL;
        if (!bname || (linear && !bias))
            break;
        size_t b = state_find(&L->st, bname);
        if (b == STATE_NONE) {
            lw_error(L, M->adapter_at, "merge-adapter", NULL, 0,
                     "\"%s\" has no \"%s\" beside it", entry_name(M, e), bname);
            break;
        }
        size_t bi = bias ? state_find(&L->st, bias) : STATE_NONE;
        mods[(*n)++] = (mg_module){module, e, b, bi, emb};
        used[e - lo] = used[b - lo] = 1;
        if (bi != STATE_NONE)
            used[bi - lo] = 1;
    }
    return mods;
}

/* target_modules against the modules found: each name in it targets some
 * module, and every module is one it targets (as PEFT matches them: the
 * whole name, or its end after a '.'). */
static bool check_targets(mg *M, const mg_module *mods, size_t n)
{
    lw *L = M->L;
    const mg_config *c = &M->cfg;
    if (!c->targets)
        return true;
    for (size_t i = 0; i < n; i++) {
        bool found = false;
        for (size_t t = 0; t < c->n_targets && !found; t++) {
            size_t k = strlen(c->targets[t]), len = strlen(mods[i].name);
            found = strcmp(mods[i].name, c->targets[t]) == 0 ||
                    (len > k && mods[i].name[len - k - 1] == '.' &&
                     strcmp(mods[i].name + len - k, c->targets[t]) == 0);
        }
        if (!found) {
            lw_error(L, M->adapter_at, "merge-target", NULL, 0,
                     "the adapter has weights for \"%s\", which target_modules in \"%s\" "
                     "does not name",
                     mods[i].name, c->path);
            return false;
        }
    }
    for (size_t t = 0; t < c->n_targets; t++) {
        bool found = false;
        size_t k = strlen(c->targets[t]);
        for (size_t i = 0; i < n && !found; i++) {
            size_t len = strlen(mods[i].name);
            found = strcmp(mods[i].name, c->targets[t]) == 0 ||
                    (len > k && mods[i].name[len - k - 1] == '.' &&
                     strcmp(mods[i].name + len - k, c->targets[t]) == 0);
        }
        if (!found) {
            lw_error(L, c->at, "merge-target", NULL, 0,
                     "target_modules in \"%s\" names \"%s\", but the adapter has no weights "
                     "for it (no \"" PEFT_ROOT "…%s.lora_A.weight\" under \"%s\")",
                     c->path, c->targets[t], c->targets[t], M->adapter);
            return false;
        }
    }
    return true;
}

static void merge_all(mg *M, size_t lo, size_t hi)
{
    lw *L = M->L;
    uint8_t *used = calloc(hi - lo + 1, 1);
    size_t n = 0, plen = strlen(M->adapter);
    mg_module *mods = used ? find_modules(M, lo, hi, used, &n) : NULL;
    L->nomem |= !used;
    bool ok = mods && L->errors == M->before && check_targets(M, mods, n);
    for (size_t i = 0; ok && i < n; i++)
        ok = merge_module(M, &mods[i]);
    for (size_t e = lo; ok && e < hi; e++)
        if (!used[e - lo] && !L->st.e[e].tied)
            ok = replace_module(M, e, entry_name(M, e) + plen);
    if (ok && !n && L->errors == M->before)
        lw_error(L, M->adapter_at, "merge-adapter", NULL, 0,
                 "no LoRA factors under \"%s\": PEFT names them \"%s" PEFT_ROOT
                 "<module>.lora_A.weight\" and \"….lora_B.weight\"",
                 M->adapter, M->adapter);
    for (size_t e = lo; e < hi; e++) { /* the adapter is consumed */
        change_remove(&M->c, e);
        if (!L->st.e[e].tied)
            mr_dropped(L, &M->c, entry_name(M, e));
    }
    free(mods);
    free(used);
}

void lw_merge_lora(lw *L, const ast_stmt *s)
{
    mg M = {.L = L, .s = s, .adapter = s->patterns->text, .adapter_at = s->patterns->span,
            .before = L->errors};
    if (!clauses(&M))
        return;
    size_t lo, hi, blo, bhi;
    state_prefix_range(&L->st, M.adapter, strlen(M.adapter), &lo, &hi);
    state_prefix_range(&L->st, M.base, strlen(M.base), &blo, &bhi);
    if (lo == hi || blo == bhi) {
        char notes[2][256];
        const char *np[2] = {notes[0], notes[1]};
        const char *p = lo == hi ? M.adapter : M.base;
        size_t k = lw_mount_hints(L, p, notes, 2);
        lw_error(L, lo == hi ? M.adapter_at : M.base_at, "merge-none", np, k,
                 "no tensor's name starts with \"%s\"", p);
        return;
    }
    if (!M.cfg.path && !(M.cfg.path = default_config(&M)))
        return;
    if (!read_config(&M) || !change_init(L, &M.c))
        return;
    merge_all(&M, lo, hi);
    change_done(L, &M.c, M.before);
}
