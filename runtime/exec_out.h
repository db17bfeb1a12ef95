/* exec_out.h: the outputs of a run. The plan's tensors are placed in one or
 * several outputs (each the tensors under its prefix), every path checked
 * and every file's header and every tensor's offset known before any data is
 * read; then the temporary files are created, the jobs fill them in, and
 * every output is synced before any is renamed into place. */
#ifndef SURG_EXEC_OUT_H
#define SURG_EXEC_OUT_H

#include "runtime/plan.h"
#include "runtime/st_write.h"

/* A range whose blocks an output shares with an input's (st_share.h),
 * block-aligned on both sides: copied by jobs of its own. */
typedef struct xo_share {
    of_file *dest;
    int fd;
    uint64_t src, dst, len;
} xo_share;

typedef struct xo_set {
    stw_layout *lay;    /* one per output */
    stw_output *out;
    size_t n;
    size_t **plan_of;   /* per output: its tensors' plan indices (SIZE_MAX: a
                           tied name's array, which the writer copies) */
    uint32_t *lay_of;   /* per plan tensor: its output */
    size_t *idx_of;     /* and its index among that output's tensors */
    of_file **dest;     /* per plan tensor, once open: the file it goes to */
    uint64_t *dest_off; /* and where its data starts there */
    arena ar;           /* the outputs' metadata */
    xo_share *share;    /* once open: the ranges shared, file by file */
    size_t n_share, cap_share;
    uint64_t *share_lo, *share_hi; /* per plan tensor: the part of its place a
                                      share fills (lo == hi: none) */
} xo_set;

/* Lay out the outputs of opts->outputs, or the one at `out_path`, and check
 * every name they write against each other and against `reads` (the files
 * the run reads). Nothing is created yet. */
surg_status xo_layout(xo_set *s, const surg_plan *pl, const surg_run_opts *opts,
                      const char *out_path, const outp_reads *reads, surg_sink *sink);
/* Create the temporary files and write their headers: each tensor's place
 * is known from here on. */
surg_status xo_open(xo_set *s, surg_sink *sink);
/* Does plan tensor t go to an output that wants each tensor's CRC-32 (an
 * .npz), and give it, once its bytes are all written. */
bool xo_wants_crc(const xo_set *s, size_t t);
void xo_set_crc(xo_set *s, size_t t, uint32_t crc);
/* Is plan tensor t written by this run (not by another part's)? */
bool xo_mine(const xo_set *s, size_t t);
/* The writer's view of plan tensor t, its name without its output's
 * prefix (plen bytes). */
surg_tensor_info xo_tensor_info(const pl_tensor *t, size_t plen);
/* Start writing back what the jobs wrote so far (a hint, while they run). */
void xo_writeback(xo_set *s);
/* Sync every output, then rename each into place, then remove the stale
 * files of earlier outputs (those `reads` holds excepted). */
surg_status xo_commit(xo_set *s, const outp_reads *reads, surg_sink *sink);
/* Remove whatever was not committed, and free. */
void xo_free(xo_set *s);

#endif
