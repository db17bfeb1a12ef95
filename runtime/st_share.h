/* st_share.h: safetensors outputs whose copied bytes keep their input's
 * offset modulo the file system's block size, so that copy_file_range can
 * share the blocks (a reflink, on XFS or btrfs) instead of copying them.
 * The format allows no holes between tensors, so the freedom is the data's
 * order and the spaces padding the header: runs of tensors contiguous in
 * an input stay contiguous, in input order, and one header length aligns
 * them all. */
#ifndef SURG_ST_SHARE_H
#define SURG_ST_SHARE_H

#include "runtime/st_write.h"

/* The block size an output at out_path should keep copies from the file
 * src_fd congruent to, or 0 for the reference's layout: NEVER, or AUTO
 * where a probe finds that the output's directory cannot share blocks with
 * that file (an unnamed file there, one block cloned into it, dropped). */
uint32_t sh_block_size(const char *out_path, surg_reflink mode, int src_fd);

/* Lay out file f's tensors f->idx[0..f->n), in the reference's order on
 * entry: the chain of runs of copies that can keep their offsets (the most
 * bytes of runs that can follow each other), in input order; the rest in
 * the reference's order, split around the chain so that every tensor stays
 * aligned to its element size. f->runs gets the chain's runs, their dst
 * counted from the data's start, which must be congruent to *residue
 * modulo the block (a multiple of 8). No chain: f untouched, *residue 0. */
surg_status sh_layout(const stw_output *out, stw_file *f, uint64_t *residue);

/* The part of run r whose blocks can be shared: [*lo, *hi) of the output
 * (block-aligned but for an end at both files' end). False: none. */
bool sh_span(const stw_run *r, uint32_t block, uint64_t *lo, uint64_t *hi);

#endif
