/* msgpack_write.h: writing Flax's msgpack (msgpack.h) through the
 * safetensors writer's layout (st_write.h): the nested maps rebuilt from
 * the names ("/" between keys), siblings in byte order of their keys (as
 * JAX orders a dict's keys), each tensor ext 1 of [shape, dtype name,
 * bytes] in the encodings msgpack-python picks. Every byte that is not a
 * tensor's is fixed up front, so tensors are written in any order and in
 * parallel. */
#ifndef SURG_MSGPACK_WRITE_H
#define SURG_MSGPACK_WRITE_H

#include "runtime/st_write.h"

/* Does the name ask for a .msgpack? */
bool mpw_wanted(const char *out_path);

/* Lay the file out in `lay` (one file); refuses dtypes NumPy has no name
 * for and names that make no tree ("a" beside "a/b"), and warns about
 * metadata it cannot keep. Arrays over 2^30 bytes are chunked as Flax
 * chunks them. */
surg_status mpw_layout_make(surg_sink *sink, const char *out_path, const stw_output *out,
                            stw_layout *lay);
/* Write every byte but the tensors' (the file is open). */
surg_status mpw_layout_open(stw_layout *lay, surg_sink *sink);
/* Copy the repeated arrays (tied names) inside the file, then move the
 * chunks of chunked arrays into their places. */
surg_status mpw_layout_finish(stw_layout *lay, surg_sink *sink);
void mpw_layout_free(stw_layout *lay);

#endif
