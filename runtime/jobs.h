/* jobs.h: the executor's jobs and the pool of threads that runs a list of
 * them: each worker takes the next job until none is left or one fails,
 * while the calling thread waits and, every 100 ms, reports progress. */
#ifndef SURG_JOBS_H
#define SURG_JOBS_H

#include <pthread.h>
#include <stdatomic.h>

#include "runtime/kernel.h"

typedef enum jb_kind {
    JB_COPY,   /* a byte range of an input, copied into the output */
    JB_CHUNK,  /* a chunk of a computed, generated or moved tensor */
    JB_REDUCE, /* a chunk of a reduction's operand */
    JB_DECODE, /* an input decoded into its scratch file */
    JB_SHARE,  /* a range whose blocks an output shares with an input */
    JB_SYNC,   /* an output file synced */
} jb_kind;

typedef struct jb_job {
    jb_kind kind;
    uint32_t item;   /* plan tensor, reduction, input, share or output */
    uint32_t seg;    /* JB_COPY: the segment; JB_SYNC: the output's file */
    uint64_t start;  /* elements (bytes for a copy) */
    uint64_t n;
    uint64_t out;    /* JB_COPY: where in the tensor the piece goes */
    uint32_t crc;    /* of the bytes written, when the output wants CRCs */
} jb_job;

typedef struct jb_list {
    jb_job *v;
    size_t n, cap;
} jb_list;

bool jb_add(jb_list *l, jb_job j); /* false: out of memory */

/* A thread's memory, reused job after job. */
typedef struct jb_worker {
    struct jb_pool *pool;
    kx_scratch scratch;
    double *vals;         /* max_chunk values */
    unsigned char *bytes; /* max_chunk elements of up to 8 bytes */
} jb_worker;

typedef struct jb_pool {
    /* Set by the caller before jb_run. */
    unsigned threads;  /* 0: one */
    size_t scratch;    /* bytes of kernel scratch a worker needs */
    size_t max_chunk;  /* elements a job makes at most */
    surg_status (*run)(void *user, jb_worker *w, jb_job *j);
    uint64_t (*bytes)(void *user, const jb_job *j); /* a job's share of the progress */
    void (*tick)(void *user, uint64_t done);        /* every 100 ms while jobs run */
    void *user;
    surg_sink *sink;
    surg_sink locked;  /* `sink` for the workers: one report at a time */
    /* The pool's own. */
    jb_list *jobs;
    atomic_size_t next;
    atomic_bool failed;
    atomic_int fail_status; /* the first failure's */
    atomic_uint_fast64_t done;
    pthread_mutex_t lock; /* around `sink` */
    pthread_mutex_t idle_lock;
    pthread_cond_t idle;  /* signalled as each worker stops */
    unsigned running;     /* workers not yet stopped (under idle_lock) */
} jb_pool;

void jb_pool_init(jb_pool *p, surg_sink *sink);
void jb_pool_destroy(jb_pool *p);
/* Run every job of the list on the threads; the first failure stops the
 * rest and is returned (reported by the job that failed). */
surg_status jb_run(jb_pool *p, jb_list *jobs);

#endif
