/* npy.h: the .npy array format (NumPy's "format.py", versions 1.0, 2.0 and
 * 3.0): a magic string, a version, a header length, and a header that is a
 * Python dict literal — {'descr': '<f4', 'fortran_order': False, 'shape':
 * (3, 4), } — parsed strictly here, never evaluated. Reading maps the header
 * to a surg dtype, shape and layout; writing makes the header NumPy writes. */
#ifndef SURG_NPY_H
#define SURG_NPY_H

#include <stdbool.h>
#include <stdint.h>

#include "support/buf.h"
#include "surg/surg.h"

/* Bytes of the magic, version and length fields: 10 (1.0) or 12 (2.0, 3.0). */
#define NPY_PREAMBLE_MAX 12
/* Longer headers are refused (NumPy's own reader refuses above 10,000). */
#define NPY_MAX_HEADER (1u << 20)

typedef struct npy_header {
    unsigned major, minor;
    uint64_t data_at;  /* preamble + header: where the array's bytes start */
    surg_dtype dtype;
    uint8_t swap;      /* big-endian: bytes per unit to reverse (c8: 4), else 0 */
    bool fortran;      /* elements in Fortran (column-major) order */
    uint32_t rank;
    uint64_t shape[SURG_MAX_RANK];
    uint64_t nelems, nbytes;
} npy_header;

/* An error: a stable code ("npy-magic") and a message for people. */
typedef struct npy_error {
    const char *code;
    char msg[256];
} npy_error;

/* The preamble in b[0..n) (n >= 10; 12 for versions 2 and 3): sets major,
 * minor and data_at. */
bool npy_preamble(const unsigned char *b, size_t n, npy_header *h, npy_error *err);

/* The dict of `len` bytes after the preamble: exactly the keys 'descr' (a
 * supported type string), 'fortran_order' (True or False) and 'shape' (a
 * tuple of non-negative integers), then only whitespace. Sets the dtype,
 * byte order, layout, shape and sizes (refusing sizes that overflow). */
bool npy_parse_dict(const char *text, size_t len, npy_header *h, npy_error *err);

/* The type string of a dtype ("<f4"), or NULL when .npy has none (bf16, f8). */
const char *npy_descr(surg_dtype dt);

/* The preamble and header NumPy (1.24) writes for a little-endian, C-order
 * array, byte for byte: version 1.0, or 2.0 when the header needs it, padded
 * with spaces to a multiple of 64 bytes and ended by a newline. Appended to
 * `out`; false when the dtype has no type string. */
bool npy_write_header(buf *out, surg_dtype dt, uint32_t rank, const uint64_t *shape);

#endif
