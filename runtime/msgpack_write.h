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

/* The .msgpack writer (fmt_msgpack's): it lays the file out, refusing
 * dtypes NumPy has no name for and names that make no tree ("a" beside
 * "a/b") and warning about metadata it cannot keep (arrays over 2^30 bytes
 * are chunked as Flax chunks them); writes every byte but the tensors' once
 * the file is open; and at the end copies the repeated arrays (tied names)
 * and moves the chunks of chunked arrays into their places. */
extern const stw_writer mpw_writer;

#endif
