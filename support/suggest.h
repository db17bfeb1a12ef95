/* suggest.h: "did you mean" — the closest of some candidate words. */
#ifndef SURG_SUGGEST_H
#define SURG_SUGGEST_H

#include <stddef.h>

/* The candidate closest to `word` by edit distance, if close enough to be a
 * plausible typo (at most a third of the word's length, at least 1); NULL
 * otherwise. Ties go to the earlier candidate. */
const char *sg_closest(const char *word, const char *const *cands, size_t n);

/* Edit distance (insert, delete, substitute, swap of neighbours), or a value
 * above `limit` as soon as it is certain to exceed it. */
size_t sg_distance(const char *a, const char *b, size_t limit);

#endif
