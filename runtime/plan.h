/* plan.h: the plan, the contract between the two stages. The compiler makes
 * it (compiler/plan.c and its passes); the runtime carries it out (exec.c)
 * reading nothing else: per output tensor, how it is made; the nodes the
 * executor evaluates; the inputs to decode first; the records each output's
 * metadata carries. Nothing in it points back into the compiler. */
#ifndef SURG_PLAN_H
#define SURG_PLAN_H

#include "support/arena.h"
#include "runtime/ops.h"

typedef enum pl_kind {
    PL_COPY,     /* byte ranges of inputs */
    PL_GATHER,   /* a layout move of inputs: strided copies, no arithmetic */
    PL_GENERATE, /* an initializer */
    PL_COMPUTE,  /* a fused kernel */
} pl_kind;

/* A byte range of an input tensor's data. */
typedef struct pl_segment {
    uint32_t input; /* index in the input checkpoint */
    uint64_t offset, len;
} pl_segment;

typedef struct pl_tensor {
    const char *name;
    cg_id node;
    surg_dtype dtype;
    uint32_t rank;
    const uint64_t *shape;
    uint64_t nbytes;
    pl_kind kind;
    pl_segment *segs; /* PL_COPY */
    size_t n_segs;
    uint32_t passes;  /* PL_COMPUTE: passes over its inputs (reductions first) */
    uint64_t read;    /* input bytes brought into memory, over all passes */
    uint64_t work;    /* working memory for one thread doing it */
    uint64_t held;    /* PL_COMPUTE: values held whole while it is made (a
                         matmul's right operand, a reduction over an axis) */
    uint32_t n_held;  /* how many */
    const char *held_how; /* for people: the biggest of them */
    const char *how;  /* for people: "copy of ...", "normal(0, 0.02)", ... */
} pl_tensor;

/* The totals of a plan, or of the naive way (load every tensor, apply each
 * statement in turn, save everything). */
typedef struct pl_totals {
    uint64_t read;      /* input bytes brought into memory */
    uint64_t copied;    /* bytes copied as byte ranges, never decoded */
    uint64_t gathered;  /* bytes moved by strided copies */
    uint64_t generated; /* bytes made by initializers */
    uint64_t computed;  /* bytes made by arithmetic */
    uint64_t written;   /* the output: header and data */
    uint64_t peak;      /* working memory at the worst moment */
} pl_totals;

/* The number of elements kernels work on at a time, and the bytes a copy
 * that the kernel cannot do in place (no copy_file_range) goes through. */
#define PL_CHUNK_ELEMS (64 * 1024)
#define PL_COPY_BUFFER (1u << 20)

/* What an init-lora statement made: one entry of "surg.lora". The
 * compiler keeps them in a list (renames and drops edit it); the type keeps
 * the op graph's prefix, as ops.h's do. */
typedef struct cg_lora {
    struct cg_lora *next;
    long long rank;
    double alpha;
    bool flax;           /* else peft */
    const char *target;  /* the adapted kernel, and the two new tensors */
    const char *a, *b;
    bool rslora;         /* PEFT's use_rslora, fan_in_fan_out, lora_dropout */
    bool fan_in_fan_out;
    double dropout;
} cg_lora;

/* One path of a path-keyed metadata entry (a reader's paths_meta,
 * format.h), where the recipe left it. */
typedef struct pl_path {
    const char *key;   /* the metadata entry ("msgpack.tree") */
    const char *path;
    const char *value;
} pl_path;

/* The records an output's metadata carries: tied names ("surg.ties"),
 * LoRA records ("surg.lora") and the paths of path-keyed metadata, each
 * output those under its prefix. */
typedef struct pl_records {
    const surg_meta_entry *ties; /* tied name -> the name it is stored as; sorted */
    size_t n_ties;
    const cg_lora *lora;         /* a list, in recipe order */
    const pl_path *paths;        /* in the input's order, new places kept */
    size_t n_paths;
    /* The recipe's `meta` statements: each key set (to its value) or
     * dropped (value NULL), sorted by key; every output's metadata gets
     * them, over its input's. */
    const surg_meta_entry *edits;
    size_t n_edits;
    const char *const *files;    /* the JSON files the recipe read (no output may replace one) */
    size_t n_files;
} pl_records;

/* An input of the plan, for people (`surg plan` names each): one per
 * mounted input, in the order given, or the one input under "". */
typedef struct pl_input {
    const char *prefix; /* "NAME/", or "" */
    const char *path;
    surg_ckpt_kind kind;
    size_t n, used;            /* its tensors, and those some output reads or copies */
    uint64_t bytes, used_bytes; /* their data */
} pl_input;

struct surg_plan {
    arena ar;
    /* What the executor reads. Node ids index `nodes`; names, shapes and
     * nodes are the program's (a plan borrows its program). */
    surg_ckpt *input;
    const cg_node *nodes;
    uint32_t n_nodes;
    pl_tensor *t;        /* per output tensor, in byte order of names */
    size_t n;
    size_t *decode;      /* the inputs read whose bytes are not in place,
                            ascending: decoded first, into scratch files */
    size_t n_decode;
    pl_records rec;      /* the tied names, also written as arrays of their
                            own where the format keeps no metadata */
    surg_meta_entry *meta; /* the metadata of one output holding it all */
    size_t n_meta;
    pl_input *inputs;
    size_t n_inputs;
    /* What it costs, for people. */
    unsigned threads;
    uint64_t header_bytes; /* of the output */
    size_t dead_inputs, dead_values; /* never read, never made */
    size_t decoded_inputs; /* read, but decoded first (arrays not in place) */
    uint64_t decoded_bytes;
    uint64_t dead_input_bytes, dead_value_bytes;
    pl_totals plan, naive;
};

/* One LoRA record of "surg.lora" as pl_records_json writes it, {"r":…,
 * "lora_alpha":…, "style":…, "target":…, "lora_a":…, "lora_b":…} and PEFT's
 * options when set ("use_rslora", "fan_in_fan_out", "lora_dropout"), read
 * for the compiler (an input's records) and for the PEFT writer alike.
 * False after a JSON error; r->target NULL when a field is missing or out
 * of range. */
struct json_reader;
bool pl_lora_read(struct json_reader *j, cg_lora *r);

/* The tied names ({"alias": "stored as"}) or the LoRA records ([{...}]) of
 * the tensors under `prefix` ("" for all), as JSON with the prefix taken
 * off, in *out; NULL when there are none. False when out of memory. */
bool pl_records_json(const pl_records *r, const char *prefix, bool ties, arena *ar, char **out);

/* The metadata of the output holding the tensors under `prefix` ("" for
 * all): the input's (that of the part mounted under `prefix`, if any), with
 * the recipe's edits, the tied names, the LoRA records and the path-keyed
 * entries of those tensors, the prefix taken off, sorted by key (the
 * writer adds "format" when absent, unless pl_drops_format). */
surg_status pl_metadata(const surg_plan *pl, const char *prefix, arena *ar,
                        surg_meta_entry **out, size_t *n);

/* Whether the recipe dropped "format", which a safetensors writer
 * otherwise adds. */
bool pl_drops_format(const pl_records *r);

#endif
