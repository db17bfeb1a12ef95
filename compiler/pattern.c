/* pattern.c: the public face of the glob patterns (surg_pattern_*), for
 * tools that ask what a pattern matches without compiling a recipe. */
#include <stdlib.h>
#include <string.h>

#include <stdio.h>

#include "compiler/glob.h"
#include "surg/surg.h"

struct surg_pattern {
    arena ar;
    gl_pattern pat;
    gl_scratch scratch;
};

surg_status surg_pattern_compile(const char *text, surg_pattern **out, char *err,
                                 size_t err_cap)
{
    *out = NULL;
    surg_pattern *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, err_cap, "out of memory");
        return SURG_ENOMEM;
    }
    ar_init(&p->ar);
    char why[256];
    if (!gl_compile(&p->ar, text, &p->pat, why, sizeof why)) {
        snprintf(err, err_cap, "%s", why);
        surg_pattern_free(p);
        return SURG_EINVALID;
    }
    *out = p;
    return SURG_OK;
}

int surg_pattern_match(surg_pattern *p, const char *name)
{
    gl_span caps[GL_MAX_CAPTURES + 1];
    size_t len = strlen(name);
    if (len > UINT32_MAX)
        return 0;
    return gl_match(&p->pat, name, (uint32_t)len, caps, &p->scratch);
}

void surg_pattern_free(surg_pattern *p)
{
    if (!p)
        return;
    gl_scratch_free(&p->scratch);
    ar_free(&p->ar);
    free(p);
}
