/* partition.h: partitioned runs. Which part writes which shard of a
 * sharded output — worked out from the layout alone, so every part of one
 * plan gets the same answer — and what a part does differently from a run
 * of the whole output: it makes only its own shards, never the index, and
 * removes an earlier output's index before its shards go in place. */
#ifndef SURG_PARTITION_H
#define SURG_PARTITION_H

#include "runtime/st_write.h"

/* owner[i] for each of m shards of sizes[i] bytes, among `count` parts:
 * the shards, largest first (ties: the lower number), each to the part
 * with the fewest bytes so far (ties: the lower number). False when out of
 * memory. */
bool part_assign(const uint64_t *sizes, size_t m, uint32_t count, uint32_t *owner);

/* Mark the files of the other parts in a laid-out sharded output
 * (lay->out->part), and check what stands at the index's name: nothing, or
 * an index of surg's, which the part removes before its shards go in
 * place. An output that is not sharded has no parts: SURG_EUSAGE. */
surg_status part_mark(stw_layout *lay, surg_sink *sink, const char *out_path);

/* Before a part's shards are renamed into place: remove the index of an
 * earlier output (checked again); a part that makes no file removes
 * nothing, stale files included. */
surg_status part_commit_begin(stw_layout *lay, surg_sink *sink);

#endif
