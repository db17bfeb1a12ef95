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

/* Does the name ask for an .npz? */
bool nzw_wanted(const char *out_path);

/* Lay out the archive in `lay` (one file); refuses tensors whose dtype .npy
 * cannot hold and warns about metadata it cannot keep. */
surg_status nzw_layout_make(surg_sink *sink, const char *out_path, const stw_output *out,
                            stw_layout *lay);
/* Write the local headers and .npy headers (the file is open). */
surg_status nzw_layout_open(stw_layout *lay, surg_sink *sink);
void nzw_set_crc(stw_layout *lay, size_t i, uint32_t crc);
/* Copy the repeated arrays, read back the CRCs not given, patch them into
 * the local headers and write the central directory and end records. */
surg_status nzw_layout_finish(stw_layout *lay, surg_sink *sink);
void nzw_layout_free(stw_layout *lay);

#endif
