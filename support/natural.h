/* natural.h: natural order of names: runs of digits compare by value, so
 * "layers_2" comes before "layers_10". */
#ifndef SURG_NATURAL_H
#define SURG_NATURAL_H

#include <stddef.h>

int natural_cmp(const char *a, const char *b);
/* The same over counted strings. */
int natural_cmpn(const char *a, size_t la, const char *b, size_t lb);

#endif
