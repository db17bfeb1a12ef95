/* torch_state.h: one torch.save file being read, shared by the archive
 * (torch.c) and the flattening of its pickle into names, views and ties
 * (torch_names.c). */
#ifndef SURG_TORCH_STATE_H
#define SURG_TORCH_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "support/buf.h"
#include "runtime/format.h"
#include "runtime/pickle.h"
#include "runtime/torch.h"
#include "runtime/zip.h"

enum { PT_MAX_SHOWN = 3 }; /* skipped names shown in the note */

/* A tensor of the pickle under its name. */
typedef struct pt_item {
    const char *name; /* first: the key ss_sort sorts by */
    const pk_tensor *t;
    size_t order;     /* in the pickle's order of appearance */
    const zip_entry *storage;
    uint64_t nelems, nbytes;
    uint64_t at;      /* byte offset of element 0 in the storage */
    bool in_place;
    const char *tied_to; /* stored as another item's tensor */
} pt_item;

typedef struct pt_state {
    arena *keep; /* what the table points at, kept with the checkpoint */
    surg_sink *sink;
    const char *path; /* the file */
    st_file *file;
    zip_archive *arc;
    arena tmp; /* the pickle's values */
    unsigned char *pickle;
    size_t pickle_len;
    const char *prefix; /* "archive/" */
    size_t prefix_len;
    bool big_endian;
    pt_item *items;
    size_t n, cap;
    buf name;           /* the path being flattened */
    uint64_t visits;    /* values flattened, bounded */
    uint64_t name_bytes; /* bytes of names built and kept, bounded */
    size_t n_skipped;
    char *skipped[PT_MAX_SHOWN];
    buf values;          /* the values kept (torch.h): the JSON object's members */
    size_t n_values;
    uint64_t value_bytes, path_bytes;
    bool values_dropped; /* over the bounds: none is kept */
    bool failed;
} pt_state;

/* ---- the archive and the file (torch.c) --------------------------------- */

/* An error about the file: reported, and o->failed set. */
void pt_error(pt_state *o, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The item's storage entry, checked (stored, exactly the storage's size),
 * and its size in *bytes; NULL with o->failed set if it is not. */
const zip_entry *pt_storage_entry(pt_state *o, const pt_item *it, uint64_t *bytes);

/* The file's name without its folder and extension (in o->keep). */
const char *pt_stem(pt_state *o);

/* ---- names, views and ties (torch_names.c) ------------------------------ */

/* The pickle's tensors as o->items, named by where they sit in root; the
 * values that are not tensors in o->values (torch.h), while they fit. */
surg_status pt_flatten(pt_state *o, const pk_value *root);
/* The values kept, if any, as out's metadata PT_VALUES_KEY. */
surg_status pt_values_meta(pt_state *o, fmt_table *out);

/* The item's view checked against its storage and placed: in place in the
 * archive or to be gathered (o->failed set if it does not fit). */
void pt_check_view(pt_state *o, pt_item *it);

/* The items sorted by name, each name checked (o->failed set if one fails). */
surg_status pt_check_names(pt_state *o);

/* The byte just past the last element the view reaches; false on overflow. */
bool pt_view_end(const pk_tensor *t, unsigned esize, uint64_t *end);

/* Each item tied to the first one seen with the same view (its tied_to),
 * *n_ties their count; then those ties, in name order, as out->ties. */
surg_status pt_find_ties(pt_state *o, size_t *n_ties);
surg_status pt_tie_pairs(pt_state *o, size_t n_ties, fmt_table *out);

#endif
