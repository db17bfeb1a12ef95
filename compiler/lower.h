/* lower.h: what the files that lower a recipe share: the graph being built,
 * the abstract state, the settings statements change (seed, layout), and
 * what each file gives the others: errors at a span, templates, whole
 * numbers and type texts (lower.c); matching a pattern (match.c); the EXPR
 * of map (expr.c); the INIT of fill and init-lora (init.c); an input's
 * records (records.c); every statement (statements.c, one function per
 * kind, with structural.c and lora.c). */
#ifndef SURG_LOWER_H
#define SURG_LOWER_H

#include "grammar/ast.h"
#include "support/buf.h"
#include "compiler/glob.h"
#include "compiler/graph.h"
#include "compiler/state.h"

typedef enum lw_layout { LAYOUT_BY_NAME, LAYOUT_FLAX, LAYOUT_TORCH } lw_layout;

typedef struct lw {
    arena *ar;
    surg_sink *sink;
    const src_file *src;
    const surg_ckpt *input; /* the state's checkpoint: its mounted inputs (parts.c) */
    cg_graph g;
    state_table st;
    gl_scratch scratch;
    uint64_t seed;
    lw_layout layout;
    cg_lora *lora, **lora_tail; /* the LoRA records, in order, for the metadata */
    struct lw_path *paths; /* the path-keyed metadata's paths (paths.c), in order */
    size_t n_paths;
    bool values_match;     /* rename, drop, keep: a pattern that matches a recorded
                              value and no tensor is no error */
    src_span at;                /* the statement being lowered, for warnings */
    const ast_stmt *stmt;       /* that statement */
    src_span *broken;           /* statements left out for syntax errors, in order */
    size_t n_broken;
    state_gone *gone;           /* names that left the state, in order (gone.c) */
    size_t n_gone, cap_gone;
    bigbuf matches, caps; /* reused by every statement's lw_match_pattern */
    struct lw_mirror *mirrors; /* declared by `mirror` statements */
    struct lw_meta_state *meta; /* the output's metadata, as meta statements leave it */
    size_t n_mirrors;
    struct lw_lets *lets; /* the names `let` defined so far (let.c) */
    uint64_t let_stamp;   /* one per lowering of a map expression for a match */
    const char *let_note; /* while a name's value is lowered: where the map uses it */
    /* The naive way's bytes, tallied statement by statement. */
    uint64_t naive_dict, naive_peak, naive_generated, naive_computed;
    uint64_t guess_work; /* spent on "did you mean" (match.c), bounded */
    uint64_t hint_work;  /* spent on input prefixes a pattern lacks (parts.c), bounded */
    /* What templates may make in all, and have made, in bytes (lw_expand);
     * going past it is said once. */
    uint64_t names_budget, names_made;
    bool names_said;
    unsigned errors;
    bool nomem;
    bool too_deep; /* a statement went past CG_MAX_DEPTH: reported once */
    /* Called after each statement with the state's size before it (NULL:
     * none): how `surg invert` sees what a statement discarded. */
    void (*after)(void *user, const struct lw *L, const ast_stmt *s, size_t n_before,
                  size_t n_tied_before);
    void *after_user;
} lw;

/* One name a pattern matched: a stored tensor or a tied name. */
typedef struct lw_match {
    const char *name;
    cg_id node;      /* its value (a tied name's is its stored tensor's) */
    const char *tied; /* NULL, or the stored name a tied name is tied to */
    size_t entry;    /* index in the state when matched */
    gl_span *caps;   /* caps[0..n_captures] */
} lw_match;

/* The matches of one pattern, in the lowering's reused buffers: valid until
 * the next lw_match_pattern (keep's several patterns copy what they need). */
typedef struct lw_matches {
    gl_pattern pat;
    lw_match *m;
    size_t n;
} lw_matches;

void lw_error(lw *L, src_span at, const char *code, const char *const *notes,
              size_t n_notes, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

void lw_warning(lw *L, src_span at, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A path of the input's path-keyed metadata (a reader's paths_meta,
 * runtime/format.h): the values that are not tensors, or the order of the
 * input's tree, kept at their paths. A path that names a tensor follows it
 * (renames, ties; it goes when the tensor goes), one that does not is a
 * value: rename, drop and keep match it as they match names. */
typedef struct lw_path {
    const char *key;   /* the metadata entry */
    const char *path;  /* NULL: gone */
    const char *value;
    bool tensor;
} lw_path;

/* Read the path-keyed metadata of every part of `in` (paths.c). */
void lw_load_paths(lw *L, const surg_ckpt *in);
/* Whether pattern p matches a value's path. */
bool lw_paths_match(lw *L, const gl_pattern *p);
/* rename P -> T, applied to the values' paths. */
void lw_paths_rename(lw *L, const gl_pattern *p, const gl_template *t, src_span at);
/* drop P: the values P matches go; keep: those no pattern marked (kept[i]
 * for path i, set by lw_paths_mark) go. */
void lw_paths_drop(lw *L, const gl_pattern *p);
void lw_paths_mark(lw *L, const gl_pattern *p, uint8_t *kept);
void lw_paths_keep(lw *L, const uint8_t *kept);

/* The work the search for closest names may do (match.c, gone.c): cells
 * of the distance table, plus one per name looked at. Per pattern, and in
 * all for a recipe: past either, the search stops with the names found so
 * far, so a long pattern against a large state, or thousands of patterns
 * that match nothing, cost bounded time. */
#define LW_GUESS_WORK_PER_PATTERN ((uint64_t)1 << 26)
#define LW_GUESS_WORK_TOTAL ((uint64_t)1 << 28)

/* Match a pattern against the state. Zero matches is an error (with the
 * closest names as notes) unless the pattern is `optional`. Returns false
 * when an error was reported. */
bool lw_match_pattern(lw *L, const ast_string *pattern, lw_matches *out);
void lw_matches_free(lw_matches *m);

/* Compile a template that may use the captures of `pat` (and $i if asked). */
bool lw_template(lw *L, const ast_string *text, const gl_pattern *pat, bool allow_index,
                 gl_template *out);

/* The bounds on the names templates make: one name is at most
 * LW_MAX_NAME bytes (no output's header could hold more); all of them,
 * over a whole compilation, at most LW_NAME_BUDGET bytes and
 * LW_NAME_BUDGET_SCALE bytes for each byte of the input's names, each
 * name counting its length and one more for each piece of its template
 * (the work of making it). */
#define LW_MAX_NAME 100000000u
#define LW_NAME_BUDGET (256ull << 20)
#define LW_NAME_BUDGET_SCALE 8u

/* Set the budget from the names of the state as read from the input. */
void lw_name_budget(lw *L);

/* `t` expanded for the match `m` (its captures; `index` for $i), in the
 * program's arena. NULL after an error at `at` (a name past the bounds
 * above: said once per compilation) or when out of memory. */
const char *lw_expand(lw *L, const gl_template *t, src_span at, const lw_match *m,
                      uint64_t index);

/* A number written as a whole number (no '.', no exponent) in [lo, hi]. */
bool lw_integer(lw *L, const ast_number *n, const char *what, int64_t lo, int64_t hi,
                int64_t *out);

/* "f32[3, 4]" into b. */
void lw_type_text(buf *b, surg_dtype dt, uint32_t rank, const uint64_t *shape);
/* The same in a static buffer per slot (two slots, for messages). */
const char *lw_type(const cg_node *n, int slot);

/* A node with an owned copy of the shape. */
cg_id lw_node(lw *L, cg_node n, const uint64_t *shape);

/* ---- algebra.c: the types of broadcasting, matmul, axis reductions ---- */

/* The most one value held in memory by a run may take: a matmul's right
 * operand, a reduction's result over one axis. */
#define LW_HOLD_MAX (1ull << 30)

/* NumPy's broadcast of a and b into rank/shape (SURG_MAX_RANK room);
 * false after reporting the axis that does not broadcast. */
bool lw_broadcast_shape(lw *L, src_span at, const cg_node *a, const cg_node *b, uint32_t *rank,
                        uint64_t *shape);
/* a @ b: out's rank and a.matmul, the shape into `shape`; false after an
 * error naming both shapes. */
bool lw_matmul_type(lw *L, src_span at, const cg_node *a, const cg_node *b, cg_node *out,
                    uint64_t *shape);
/* A reduction of x over `axis` (negative: from the end): out's rank and
 * a.reduce, the shape into `shape`; false after an error. */
bool lw_reduce_type(lw *L, src_span at, const cg_node *x, int64_t axis, bool keepdims,
                    cg_node *out, uint64_t *shape);
/* Whether x, held whole at `elem` bytes a value, stays within LW_HOLD_MAX;
 * false after an error that calls it `what`. */
bool lw_held_fits(lw *L, src_span at, const cg_node *x, uint64_t elem, const char *what);

/* map EXPR for one match; CG_NONE after reporting an error. */
cg_id lw_map_expr(lw *L, const ast_stmt *s, const lw_match *m, const lw_matches *ms);
/* What a map does to an optimizer slot of the match (`slot`, of the match's
 * shape), given the map's `result` for the match: the layout calls around
 * the values (transpose, reshape, slice, pad, repeat, concat) happen to the
 * slot too, each value made from x of x's shape standing for the slot and
 * every other value, and pad's places, for zeros (new places have no
 * history); a value change leaves it (`slot` is returned). CG_NONE after
 * an error (mirror-map: the places cannot be told). */
cg_id lw_map_layout(lw *L, const ast_stmt *s, const lw_match *m, const lw_matches *ms,
                    cg_id result, cg_id slot);

/* An INIT expression for a tensor of dtype and shape named `key`, under the
 * given layout; CG_NONE after reporting an error. */
cg_id lw_init(lw *L, const ast_expr *e, surg_dtype dt, uint32_t rank, const uint64_t *shape,
              const char *key, lw_layout layout, src_span origin);

/* The input's records of an earlier run ("surg.ties", "surg.lora") as tied
 * names and LoRA records of the state (records.c). */
void lw_load_records(lw *L, const surg_ckpt *in);

/* A pattern that matches nothing may lack an input's prefix: up to `max`
 * notes "did you mean "NAME/PATTERN"?" for the mounted inputs (in the
 * order given) under which it would match (parts.c). */
size_t lw_mount_hints(lw *L, const char *text, char (*notes)[256], size_t max);
/* The result of several inputs going to one output: a warning for each
 * input whose prefix still holds names beside names outside every input's
 * (a forgotten drop of an adapter or of a model merged in). */
void lw_inputs_left(lw *L);
/* meta.c: the output's metadata as a state the `meta` statements edit:
 * it starts as the input's (surg's own records left out), read from `in`. */
void lw_meta_load(lw *L, const surg_ckpt *in);
void lw_meta_set(lw *L, const ast_stmt *s);
void lw_meta_drop(lw *L, const ast_stmt *s);
void lw_meta_keep(lw *L, const ast_stmt *s);
/* What the recipe changed: each key it set (its value) or dropped (NULL),
 * sorted by key; and the JSON files it read. In `ar`; false when out of
 * memory. */
bool lw_meta_finish(lw *L, arena *ar, surg_meta_entry **edits, size_t *n_edits,
                    const char ***files, size_t *n_files);
void lw_meta_free(lw *L);
/* A JSON file read at compile time as json() reads one (once per
 * compilation, at most 1 MiB, UTF-8 and strict JSON, among the files no
 * output may replace): `path` as it is. NULL after an error at `at` with
 * `code` (or out of memory); the text lives as long as the compilation. */
const char *lw_json_file(lw *L, const char *path, src_span at, const char *code, size_t *len);

/* ---- let.c: names of expressions ---- */

/* One `let NAME = EXPR`. Its value is lowered where a map uses the name,
 * once per match: `node` is the value for the lowering `stamp`. */
typedef struct lw_let {
    const char *name;
    const ast_expr *expr;
    src_span at;    /* the name in the let statement */
    uint32_t seq;   /* 1, 2, ... in recipe order: a value sees the names before it */
    unsigned depth; /* levels of the expression, those of the names it uses included */
    uint64_t stamp;
    cg_id node;
    /* Whether the value holds a position call, and whether it reads x
     * (expr.c), each worked out once: 0 not yet, 1 no, 2 yes. Names use
     * names, so a walk that did not stop at them could take exponential
     * time. */
    uint8_t moves, reads_x;
} lw_let;

/* The let statement: define a name (each name once; not x, true, false). */
void lw_let_define(lw *L, const ast_stmt *s);
/* The name as a value of scope `scope` sees it (a map: UINT32_MAX; a let's
 * value: its seq), or NULL. */
lw_let *lw_let_find(const lw *L, const char *name, uint32_t scope);
/* The name however defined, before or after (for messages), or NULL. */
const lw_let *lw_let_defined(const lw *L, const char *name);
/* The levels of e with the values of the names it uses (bounded: every
 * let's depth was checked). */
unsigned lw_let_depth(const lw *L, const ast_expr *e, uint32_t scope);

/* ---- gone.c: where names went ---- */

/* A name the statement being lowered takes away (to: where a rename takes
 * it, or NULL), appended to L->gone; at most LW_GONE_MAX in all, the rest
 * unrecorded. */
#define LW_GONE_MAX ((size_t)1 << 20)
void lw_gone_add(lw *L, const char *name, const char *to);
/* Up to `max` notes, in L->ar, for a pattern that matches nothing but
 * matched names an earlier statement took away: "\"a/k\" was renamed to
 * \"b/k\" on line 1". Bounded by the work of "did you mean". */
size_t lw_gone_notes(lw *L, const gl_pattern *p, const char **notes, size_t max);
/* The latest departure of each name, sorted by name, in `ar`. */
bool lw_gone_finish(lw *L, arena *ar, state_gone **out, size_t *n);
/* The departure of `name` in a list lw_gone_finish made, or NULL. */
const state_gone *lw_gone_find(const state_gone *v, size_t n, const char *name);
/* "\"a/k\" was renamed to \"b/k\" on line 1" (or dropped, split, ...) into b. */
void lw_gone_text(buf *b, const src_file *src, const state_gone *g);

/* Lower every statement of the recipe. */
void lw_statements(lw *L, const ast_recipe *r);

/* How many parameters an initializer takes (normal: mean and std), as
 * init.c binds them. */
int lw_init_n_params(cg_init_kind k);

#endif
