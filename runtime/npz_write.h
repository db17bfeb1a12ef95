/* npz_write.h: writing NumPy's .npz through the safetensors writer's layout
 * (st_write.h): one zip archive of stored entries `NAME.npy`, each a .npy
 * header as NumPy writes it and the tensor's bytes, in byte order of names,
 * then the central directory; ZIP64 records where sizes, offsets or the
 * number of entries need them. Every entry's place is fixed up front, so
 * tensors are written in any order and in parallel; CRCs and the central
 * directory are written last, when the data is complete. */
#ifndef SURG_NPZ_WRITE_H
#define SURG_NPZ_WRITE_H

#include "runtime/st_write.h"

/* The .npz writer (fmt_npz's): it lays the archive out in one file,
 * refusing tensors whose dtype .npy cannot hold and warning about metadata
 * it cannot keep; writes the local and .npy headers once the file is open;
 * takes each tensor's CRC as the jobs give it; and at the end copies the
 * repeated arrays, reads back the CRCs not given, patches them into the
 * local headers and writes the central directory and end records. */
extern const stw_writer nzw_writer;

#endif
