/* plan.h: what the runtime will do for each output tensor, and what it costs.
 * The passes over the op graph (one file each) decide it:
 *   pass_live.c  which nodes any output needs (dead inputs are never read,
 *                dead values never made);
 *   pass_copy.c  which outputs are byte ranges of inputs (copied, never
 *                decoded), and which are layout moves of them (strided
 *                copies, no arithmetic);
 *   pass_fuse.c  the rest as fused kernels: one pass over the data for any
 *                chain of elementwise operations, plus one before it for
 *                each level of reductions it uses.
 * Tied names are metadata: the data is stored once, under the name tied to. */
#ifndef SURG_PLAN_H
#define SURG_PLAN_H

#include "program.h"

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

struct surg_plan {
    arena ar;
    const surg_program *prog;
    pl_tensor *t; /* in byte order of names */
    size_t n;
    unsigned threads;
    uint64_t header_bytes; /* of the output */
    surg_meta_entry *meta; /* the output's metadata, sorted by key */
    size_t n_meta;
    size_t dead_inputs, dead_values; /* never read, never made */
    size_t decoded_inputs; /* read, but decoded first (arrays not in place) */
    uint64_t decoded_bytes;
    uint64_t dead_input_bytes, dead_value_bytes;
    pl_totals plan, naive;
};

/* Per-node arrays the passes reuse from tensor to tensor, so that the work
 * for one tensor is in proportion to the nodes it reaches, not the graph:
 * a pass leaves `seen` and `above` all zero, as it found them. */
typedef struct pl_scratch {
    uint32_t *lo, *hi; /* pass_fuse: the first and last pass that reads a node */
    uint32_t *above;   /* pass_fuse: edges from nodes above not yet settled */
    uint8_t *seen;
    cg_id *order;      /* nodes reached, in the order a pass takes them */
} pl_scratch;

bool pl_scratch_init(pl_scratch *s, uint32_t n_nodes); /* false: out of memory */
void pl_scratch_free(pl_scratch *s);

/* The passes. Each fills in its part of the plan's tensors. */
uint8_t *pl_live(const cg_graph *g, const cg_output *out, size_t n_out);
/* 1: the tensor is a copy of byte ranges or a strided move; 0: it is
 * computed; -1: out of memory. */
int pl_copy(const surg_program *p, arena *ar, pl_tensor *t, pl_scratch *s);
/* The kernel's passes, reads and memory, in time linear in the nodes it
 * reaches. False: out of memory. */
bool pl_fuse(const surg_program *p, arena *ar, pl_tensor *t, pl_scratch *s);

/* The metadata of the output holding the tensors under `prefix` ("" for
 * all): the input's, with the tied names and the LoRA records of those
 * tensors, the prefix taken off (the writer adds "format" when absent). */
surg_status pl_metadata(const surg_program *p, const char *prefix, arena *ar,
                        surg_meta_entry **out, size_t *n);

/* A node as text ("div(x, norm(x))" with inputs by name), for people. */
char *pl_describe(const surg_program *p, arena *ar, cg_id node); /* NULL: out of memory */

#endif
