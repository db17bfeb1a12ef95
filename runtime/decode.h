/* decode.h: a tensor's plain bytes (little-endian, C order) made from a
 * file that does not hold them so — a deflated zip entry, a big-endian or a
 * Fortran-order NumPy array, a strided PyTorch view — and written to a place
 * in a scratch file, a bounded piece at a time. The checkpoint then reads the tensor there like
 * any other (copy_file_range, pread, mapping). */
#ifndef SURG_DECODE_H
#define SURG_DECODE_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/zip.h"

typedef struct dc_source {
    const zip_archive *arc; /* the file (path, fd), borrowed */
    zip_entry entry;        /* stored or deflated; a plain .npy is a stored entry */
    uint64_t skip;          /* bytes before the array's (its .npy header) */
    const char *name;       /* the tensor, for messages */
    unsigned esize;         /* bytes per element */
    uint8_t swap;           /* bytes per unit to reverse (big-endian), or 0 */
    bool fortran;           /* elements in Fortran order */
    uint32_t rank;
    const uint64_t *shape;
    uint64_t nbytes;
    /* A strided view (a PyTorch tensor), or NULL: element i of the view is
     * at skip + (sum of index[d] * stride[d]) * esize in a stored entry,
     * whose span bytes from skip hold every element the view reaches. */
    const uint64_t *stride;
    uint64_t span;
    /* Pieces of the file joined in order (a chunked msgpack array), or
     * none: n_pieces ranges at piece_at[i] of piece_len[i] bytes. */
    const uint64_t *piece_at, *piece_len;
    size_t n_pieces;
    /* A decoder of its own (an Orbax array's zarr chunks), or NULL: when
     * set, dc_decode calls it with `ctx` and the rest above is unused but
     * name, rank, shape and nbytes. */
    surg_status (*decode)(const struct dc_source *s, int dst_fd, uint64_t dst_off,
                          const char *tmp_dir, surg_sink *sink);
    const void *ctx;
    bool done;              /* decoded into its place */
} dc_source;

/* Decode `s` into dst_fd at dst_off (nbytes bytes). A Fortran-order array
 * that must first be inflated or swapped is staged in an unlinked temporary
 * file in `tmp_dir`; a strided view is gathered (and swapped) straight from
 * a mapping of its entry. Memory: a few buffers of a MiB, whatever the
 * size. */
surg_status dc_decode(const dc_source *s, int dst_fd, uint64_t dst_off, const char *tmp_dir,
                      surg_sink *sink);

/* An unlinked temporary file in `dir` (NULL: $TMPDIR, or /tmp), for reading
 * and writing; it disappears when closed. `what` names it in errors. */
surg_status dc_temp_file(const char *dir, const char *what, surg_sink *sink, int *fd);

#endif
