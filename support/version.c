/* version.c: which library is loaded, for callers that find it at run time
 * (the Python package). */
#include "surg/surg.h"

const char *surg_version(void) { return SURG_VERSION; }
