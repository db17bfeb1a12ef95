/* cli.h: the pieces of the `surg` command, on the public API only. */
#ifndef SURG_CLI_H
#define SURG_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "surg/surg.h"

typedef enum diag_format {
    DIAG_HUMAN,  /* file:line:col: error: message, source line, caret */
    DIAG_JSON,   /* one JSON object per line */
    DIAG_GITHUB, /* ::error file=...,line=...::message */
} diag_format;

typedef struct diag_printer {
    FILE *out;
    diag_format format;
    bool color;
} diag_printer;

/* Text that may hold names from a hostile file: control characters (but
 * newlines, when kept) are written as \xNN, never sent to the terminal. */
void put_safe(FILE *out, const char *s, bool keep_newlines);

/* A JSON string: quotes, backslashes and control characters escaped, a
 * byte that is not UTF-8 written as U+FFFD. */
void put_json_str(FILE *out, const char *s);

/* A surg_sink whose callback prints to p->out. */
surg_sink diag_sink(diag_printer *p);
bool diag_parse_format(const char *name, diag_format *out);

/* Commands: argc/argv start at the command's name; return the exit code. */
int cmd_schema(int argc, char **argv, diag_printer *dp);
int cmd_fmt(int argc, char **argv, diag_printer *dp);
int cmd_check(int argc, char **argv, diag_printer *dp);

/* The arguments of check, plan and run. */
typedef struct recipe_args {
    const char *recipe, *from, *to, *out;
    const char *format; /* --format: of inputs whose name says nothing */
    /* --out-format: of every output (run); else --format, when it names a
     * format for an output whose name says none (out_format_soft) */
    const char *out_format;
    /* Named inputs instead of one: --in NAME=PATH, mounted under "NAME/",
     * in the order given (the names are copies: recipe_args_free). With
     * --params P and --state S they are the inputs "params" and
     * "opt_state", and `split` is set: each has an output of its own. */
    surg_input *ins;
    size_t n_ins;
    bool split;
    /* The outputs of a split run (OUT_P OUT_S after --params/--state), each
     * under its input's prefix; for check and plan their paths are NULL. */
    surg_ckpt_part outs[2];
    size_t n_outs;
    unsigned threads;
    unsigned writers;   /* --writers (run): 0 until defaulted to threads */
    surg_reflink reflink; /* --reflink (run) */
    uint64_t max_shard_size;
    bool graph, json, quiet;
    const char *part; /* --part I/N or auto (surg_part_parse) */
    /* which of these this command takes */
    bool allow_graph, allow_json, allow_shards, allow_quiet, allow_part;
    bool positional_io; /* RECIPE IN OUT, not --from */
} recipe_args;

/* Parse them (a->allow_* set first); -1 to go on, else the exit code.
 * Either way recipe_args_free(a) afterwards. */
int parse_recipe_args(const char *cmd, const char *help, int argc, char **argv,
                      recipe_args *a);
void recipe_args_free(recipe_args *a);

/* A recipe compiled against its input, checked against its target, and
 * (for plan and run) planned. */
typedef struct compiled {
    surg_recipe *recipe;
    surg_ckpt *from, *to;
    surg_program *prog;
    surg_plan *plan;
} compiled;

surg_status compile_recipe(const recipe_args *a, surg_sink *sink, compiled *c);
/* compile_recipe, then the plan for a->threads threads. */
surg_status plan_recipe(const recipe_args *a, surg_sink *sink, compiled *c);
void compiled_free(compiled *c);

int cmd_plan(int argc, char **argv, diag_printer *dp);
int cmd_run(int argc, char **argv, diag_printer *dp);
int cmd_index(int argc, char **argv, diag_printer *dp);
/* surg index: wrote out/model.safetensors.index.json (3 shards, 12 tensors, 9.4 MiB) */
void index_summary(const char *out, const surg_index_info *info);

/* An MPI run (cli/mpi.c, built with -DSURG_MPI=ON): the ranks of
 * `mpirun -n N surg run ... --part auto` agree on the plan, and rank 0
 * writes the index once every rank is done. Without MPI built in, `on`
 * stays false and the parts run on their own (surg index afterwards). */
typedef struct mpi_run {
    bool on;
    int rank, size;
} mpi_run;

/* Start MPI when the part came from an MPI launcher's variables (and MPI
 * is built in); false, with a message, when MPI disagrees with them. */
bool mpi_begin(mpi_run *m, const surg_part *part);
/* Collective: every rank gives whether it got here well; true when all
 * did. */
bool mpi_all_ok(mpi_run *m, bool ok);
/* Collective: rank 0's digest to every rank (`digest` in, rank 0's out in
 * `first`). */
void mpi_first_digest(mpi_run *m, const char *digest, char *first);
/* Collective: rank 0's status to every rank. */
int mpi_from_first(mpi_run *m, int v);
void mpi_end(mpi_run *m);

/* `surg lsp`: a Language Server over standard input and output (lsp.h). */
int cmd_lsp(int argc, char **argv, diag_printer *dp);


int cmd_diff(int argc, char **argv, diag_printer *dp);
int cmd_invert(int argc, char **argv, diag_printer *dp);
int cmd_suggest(int argc, char **argv, diag_printer *dp);

/* `surg diff`'s comparison of elements (diff_values.c). */
typedef struct dv_opts {
    bool tol;           /* NumPy's isclose (NaN equal to NaN); else the bits */
    double rtol, atol;
} dv_opts;

typedef struct dv_stats {
    uint64_t differ;  /* elements that differ (bytes, for dtypes below a byte) */
    uint64_t first;   /* the first of them, an element index; UINT64_MAX: none */
    double max_abs, max_rel; /* over elements neither of which is NaN */
    uint64_t max_ulp;
} dv_stats;

void dv_init(dv_stats *s);
void dv_merge(dv_stats *into, const dv_stats *from);
/* Whether a dtype's differences have sizes (abs, rel, ulp): not opaque. */
bool dv_has_sizes(surg_dtype dt);
/* n elements of a and b (n bytes below a byte), the first being element
 * `first` of the tensor; va and vb hold n doubles each. */
void dv_compare(surg_dtype dt, const void *a, const void *b, uint64_t first, size_t n,
                const dv_opts *o, double *va, double *vb, dv_stats *s);

/* What a new user needs to write a first recipe, written once for `surg
 * --help`, `surg run --help` and `surg help TOPIC`: the statements, the
 * patterns, an example. */
#define HELP_STATEMENTS                                                              \
    "A recipe is a text file of statements, one per line (or separated by ';');\n"   \
    "'#' starts a comment. Each statement sees the state the ones before it left.\n" \
    "\n"                                                                              \
    "  rename PATTERN -> TEMPLATE       move names ($1, $2 ... are the captures)\n"   \
    "  drop PATTERN                     remove tensors\n"                             \
    "  keep PATTERN, PATTERN ...        remove every tensor that no pattern matches\n"\
    "  fill PATTERN = INIT              new values: 0, ones, normal(0, 0.02),\n"      \
    "                                   he_uniform, glorot_uniform ...\n"             \
    "  fill \"NAME\" : f32[4, 4] = INIT   a new tensor\n"                             \
    "  map PATTERN = EXPR               each match becomes EXPR of x: x * 2,\n"       \
    "                                   transpose(x), cast(x, bf16), reshape(x, 4, -1)\n" \
    "  tie PATTERN = TEMPLATE           store the match once, as the other tensor\n"  \
    "  init-lora PATTERN rank N         add LoRA adapters (style flax or peft)\n"     \
    "  split, concat, stack, unstack PATTERN axis N -> TEMPLATE ...\n"                \
    "  expect PATTERN : f32[*, 4096]    fail unless each match has this type\n"       \
    "  seed N;  layout flax|torch;  mirror \"params/\" -> \"opt/mu/\", \"opt/nu/\"\n"
#define HELP_GLOBS                                                                   \
    "Patterns are quoted globs over whole names ('/' and '.' separate segments):\n"  \
    "  *      any characters inside a segment\n"                                      \
    "  **     any characters across segments (\"**/kernel\", \"model.**.weight\")\n"    \
    "  ?      one character inside a segment\n"                                       \
    "  {a,b}  one of the alternatives\n"                                              \
    "  [0-9]  one character of a class ([!x]: any but x)\n"                           \
    "Every wildcard is a capture: $1, $2 ... in a template, $0 the whole name.\n"    \
    "A pattern that matches no tensor is an error; write optional \"P\" where none\n" \
    "is fine.\n"
#define HELP_EXAMPLE                                                                 \
    "Example: a PyTorch Linear's weights as a Flax Dense's (port.surg):\n"            \
    "  rename \"**.weight\" -> \"$1/kernel\"\n"                                         \
    "  map \"**/kernel\" = transpose(x)\n"                                              \
    "  rename \"**.bias\" -> \"$1/bias\"\n"                                             \
    "Check it against the checkpoint's header (and the new model's), then run it:\n" \
    "  surg check port.surg --from model.pt --to flax_model.json\n"                  \
    "  surg run port.surg model.pt out.safetensors\n"
#define HELP_RECIPE HELP_STATEMENTS "\n" HELP_GLOBS "\n" HELP_EXAMPLE

/* Report a usage error for `cmd` and return 2. */
int usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
