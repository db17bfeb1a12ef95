/* surg.h: the one public API of libsurg — checkpoints, their abstract state,
 * diagnostics. The `surg` command, the tests and the fuzzers use only this.
 *
 * Ownership, stated once: every pointer the library hands out (names, shapes,
 * metadata strings, tensor tables) belongs to the object it came from and
 * stays valid until that object is closed. The library never prints and never
 * exits; every problem is reported through a surg_sink. */
#ifndef SURG_SURG_H
#define SURG_SURG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SURG_VERSION "0.1.0"

/* Every function below is the shared library's interface (libsurg.so, built
 * with hidden visibility): only what is marked SURG_API is exported. */
#if defined(__GNUC__) || defined(__clang__)
#define SURG_API __attribute__((visibility("default")))
#else
#define SURG_API
#endif

/* SURG_VERSION of the library actually loaded, which may differ from the
 * header a program was built with (the Python package checks it). */
SURG_API const char *surg_version(void);

/* ---- status ---------------------------------------------------------- */

typedef enum surg_status {
    SURG_OK = 0,
    SURG_EINVALID = 1, /* the recipe or a checkpoint is wrong: exit 1 */
    SURG_EIO = 2,      /* a file could not be read or written: exit 2 */
    SURG_ENOMEM = 3,   /* out of memory: exit 2 */
    SURG_EUSAGE = 4,   /* the caller asked for something impossible: exit 2 */
} surg_status;

/* The exit status SPEC §6 gives for a status. */
SURG_API int surg_exit_code(surg_status st);

/* ---- diagnostics ----------------------------------------------------- */

typedef enum surg_severity {
    SURG_ERROR,
    SURG_WARNING,
    SURG_NOTE,
} surg_severity;

/* One diagnostic. `line` is 0 when the problem has no place in a text file
 * (a binary checkpoint); then `col`, `end_line`, `end_col` and `source_line`
 * are 0 or NULL too. Columns count characters from 1. `code` is a short
 * stable identifier ("st-header-too-large") that tests and tools can match. */
typedef struct surg_diag {
    surg_severity severity;
    const char *code;
    const char *file;
    uint32_t line, col, end_line, end_col;
    const char *source_line;
    const char *message;
    const char *const *notes;
    size_t n_notes;
} surg_diag;

typedef void (*surg_diag_fn)(const surg_diag *diag, void *user);

/* A diagnostic as one line of JSON, without the newline: "file", then
 * "line", "column", "end_line", "end_column" when it has a place, then
 * "severity", "code", "message" and "notes". Valid JSON whatever its text
 * holds: control characters (DEL and U+0080-U+009F too) and the line
 * separators U+2028 and U+2029 are \u escapes,
 * and a byte that is not UTF-8 (a file name can be any bytes) is \ufffd.
 * The caller frees; NULL when out of memory. */
SURG_API char *surg_diag_json(const surg_diag *d);

/* A diagnostic as the command prints it, as a C compiler does, ending with
 * a newline: "file:line:col: error: message", then the source line with a
 * caret under the span (a window of a very long line), then "note: ..."
 * lines; in ANSI colors when `color` is non-zero. Control characters of
 * names and messages show as \xNN. The caller frees; NULL when out of
 * memory. */
SURG_API char *surg_diag_text(const surg_diag *d, int color);

/* Where diagnostics go. `errors` and `warnings` count what was reported. */
typedef struct surg_sink {
    surg_diag_fn fn; /* may be NULL: diagnostics are only counted */
    void *user;
    unsigned errors;
    unsigned warnings;
} surg_sink;

/* ---- dtypes ---------------------------------------------------------- */

/* X(ENUM, safetensors name, recipe name, bits per element, kind).
 * Listed in the safetensors reference's alignment order: a writer sorts by
 * this order, largest first, so every tensor lands aligned. */
#define SURG_DTYPES(X)                                   \
    X(BOOL, "BOOL", "bool", 8, SURG_KIND_BOOL)           \
    X(F4, "F4", "f4", 4, SURG_KIND_OPAQUE)               \
    X(F6_E2M3, "F6_E2M3", "f6e2m3", 6, SURG_KIND_OPAQUE) \
    X(F6_E3M2, "F6_E3M2", "f6e3m2", 6, SURG_KIND_OPAQUE) \
    X(U8, "U8", "u8", 8, SURG_KIND_UINT)                 \
    X(I8, "I8", "i8", 8, SURG_KIND_INT)                  \
    X(F8_E5M2, "F8_E5M2", "f8e5m2", 8, SURG_KIND_FLOAT)  \
    X(F8_E4M3, "F8_E4M3", "f8e4m3", 8, SURG_KIND_FLOAT)  \
    X(F8_E8M0, "F8_E8M0", "f8e8m0", 8, SURG_KIND_OPAQUE) \
    X(F8_E4M3FNUZ, "F8_E4M3FNUZ", "f8e4m3fnuz", 8, SURG_KIND_OPAQUE) \
    X(F8_E5M2FNUZ, "F8_E5M2FNUZ", "f8e5m2fnuz", 8, SURG_KIND_OPAQUE) \
    X(I16, "I16", "i16", 16, SURG_KIND_INT)              \
    X(U16, "U16", "u16", 16, SURG_KIND_UINT)             \
    X(F16, "F16", "f16", 16, SURG_KIND_FLOAT)            \
    X(BF16, "BF16", "bf16", 16, SURG_KIND_FLOAT)         \
    X(I32, "I32", "i32", 32, SURG_KIND_INT)              \
    X(U32, "U32", "u32", 32, SURG_KIND_UINT)             \
    X(F32, "F32", "f32", 32, SURG_KIND_FLOAT)            \
    X(C64, "C64", "c64", 64, SURG_KIND_OPAQUE)           \
    X(F64, "F64", "f64", 64, SURG_KIND_FLOAT)            \
    X(I64, "I64", "i64", 64, SURG_KIND_INT)              \
    X(U64, "U64", "u64", 64, SURG_KIND_UINT)

typedef enum surg_dtype {
#define SURG_X_ENUM(e, st, rc, bits, kind) SURG_##e,
    SURG_DTYPES(SURG_X_ENUM)
#undef SURG_X_ENUM
    SURG_DTYPE_COUNT
} surg_dtype;

/* What the runtime can do with a dtype's values. OPAQUE values are carried
 * (renamed, dropped, tied, copied) but never computed on. */
typedef enum surg_dtype_kind {
    SURG_KIND_BOOL,
    SURG_KIND_UINT,
    SURG_KIND_INT,
    SURG_KIND_FLOAT,
    SURG_KIND_OPAQUE,
} surg_dtype_kind;

SURG_API const char *surg_dtype_st_name(surg_dtype dt);     /* "F32" */
SURG_API const char *surg_dtype_recipe_name(surg_dtype dt); /* "f32" */
SURG_API unsigned surg_dtype_bits(surg_dtype dt);
SURG_API surg_dtype_kind surg_dtype_kind_of(surg_dtype dt);
/* Both look a name up exactly; they return SURG_DTYPE_COUNT when unknown. */
SURG_API surg_dtype surg_dtype_from_st_name(const char *name);
SURG_API surg_dtype surg_dtype_from_recipe_name(const char *name);

/* ---- checkpoints and their abstract state ---------------------------- */

#define SURG_MAX_RANK 64

typedef struct surg_tensor_info {
    const char *name;
    surg_dtype dtype;
    uint32_t rank;
    const uint64_t *shape; /* rank entries */
    uint64_t nelems;
    uint64_t nbytes;
} surg_tensor_info;

typedef struct surg_meta_entry {
    const char *key;
    const char *value;
} surg_meta_entry;

typedef enum surg_ckpt_kind {
    SURG_CKPT_SAFETENSORS, /* one .safetensors file */
    SURG_CKPT_SHARDED,     /* an index.json and its shards */
    SURG_CKPT_SCHEMA,      /* a schema file: names, dtypes and shapes, no data */
    SURG_CKPT_NPZ,         /* a NumPy .npz archive */
    SURG_CKPT_NPY,         /* one NumPy .npy array */
    SURG_CKPT_TORCH,       /* a torch.save file (.pt, .pth, .bin) */
    SURG_CKPT_MSGPACK,     /* a Flax msgpack file (flax.serialization) */
    SURG_CKPT_ORBAX,       /* a directory Orbax wrote (its items, OCDBT or zarr arrays) */
    SURG_CKPT_PEFT,        /* a PEFT adapter directory (adapter_model.safetensors) */
} surg_ckpt_kind;

typedef struct surg_ckpt surg_ckpt;

/* Open a checkpoint by its path; the format follows the name: `*.index.json`
 * is a sharded checkpoint (of safetensors or of torch.save shards), a
 * directory the first it holds of `model.safetensors.index.json`,
 * `model.safetensors`, `pytorch_model.bin.index.json`, `pytorch_model.bin`;
 * `*.safetensors` one file, `*.npz` a NumPy archive (each `NAME.npy` in it a
 * tensor NAME), `*.npy` one NumPy array (named after the file), `*.pt`,
 * `*.pth`, `*.bin` (and `*.pth.tar`) a torch.save file (its pickle read as
 * data, never run), any other `*.json` a schema. Only headers are read:
 * tensor data is never touched until surg_ckpt_data() or surg_run() asks for
 * it. Every header is fully validated before anything in it is trusted. */
SURG_API surg_status surg_ckpt_open(const char *path, surg_sink *sink, surg_ckpt **out);
/* The same, with the format of a file whose name says nothing (and whose
 * content is not recognized): "safetensors", "npz", "npy", "torch",
 * "msgpack" or "schema"; NULL: none. A name that says is followed.
 * "orbax" opens a directory as an Orbax checkpoint, as one that Orbax's
 * files mark opens anyway: a PyTree item (`_METADATA`, its arrays in OCDBT
 * or zarr directories, or an aggregate `checkpoint` file), or a step whose
 * items are such directories, each item's name the first segment of its
 * tensors' names (docs/formats.md). */
SURG_API surg_status surg_ckpt_open_as(const char *path, const char *format, surg_sink *sink,
                                       surg_ckpt **out);
/* The format a path's name says ("safetensors", "msgpack", ...: what
 * --format calls it), or NULL when its name says none. */
SURG_API const char *surg_format_by_name(const char *path);
SURG_API void surg_ckpt_close(surg_ckpt *ck);

/* A checkpoint made of several, each under its own prefix: the tensors of
 * `path` appear as `prefix` + their names (parameters under "params/" and
 * optimizer state under "opt_state/", as Flax flattens a train state). The
 * prefixes end with '/' and none starts another. The result is sharded, or
 * a schema when any part is one; its tensors are in byte order of names
 * as always, its metadata is the first part's (each part keeps its own:
 * surg_ckpt_mounted), its recorded ties every part's under its prefix.
 * Every part is opened, so every broken one is reported. */
typedef struct surg_ckpt_part {
    const char *prefix;
    const char *path;
} surg_ckpt_part;

SURG_API surg_status surg_ckpt_open_parts(const surg_ckpt_part *parts, size_t n, surg_sink *sink,
                                          surg_ckpt **out);

/* Named inputs (`surg run RECIPE --in NAME=PATH ... OUT`): the checkpoint
 * of parts whose prefixes are the names followed by '/', so that input
 * "base"'s tensor "w" is "base/w". A name is one name segment: 1 to
 * SURG_INPUT_NAME_MAX ASCII letters, digits, '_' and '-', not starting
 * with '-' ("input-name"); no name may be given twice ("input-twice"); at
 * least one input ("input-none"): each SURG_EUSAGE. `format` is as
 * surg_ckpt_open_as's (NULL: the name says), so inputs of different
 * formats mix. The first input is the primary one: its metadata is the
 * whole's (what a single output carries). */
typedef struct surg_input {
    const char *name;
    const char *path;
    const char *format;
} surg_input;

#define SURG_INPUT_NAME_MAX 64

SURG_API surg_status surg_ckpt_open_inputs(const surg_input *inputs, size_t n, surg_sink *sink,
                                           surg_ckpt **out);
/* Whether `name` may name an input (the rule above): 1 or 0. */
SURG_API int surg_input_name_ok(const char *name);

/* The part mounted under `prefix` (its own metadata, its path), or `ck`
 * itself when it has no such part. */
SURG_API const surg_ckpt *surg_ckpt_mounted(const surg_ckpt *ck, const char *prefix);
/* The i-th part, in the order the parts were given, and its prefix; a
 * checkpoint not made of parts is its own only part, under "". NULL past
 * the end. */
SURG_API const surg_ckpt *surg_ckpt_part_at(const surg_ckpt *ck, size_t i, const char **prefix);

SURG_API surg_ckpt_kind surg_ckpt_kind_of(const surg_ckpt *ck);
SURG_API const char *surg_ckpt_path(const surg_ckpt *ck);
/* Tensors in byte order of their names. */
SURG_API size_t surg_ckpt_count(const surg_ckpt *ck);
SURG_API const surg_tensor_info *surg_ckpt_tensor(const surg_ckpt *ck, size_t i);
/* Index of a tensor by name, or (size_t)-1. */
SURG_API size_t surg_ckpt_find(const surg_ckpt *ck, const char *name);
/* `__metadata__`, sorted by key. */
SURG_API size_t surg_ckpt_meta_count(const surg_ckpt *ck);
SURG_API const surg_meta_entry *surg_ckpt_meta(const surg_ckpt *ck, size_t i);
/* Names recorded as tied in the `surg.ties` metadata (written by surg, or
 * found by the PyTorch reader for tensors that are one view): each entry's
 * key is a name that is no tensor here, its value the tensor it is stored
 * as; sorted by key. A record that is not an object of names is ignored with
 * a warning when the checkpoint is opened. */
SURG_API size_t surg_ckpt_tie_count(const surg_ckpt *ck);
SURG_API const surg_meta_entry *surg_ckpt_tie(const surg_ckpt *ck, size_t i);

/* Whether tensor i's file does not hold its plain bytes (a NumPy array that
 * is deflated, big-endian or in Fortran order), so reading it first decodes
 * it into a scratch file. */
SURG_API int surg_ckpt_decoded(const surg_ckpt *ck, size_t i);

/* The bytes of tensor i (little-endian, C order), mapped read-only from the
 * file. A NumPy array that is deflated, big-endian or in Fortran order is
 * first decoded into an unlinked scratch file in $TMPDIR (or /tmp). A schema
 * has no data: SURG_EUSAGE. Several threads may call it at once on one
 * checkpoint (a tensor is decoded once, one at a time); surg_run and
 * surg_ckpt_write on the checkpoint must not run meanwhile. */
SURG_API surg_status surg_ckpt_data(surg_ckpt *ck, size_t i, surg_sink *sink,
                                    const void **data);

/* Copy `len` bytes of tensor i's data (as surg_ckpt_data gives them),
 * starting `offset` bytes in, into `buf`, by reading the file (pread): no
 * mapping, so memory stays what the caller's buffer is. A decoded tensor is
 * decoded first (once). A range past the tensor's end, or a schema:
 * SURG_EUSAGE ("ck-no-data"); a file that shrank: SURG_EIO. Safe from
 * several threads at once, as surg_ckpt_data. */
SURG_API surg_status surg_ckpt_read(surg_ckpt *ck, size_t i, uint64_t offset, void *buf, size_t len,
                                    surg_sink *sink);

/* n packed elements of a dtype of kind BOOL, UINT, INT or FLOAT (whole
 * bytes), starting at element `first`, as doubles (64-bit integers rounded
 * to nearest). Other dtypes: nothing is written. */
SURG_API void surg_values_f64(surg_dtype dt, const void *data, uint64_t first, size_t n,
                             double *out);

/* ---- recipes --------------------------------------------------------- */

typedef struct surg_recipe surg_recipe;

/* Parse a recipe's text; `path` names it in diagnostics. Every syntax error
 * of the text is reported, and then the result is SURG_EINVALID and *out is
 * NULL. */
SURG_API surg_status surg_recipe_parse(const char *path, const char *text, size_t len,
                                       surg_sink *sink, surg_recipe **out);
/* The same, reading the file (a regular file, or standard input for "-", as
 * surg_recipe_read). */
SURG_API surg_status surg_recipe_load(const char *path, surg_sink *sink, surg_recipe **out);
/* The same, but after syntax errors (SURG_EINVALID, each reported) *out
 * still holds the statements that parsed, each statement with an error
 * left out, so that compiling it reports the rest of the recipe's errors
 * too; the caller must not use such a recipe for anything but that. *out
 * is NULL only when no text could be parsed (unreadable, too large, not
 * UTF-8, a NUL byte, out of memory). */
SURG_API surg_status surg_recipe_load_partial(const char *path, surg_sink *sink,
                                               surg_recipe **out);
SURG_API surg_status surg_recipe_parse_partial(const char *path, const char *text, size_t len,
                                               surg_sink *sink, surg_recipe **out);
/* The most bytes a recipe may have. */
#define SURG_RECIPE_MAX (64u << 20)
/* A recipe's text, NUL-terminated, in memory the caller frees. `path` names
 * a regular file (a FIFO, device, socket or directory is refused without
 * being opened for reading: "not-regular"), or is "-" for standard input,
 * which may be anything readable (a pipe, a terminal) and is read to its end.
 * Either way at most SURG_RECIPE_MAX bytes are read: a longer file or
 * stream is refused ("too-large") as soon as it is seen to be longer. */
SURG_API surg_status surg_recipe_read(const char *path, surg_sink *sink, char **text, size_t *len);
SURG_API void surg_recipe_free(surg_recipe *r);

/* The recipe in canonical layout (`surg fmt`), and its syntax tree as
 * S-expressions; strings the caller frees, NULL when out of memory. */
SURG_API char *surg_recipe_format(const surg_recipe *r);
SURG_API char *surg_recipe_dump(const surg_recipe *r);

/* ---- for editors: tokens, keywords, patterns -------------------------- */

/* What the scanner makes of a recipe's text, token by token, for
 * highlighting and for editors (`surg lsp`): exactly the tokens the parser
 * reads, and the comments it keeps. */
typedef enum surg_token_kind {
    SURG_TOK_KEYWORD,   /* a statement's or clause's word: rename, optional, rank, ... */
    SURG_TOK_WORD,      /* any other word: x, f32, normal, flax */
    SURG_TOK_NUMBER,    /* 3, 0.5, .5, 1e-3 */
    SURG_TOK_STRING,    /* with its quotes; an unterminated one ends at its line's end */
    SURG_TOK_OPERATOR,  /* -> ... <= >= == != = : , * / + - < > @ ( ) [ ] */
    SURG_TOK_SEPARATOR, /* ';', or a newline that ends a statement */
    SURG_TOK_COMMENT,   /* from '#' to the end of the line */
    SURG_TOK_OTHER,     /* a glob character outside a string (? { } ! $ .), a stray byte */
} surg_token_kind;

typedef struct surg_token {
    surg_token_kind kind;
    uint32_t start, end; /* byte offsets in the text, end exclusive; never empty */
} surg_token;

/* Every token of `text` (len bytes, at most SURG_RECIPE_MAX), in order, in
 * an array the caller frees. Any text has tokens, errors or not: a stray
 * byte is SURG_TOK_OTHER. SURG_ENOMEM or SURG_EUSAGE (too long). */
SURG_API surg_status surg_recipe_tokens(const char *text, size_t len, surg_token **out, size_t *n);

/* The i-th word that is a keyword of recipes (NULL past the end), and
 * whether it begins a statement. `factored` and `min` are keywords only
 * in a mirror statement; `let` only where a statement begins. */
SURG_API const char *surg_recipe_keyword(size_t i, int *starts_statement);

/* The pattern whose text holds byte `offset` (a quoted string, or the
 * unquoted text where a pattern belongs, that a statement matches against
 * tensor names: not mirror's prefixes, fill's new name or meta's keys).
 * Returns 1 and fills *out, or 0 when there is none there. */
typedef struct surg_pattern_ref {
    const char *text;    /* decoded; owned by the recipe */
    uint32_t start, end; /* the pattern's bytes, quotes (and `optional`) included */
    uint32_t stmt_start; /* where its statement starts */
    int optional;
} surg_pattern_ref;

SURG_API int surg_recipe_pattern_at(const surg_recipe *r, size_t offset, surg_pattern_ref *out);

/* A pattern of SPEC §3.1, compiled once and matched against names. On a
 * malformed pattern: SURG_EINVALID with the reason in err (err_cap bytes). */
typedef struct surg_pattern surg_pattern;

SURG_API surg_status surg_pattern_compile(const char *text, surg_pattern **out, char *err,
                                          size_t err_cap);
/* 1 when the whole name matches, 0 when not, -1 when out of memory. */
SURG_API int surg_pattern_match(surg_pattern *p, const char *name);
SURG_API void surg_pattern_free(surg_pattern *p);

/* ---- compiling ------------------------------------------------------- */

typedef struct surg_program surg_program;

/* Compile a recipe against the abstract state of `from` (names, dtypes and
 * shapes; its data is never read). Every error is reported; then the result
 * is SURG_EINVALID and *out is NULL. The program borrows `from`, which must
 * stay open while the program is used. */
SURG_API surg_status surg_compile(const surg_recipe *r, surg_ckpt *from, surg_sink *sink,
                                  surg_program **out);
SURG_API void surg_program_free(surg_program *p);

/* The inverse of a recipe (`surg invert`): a recipe that takes the result of
 * `r` on `from`'s abstract state back to that state, byte for byte, in
 * canonical layout (as surg_recipe_format), in *out, which the caller frees.
 * Each statement with no inverse (drop, fill, a lossy cast, ...) is an
 * error at its line, code "invert", with a note on what would make it
 * invertible; then the result is SURG_EINVALID and *out is NULL. */
SURG_API surg_status surg_invert(const surg_recipe *r, surg_ckpt *from, surg_sink *sink,
                                 char **out);

/* What surg_suggest drafted, tensor by tensor. */
typedef struct surg_suggest_stats {
    size_t old_tensors, new_tensors;
    size_t same;       /* old tensors of the same name, dtype and shape in the new state */
    size_t renamed;    /* old tensors renamed (transposed or not) */
    size_t transposed; /* old tensors transposed (renamed or not) */
    size_t stacked;    /* old tensors stacked into new ones */
    size_t unstacked;  /* old tensors cut into new ones */
    size_t unmapped_old, unmapped_new; /* left as comments */
    int checked;       /* 1: nothing is left and the draft passes surg check */
} surg_suggest_stats;

/* A recipe drafted from two abstract states (`surg suggest`): a recipe that
 * takes `from`'s tensors to `to`'s, in canonical layout, in *out, which the
 * caller frees. Tensors pair by type (dtype and dimensions, in any order)
 * and the tokens of their names; a PyTorch `weight` that becomes a Flax
 * `kernel` is transposed as the frameworks lay them out; Flax nn.scan's
 * stacked layers (`layers_0`..`layers_N-1` and `layers`) stack or unstack.
 * Names that move together are one statement, with `*` for the numbers and
 * `{a,b}` for the words that differ. What it cannot pair, or could pair
 * several ways, is a comment naming the candidates. When everything is
 * paired the draft compiles against `from` and matches `to` (stats->checked);
 * a draft that would not is written one tensor at a time, and if even that
 * fails a warning says so. Time and memory are bounded for any states.
 * `stats` may be NULL. SURG_ENOMEM is the only failure. */
SURG_API surg_status surg_suggest(surg_ckpt *from, surg_ckpt *to, surg_sink *sink, char **out,
                                  surg_suggest_stats *stats);

/* Where the result will be written, when that is known before compiling
 * (`surg run` knows OUT). Every name of the result, tied names included,
 * must then be one its output's format holds, and one surg reads back: a
 * name of more than 65,531 bytes cannot go to an `.npz` (its zip entry
 * `NAME.npy` would pass 65,535). Each error points at the statement that
 * gave the name (file:line:col), or at the input whose name it is. Names no
 * format holds (empty, not UTF-8, `__metadata__`) are errors in every
 * compile, at the statement that makes them. */
typedef struct surg_compile_opts {
    const char *out_path; /* one output: its format follows its name, as surg_run's */
    /* Or several, as surg_run_opts.outputs: each name under an output's
     * prefix is written there with the prefix taken off (so "params/" alone
     * would be an empty name). A NULL path: that output's format is not
     * known, only the rules every format shares apply. */
    const surg_ckpt_part *outputs;
    size_t n_outputs;
    /* The format of every output, as surg_run_opts.out_format (NULL: each
     * output's name says). */
    const char *out_format;
    /* A target's abstract state (`--to`), or NULL: the result is compared
     * with it as surg_program_check_target does, each problem that a
     * statement caused reported at that statement. */
    const surg_ckpt *target;
} surg_compile_opts;

/* surg_compile with what is known of the output; `opts` may be NULL (then
 * it is surg_compile). */
SURG_API surg_status surg_compile_for(const surg_recipe *r, surg_ckpt *from,
                                      const surg_compile_opts *opts, surg_sink *sink,
                                      surg_program **out);

/* The tensors of the result, in byte order of names. */
SURG_API size_t surg_program_output_count(const surg_program *p);
SURG_API const surg_tensor_info *surg_program_output(const surg_program *p, size_t i);
/* Tied names of the result: key is the tied name, value the tensor it is
 * stored as. */
SURG_API size_t surg_program_alias_count(const surg_program *p);
SURG_API const surg_meta_entry *surg_program_alias(const surg_program *p, size_t i);

/* Compare the result with a target's abstract state (`--to`): every missing,
 * unexpected and mismatched tensor is an error, all reported in name order
 * (of the target's name, where there is one). A missing and an unexpected
 * tensor of one dtype and of the same dimensions (in any order) are one
 * error, "renamed?" (and "transposed?" when the axes are permuted), with the
 * statements that would fix it as notes; a tensor of the target's
 * dimensions in another order says "transposed?" the same way. Found by
 * sorting, never by comparing every pair. Reported at the target's file;
 * surg_compile_opts.target reports them at the recipe's statements. */
SURG_API surg_status surg_program_check_target(const surg_program *p, const surg_ckpt *target,
                                               surg_sink *sink);

/* The op graph as text: each node with its type, then the outputs. For
 * tests and debugging; the caller frees. */
SURG_API char *surg_program_dump(const surg_program *p);

/* ---- planning -------------------------------------------------------- */

typedef struct surg_plan surg_plan;

/* What running the program will do, tensor by tensor, and what it costs
 * with `threads` threads, beside the naive way. The plan borrows `p`. */
SURG_API surg_status surg_plan_build(const surg_program *p, unsigned threads, surg_plan **out);
SURG_API void surg_plan_free(surg_plan *pl);
/* The plan for people, and as JSON; strings the caller frees (NULL when out
 * of memory). */
SURG_API char *surg_plan_text(const surg_plan *pl);
SURG_API char *surg_plan_json(const surg_plan *pl);

/* ---- running --------------------------------------------------------- */

typedef void (*surg_progress_fn)(void *user, uint64_t done, uint64_t total);

typedef enum surg_reflink {
    SURG_REFLINK_AUTO,
    SURG_REFLINK_ALWAYS,
    SURG_REFLINK_NEVER
} surg_reflink;

/* ---- partitioned runs (docs/scale.md) -------------------------------- */

/* One part of a sharded output: part `index` of `count` (0 <= index <
 * count <= SURG_PART_MAX) writes only the shards it owns. The partition is
 * computed from the output's layout alone, the same in every part: the
 * shards, weighed by their tensors' bytes (headers left out: their padding
 * depends on the host), largest first (ties: the lower shard number), each
 * go to the part with the fewest bytes so far (ties: the lower part
 * number). count 0: the whole output, no partition. */
typedef enum surg_part_source {
    SURG_PART_GIVEN,    /* --part I/N */
    SURG_PART_OMPI,     /* OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE (Open MPI) */
    SURG_PART_PMI,      /* PMI_RANK, PMI_SIZE (MPICH, Intel MPI, srun) */
    SURG_PART_SLURM,    /* SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN (divided by
                           SLURM_ARRAY_TASK_STEP), SLURM_ARRAY_TASK_COUNT */
    SURG_PART_TORCHRUN, /* RANK, WORLD_SIZE */
} surg_part_source;

typedef struct surg_part {
    uint32_t index, count;
    surg_part_source source;
} surg_part;

#define SURG_PART_MAX 1000000u

/* Looks an environment variable up, or NULL when unset (NULL: getenv). */
typedef const char *(*surg_env_fn)(const char *name);

/* The part `spec` names: "I/N" (decimal, I from 0), or "auto": from the
 * launcher's variables, read through `env`, in this order: Open MPI, PMI,
 * a Slurm job array, torchrun. Every launcher whose variables are set must
 * give whole decimal numbers, both of its pair, and the same part as the
 * others (a stray RANK beside a job array is an error, not a guess); none
 * set is an error too. Errors are SURG_EUSAGE, code "part", file "--part". */
SURG_API surg_status surg_part_parse(const char *spec, surg_env_fn env, surg_part *out,
                                     surg_sink *sink);
/* The launcher a part came from, for people: "--part", "Open MPI
 * (OMPI_COMM_WORLD_RANK/OMPI_COMM_WORLD_SIZE)", ... */
SURG_API const char *surg_part_source_name(surg_part_source s);

/* What one part of a partitioned run does (surg plan --part). */
typedef struct surg_part_cost {
    size_t shards;    /* files it writes */
    size_t tensors;
    uint64_t read;    /* input bytes it brings into memory, copies included */
    uint64_t written; /* bytes it writes: its shards' headers and data */
} surg_part_cost;

/* The cost of each of `count` parts (costs[count]) of the plan's output
 * sharded at max_shard_size (not 0), as surg_run would cut it. */
SURG_API surg_status surg_plan_parts(const surg_plan *pl, uint64_t max_shard_size, uint32_t count,
                                     surg_part_cost *costs, surg_sink *sink);

/* The plan's digest: 32 hex digits (and a NUL) naming what the run writes —
 * every output tensor's name, dtype, shape and how it is made (the nodes,
 * their constants and seeds, the input tensors read: names, dtypes,
 * shapes, byte ranges), the metadata and max_shard_size; not the inputs'
 * data, paths or the threads. Every shard of a sharded output carries it
 * as "surg.plan" in its __metadata__, so shards of different runs are
 * never taken for one output (surg_index_write); the parts of an MPI run
 * compare it before they write. */
#define SURG_DIGEST_CHARS 32
SURG_API surg_status surg_plan_digest(const surg_plan *pl, uint64_t max_shard_size,
                                      char out[SURG_DIGEST_CHARS + 1]);

/* What surg_index_write found. */
typedef struct surg_index_info {
    size_t shards, tensors;
    uint64_t bytes;   /* of tensor data */
    int written;      /* 1: the index was written; 0: one file, which needs none */
    char digest[SURG_DIGEST_CHARS + 1];
} surg_index_info;

/* Complete a partitioned sharded output: `out_path` is what surg_run was
 * given (a directory, or DIR/PREFIX.safetensors.index.json). Every shard
 * PREFIX-NNNNN-of-MMMMM.safetensors must be there, a regular file marked as
 * surg's ("surg.output": "sharded"), its header valid, all carrying one
 * "surg.plan" (equal to `digest` unless it is NULL) and no tensor twice;
 * then the index is written (through a temporary file, renamed into
 * place), byte for byte what a run of the whole output writes. Missing
 * shards are one error naming them ("index-missing"); shards of different
 * outputs or plans ("index-mixed"), foreign or broken files are refused,
 * and nothing is written. `info` may be NULL. */
SURG_API surg_status surg_index_write(const char *out_path, const char *digest,
                                      surg_index_info *info, surg_sink *sink);

typedef struct surg_run_opts {
    unsigned threads;        /* 0: one */
    uint64_t max_shard_size; /* 0: one file; see surg_write_opts */
    surg_progress_fn progress; /* called about every 100 ms, from one thread */
    void *progress_user;
    /* Several outputs instead of out_path: each tensor goes to the output
     * whose prefix starts its name, the prefix taken off (the inverse of
     * surg_ckpt_open_parts). surg_program_check_parts() tells beforehand
     * whether every tensor has one. */
    const surg_ckpt_part *outputs;
    size_t n_outputs;
    /* Other files the caller read for this run (the recipe), and other
     * checkpoints it opened (a target to compare with), each with every
     * file it is made of: no output may replace or remove any of them, as
     * none may the input's. */
    const char *const *also_read;
    size_t n_also_read;
    const surg_ckpt *const *also_opened;
    size_t n_also_opened;
    /* The format every output is written in: "safetensors", "npz",
     * "msgpack", "orbax" or "peft" (NULL: each output's name says, as
     * below). An output whose name says another format is refused
     * ("out-format"); "orbax" and "peft" write a directory, which only this
     * asks for. "peft" writes the A and B of each init-lora of style peft
     * and adapter_config.json; compile for it (surg_compile_opts.out_format)
     * so the rest of the result is left out. */
    const char *out_format;
    /* Whether a safetensors output lays its copies out so that their blocks
     * can be the input's (docs/performance.md, "Zero-copy outputs"): AUTO
     * where the output's directory can share blocks with the input (a
     * reflink probe: XFS, btrfs), ALWAYS whatever the file system, NEVER
     * (the reference's layout, byte for byte). */
    surg_reflink reflink;
    /* Output files written at once (0: one): a sharded output's jobs are
     * dealt round the first `writers` unfinished shards, and as many are
     * synced at once; the bytes are the same for any value. */
    unsigned writers;
    /* One part of a sharded output (count 0: all of it). A part needs
     * max_shard_size and one safetensors output; it writes only the shards
     * it owns, never the index (surg_index_write, once every part is done),
     * removes an index of an earlier output of surg at the index's name
     * before its shards go in place (so a half output never looks whole),
     * and after them the files of an earlier output that the whole output
     * does not write again (never a shard of another part). A part that
     * owns no shard writes and removes nothing. */
    surg_part part;
} surg_run_opts;

/* A consumer of a run's output (surg_run_stream): `bytes` are `len` bytes
 * of output tensor `tensor` (as surg_program_output numbers them), starting
 * `offset` bytes into its data, little-endian, C order, exactly what
 * surg_run would write there. Chunks come in any order, from any of the
 * run's threads at once (the consumer locks what it shares); together a
 * tensor's chunks cover it once (a tensor of no bytes has none). `bytes`
 * is valid only during the call. Anything but SURG_OK stops the run, and is
 * its result (the consumer reports why through its own sink). */
typedef surg_status (*surg_chunk_fn)(void *user, size_t tensor, uint64_t offset,
                                     const void *bytes, size_t len);

/* Execute a plan as surg_run does, but hand every output tensor, chunk by
 * chunk, to `fn` instead of writing anything: memory stays the run's
 * chunks (a few MiB a thread). Of `opts`, only threads, progress and
 * progress_user count (NULL: one thread). A decoded input goes to a
 * scratch file in $TMPDIR (or /tmp). Tied names are the consumer's to
 * handle (surg_program_alias). */
SURG_API surg_status surg_run_stream(const surg_plan *pl, const surg_run_opts *opts,
                                     surg_chunk_fn fn, void *user, surg_sink *sink);

/* Does every output tensor of `p` fall under one of the prefixes, and does
 * every tie stay within one? Errors name the tensors. */
SURG_API surg_status surg_program_check_parts(const surg_program *p, const surg_ckpt_part *outputs,
                                              size_t n, surg_sink *sink);

/* Execute a plan: write its output to `out_path` (through temporary files,
 * synced and renamed into place only when complete), reading the program's
 * input. On any failure nothing appears at `out_path`. With opts->outputs,
 * every output is synced before any is renamed into place.
 *
 * Every output path is checked before any tensor data is read (SURG_EUSAGE
 * or SURG_EIO, naming it):
 *   - its name says what is written: `*.safetensors`, `*.npz` or
 *     `*.msgpack` is one file; with max_shard_size, a directory (existing,
 *     or made, when its name ends in no file extension) or
 *     `DIR/PREFIX.safetensors.index.json` (DIR existing) holding the
 *     shards; anything else is refused unless opts->out_format says;
 *   - an Orbax output (out_format "orbax") is a directory, built as
 *     `.NAME.surg-tmp-XXXXXX` beside it and renamed into place whole; an
 *     existing NAME is replaced only when it is a directory of an earlier
 *     Orbax output of surg (its _CHECKPOINT_METADATA's custom_metadata has
 *     "surg.output": "orbax"), holding only files and directories of files,
 *     none of them one the run reads;
 *   - each name written (every shard, the index) holds nothing, or a
 *     regular file: never a symbolic link, directory, device, FIFO or
 *     socket, which are refused, not replaced;
 *   - none is a file the run reads (the input's index, shards and files,
 *     opts->also_read and opts->also_opened), by device and inode;
 *   - a sharded output owns the names of its prefix (PREFIX.safetensors,
 *     PREFIX.safetensors.index.json, PREFIX-NNNNN-of-MMMMM.safetensors):
 *     those the new output does not write are removed after it is in place
 *     when surg wrote them (their metadata has "surg.output": "sharded", the
 *     mark every file of a sharded output carries); any other file under
 *     such a name is an error before anything runs, and is left alone. */
SURG_API surg_status surg_run(const surg_plan *pl, const char *out_path, const surg_run_opts *opts,
                              surg_sink *sink);

/* ---- writing --------------------------------------------------------- */

typedef struct surg_write_opts {
    /* 0: one file. Otherwise the most bytes of tensor data per shard; the
     * output is then a directory (or an `*.safetensors.index.json` path)
     * holding `model-0000N-of-0000M.safetensors` and the index. */
    uint64_t max_shard_size;
    /* As surg_run_opts.out_format (NULL: by the name). */
    const char *out_format;
} surg_write_opts;

/* Write every tensor of `in` to `out_path` as safetensors (or .npz, by the
 * name), byte for byte, through a temporary file that is synced and renamed
 * into place; on any failure nothing appears at `out_path`. The output path
 * is checked first as surg_run checks it, `in`'s files being the ones read. */
SURG_API surg_status surg_ckpt_write(surg_ckpt *in, const char *out_path,
                                     const surg_write_opts *opts, surg_sink *sink);

/* Write the abstract state of `ck` as a schema file (SPEC §2) to a string
 * the caller frees. */
SURG_API surg_status surg_ckpt_schema_json(const surg_ckpt *ck, char **out);

/* ---- JSON (for tools that speak it: `surg lsp`) ------------------------ */

/* A JSON text read strictly (RFC 8259: valid UTF-8, no trailing commas, no
 * duplicate keys, no NUL in a string, nesting at most 128 levels), as a
 * tree. Reading is iterative and linear in the text's length. */
typedef enum surg_json_kind {
    SURG_JSON_NULL,
    SURG_JSON_FALSE,
    SURG_JSON_TRUE,
    SURG_JSON_NUMBER,
    SURG_JSON_STRING,
    SURG_JSON_ARRAY,
    SURG_JSON_OBJECT,
} surg_json_kind;

typedef struct surg_json {
    surg_json_kind kind;
    const char *key;    /* a member of an object: its key; else NULL */
    const char *string; /* STRING: decoded, NUL-terminated; NUMBER: its text */
    double number;      /* NUMBER */
    size_t n;           /* ARRAY, OBJECT: how many items (members in order) */
    const struct surg_json *items;
} surg_json;

/* The tree of `text` (len bytes), which the caller frees with
 * surg_json_free; NULL with a message (and the byte offset) in err when the
 * text is not JSON or memory ran out. */
SURG_API surg_json *surg_json_parse(const char *text, size_t len, char *err, size_t err_cap);
SURG_API void surg_json_free(surg_json *root);
/* An object's member by key; NULL when absent or `obj` is no object. */
SURG_API const surg_json *surg_json_get(const surg_json *obj, const char *key);

/* Natural order of names: digit runs compare by value ("layers.2" before
 * "layers.10"). */
SURG_API int surg_natural_cmp(const char *a, const char *b);

/* Parse a size such as "5GB", "500MiB" or "1000" (bytes). */
SURG_API surg_status surg_parse_size(const char *text, uint64_t *out);
/* A size for people: "512 B", "9.4 MiB". Returns what snprintf returns. */
SURG_API int surg_format_size(uint64_t bytes, char *out, size_t cap);

/* Remove every temporary output file still open. Async-signal-safe: a
 * signal handler calls it before the process dies. */
SURG_API void surg_remove_temporaries(void);

#ifdef __cplusplus
}
#endif

#endif
