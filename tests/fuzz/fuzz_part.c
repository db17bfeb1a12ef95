/* fuzz_part.c: libFuzzer harness for the part a spec or a launcher's
 * variables name (surg_part_parse). The input is split at NUL bytes: the
 * spec, then the values of the launchers' variables in a fixed order (a
 * field past the input's end: unset). A spec is accepted as part I of N
 * with I < N <= SURG_PART_MAX and no error, and "I/N" printed back parses
 * to the same; or refused with an error and SURG_EUSAGE. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "surg/surg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const names[] = {
    "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_RANK", "PMI_SIZE",
    "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_STEP", "RANK", "WORLD_SIZE",
};
#define N_VARS (sizeof names / sizeof *names)

static const char *values[N_VARS];

static const char *env(const char *name)
{
    for (size_t i = 0; i < N_VARS; i++)
        if (strcmp(name, names[i]) == 0)
            return values[i];
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    /* spec \0 value \0 value ... */
    const char *spec = text;
    const char *at = text + strlen(text);
    for (size_t i = 0; i < N_VARS; i++) {
        values[i] = at < text + size ? at + 1 : NULL;
        at = values[i] ? values[i] + strlen(values[i]) : at;
    }
    size_t total = 0;
    surg_sink sink = fz_sink(&total);
    surg_part p;
    surg_status st = surg_part_parse(spec, env, &p, &sink);
    if (st == SURG_OK) {
        if (sink.errors || p.count == 0 || p.index >= p.count || p.count > SURG_PART_MAX)
            fz_fail("an accepted part breaks its rules", spec);
        char again[32];
        snprintf(again, sizeof again, "%u/%u", p.index, p.count);
        surg_part q;
        if (surg_part_parse(again, env, &q, &sink) != SURG_OK || q.index != p.index ||
            q.count != p.count || q.source != SURG_PART_GIVEN)
            fz_fail("a part printed back does not parse to itself", again);
    } else if (st != SURG_EUSAGE || sink.errors == 0) {
        fz_fail("a refused part gave no usage error", spec);
    }
    free(text);
    return 0;
}
