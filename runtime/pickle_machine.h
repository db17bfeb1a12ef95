/* pickle_machine.h: inside the pickle reader, what torch's object model
 * (pickle_torch.c) and the interpreter (pickle.c) give each other. */
#ifndef SURG_PICKLE_MACHINE_H
#define SURG_PICKLE_MACHINE_H

#include <stdbool.h>
#include <stddef.h>

#include "runtime/pickle.h"

/* One run of the interpreter over one pickle; its fields are pickle.c's. */
typedef struct pk_machine pk_machine;

/* ---- the machine (pickle.c) --------------------------------------------- */

/* Stop the run with a stable code and a message (the first failure wins);
 * always false. */
bool pk_fail(pk_machine *m, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* n items of `size` bytes in the run's arena, charged to the pickle's
 * memory budget; NULL (the run failed) when over it or out of memory. */
void *pk_alloc(pk_machine *m, size_t n, size_t size);
pk_value *pk_new_value(pk_machine *m, pk_kind kind);

/* A container of kind holding a copy of items[0..n). */
pk_value *pk_seq_value(pk_machine *m, pk_kind kind, pk_value **items, size_t n);

/* ---- torch's object model (pickle_torch.c) ------------------------------ */

/* GLOBAL and STACK_GLOBAL: the known global module.name, or NULL (the run
 * failed: refused by name, or a dtype surg lacks). */
pk_value *pk_lookup(pk_machine *m, const char *mod, size_t mlen, const char *name, size_t nlen);

/* REDUCE: f(*args) for a known global f, as the value it would return. */
pk_value *pk_call(pk_machine *m, const pk_value *f, const pk_value *args);

/* BINPERSID: the storage a persistent id names. */
pk_value *pk_persistent_load(pk_machine *m, const pk_value *pid);

#endif
