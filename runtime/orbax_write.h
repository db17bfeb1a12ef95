/* orbax_write.h: writing an Orbax PyTree checkpoint directory, as Orbax's
 * PyTreeCheckpointHandler writes it with use_ocdbt=False: each array a
 * zarr v2 array in a directory of its own (its keys joined with "."), not
 * compressed, so its bytes are copied as they are; `_METADATA` keys the
 * tree; `_CHECKPOINT_METADATA` marks it as surg's. Written through the
 * layout of st_write.h as a directory output (stw_writer.dir): built under
 * a temporary name and renamed into place whole. */
#ifndef SURG_ORBAX_WRITE_H
#define SURG_ORBAX_WRITE_H

#include "runtime/st_write.h"

/* The largest chunk written: an array of more bytes is cut along its first
 * dimensions into chunks of at most this many (stw_output.chunk_bytes
 * overrides it for tests). */
#define OW_MAX_CHUNK_BYTES (2ull << 30)

/* What Orbax names the handler that reads such a directory. */
#define OW_HANDLER "orbax.checkpoint._src.handlers.pytree_checkpoint_handler.PyTreeCheckpointHandler"

/* The writer (fmt_orbax's): it lays the directory out, refusing dtypes zarr
 * has no name for and names that make no tree ("a" beside "a/b") or the
 * same directory ("a/b" beside "a.b"), and turning the values a msgpack
 * input kept (metadata "msgpack.tree") into Orbax's own leaves; writes
 * the metadata and every array's .zarray once the directory is made; and
 * at the end copies the repeated arrays (tied names) and cuts the arrays
 * over the chunk size into their chunks. */
extern const stw_writer ow_writer;

#endif
