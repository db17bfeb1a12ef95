/* mpi.c: `mpirun -n N surg run ... --part auto` as one run (built with
 * -DSURG_MPI=ON): the ranks compare their plans before writing, and rank 0
 * writes the index once every rank is done. Without MPI built in, each
 * part runs on its own and `surg index` completes the output. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#ifdef SURG_MPI
#include <mpi.h>

bool mpi_begin(mpi_run *m, const surg_part *part)
{
    *m = (mpi_run){0};
    if (part->source != SURG_PART_OMPI && part->source != SURG_PART_PMI)
        return true;
    if (MPI_Init(NULL, NULL) != MPI_SUCCESS) {
        fputs("surg run: MPI did not start\n", stderr);
        return false;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &m->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &m->size);
    m->on = true;
    if ((unsigned)m->rank != part->index || (unsigned)m->size != part->count) {
        fprintf(stderr, "surg run: MPI says rank %d of %d, and %s says part %u of %u\n",
                m->rank, m->size, surg_part_source_name(part->source), part->index,
                part->count);
        MPI_Abort(MPI_COMM_WORLD, 2);
        return false;
    }
    return true;
}

bool mpi_all_ok(mpi_run *m, bool ok)
{
    int mine = ok, all = 0;
    if (!m->on)
        return ok;
    MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return all != 0;
}

void mpi_first_digest(mpi_run *m, const char *digest, char *first)
{
    char b[SURG_DIGEST_CHARS + 1] = {0};
    strncpy(b, digest, SURG_DIGEST_CHARS);
    if (m->on)
        MPI_Bcast(b, (int)sizeof b, MPI_CHAR, 0, MPI_COMM_WORLD);
    memcpy(first, b, sizeof b);
}

int mpi_from_first(mpi_run *m, int v)
{
    if (m->on)
        MPI_Bcast(&v, 1, MPI_INT, 0, MPI_COMM_WORLD);
    return v;
}

void mpi_end(mpi_run *m)
{
    if (m->on)
        MPI_Finalize();
    m->on = false;
}

#else

bool mpi_begin(mpi_run *m, const surg_part *part)
{
    (void)part;
    *m = (mpi_run){0};
    return true;
}

bool mpi_all_ok(mpi_run *m, bool ok)
{
    (void)m;
    return ok;
}

void mpi_first_digest(mpi_run *m, const char *digest, char *first)
{
    (void)m;
    memcpy(first, digest, SURG_DIGEST_CHARS + 1);
}

int mpi_from_first(mpi_run *m, int v)
{
    (void)m;
    return v;
}

void mpi_end(mpi_run *m) { m->on = false; }

#endif
