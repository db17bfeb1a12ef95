/* jobs.c: the pool of threads the executor runs its jobs on, with room for
 * the kernels on every worker's stack and in its scratch. */
#include "runtime/jobs.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "support/diag.h"

enum {
    /* Kernels recurse once per level of the op graph (at most CG_MAX_DEPTH):
     * a worker's stack is at least this, whatever the platform's default. */
    WORKER_STACK = 8 << 20,
};

bool jb_add(jb_list *l, jb_job j)
{
    if (l->n == l->cap) {
        size_t grown = l->cap ? l->cap * 2 : 1024;
        jb_job *v = realloc(l->v, grown * sizeof *v);
        if (!v)
            return false;
        l->v = v;
        l->cap = grown;
    }
    l->v[l->n++] = j;
    return true;
}

static void locked_report(const surg_diag *d, void *user)
{
    jb_pool *p = user;
    pthread_mutex_lock(&p->lock);
    dg_emit(p->sink, d);
    pthread_mutex_unlock(&p->lock);
}

void jb_pool_init(jb_pool *p, surg_sink *sink)
{
    p->sink = sink;
    p->locked = (surg_sink){.fn = locked_report, .user = p};
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->idle_lock, NULL);
    pthread_condattr_t monotonic;
    pthread_condattr_init(&monotonic);
    pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
    pthread_cond_init(&p->idle, &monotonic);
    pthread_condattr_destroy(&monotonic);
}

void jb_pool_destroy(jb_pool *p)
{
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->idle_lock);
    pthread_cond_destroy(&p->idle);
}

static void *work(void *arg)
{
    jb_worker *w = arg;
    jb_pool *p = w->pool;
    for (;;) {
        size_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->jobs->n || atomic_load(&p->failed))
            break;
        kx_scratch_reset(&w->scratch);
        surg_status st = p->run(p->user, w, &p->jobs->v[i]);
        if (st != SURG_OK) {
            int none = SURG_OK;
            atomic_compare_exchange_strong(&p->fail_status, &none, (int)st);
            atomic_store(&p->failed, true);
            break;
        }
        atomic_fetch_add(&p->done, p->bytes(p->user, &p->jobs->v[i]));
    }
    pthread_mutex_lock(&p->idle_lock);
    p->running--;
    pthread_cond_signal(&p->idle);
    pthread_mutex_unlock(&p->idle_lock);
    return NULL;
}

static bool start_worker(jb_pool *p, pthread_t *tid, jb_worker *w)
{
    pthread_attr_t attr;
    size_t stack;
    if (pthread_attr_init(&attr) != 0)
        return false;
    if (pthread_attr_getstacksize(&attr, &stack) == 0 && stack < WORKER_STACK)
        pthread_attr_setstacksize(&attr, WORKER_STACK);
    pthread_mutex_lock(&p->idle_lock);
    p->running++;
    pthread_mutex_unlock(&p->idle_lock);
    bool ok = pthread_create(tid, &attr, work, w) == 0;
    if (!ok) {
        pthread_mutex_lock(&p->idle_lock);
        p->running--;
        pthread_mutex_unlock(&p->idle_lock);
    }
    pthread_attr_destroy(&attr);
    return ok;
}

/* Until every worker has stopped: the last one wakes the wait at once. In
 * between, every 100 ms, the caller's tick (progress, write-back hints). */
static void wait_workers(jb_pool *p)
{
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    pthread_mutex_lock(&p->idle_lock);
    while (p->running) {
        next.tv_nsec += 100 * 1000 * 1000;
        if (next.tv_nsec >= 1000 * 1000 * 1000) {
            next.tv_sec++;
            next.tv_nsec -= 1000 * 1000 * 1000;
        }
        int rc = 0;
        while (p->running && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&p->idle, &p->idle_lock, &next);
        if (!p->running)
            break;
        pthread_mutex_unlock(&p->idle_lock);
        if (p->tick)
            p->tick(p->user, atomic_load(&p->done));
        clock_gettime(CLOCK_MONOTONIC, &next);
        pthread_mutex_lock(&p->idle_lock);
    }
    pthread_mutex_unlock(&p->idle_lock);
}

surg_status jb_run(jb_pool *p, jb_list *jobs)
{
    unsigned threads = p->threads ? p->threads : 1;
    jb_worker *w = calloc(threads, sizeof *w);
    pthread_t *tid = calloc(threads, sizeof *tid);
    unsigned started = 0;
    bool ok = w && tid;
    for (unsigned i = 0; ok && i < threads; i++) {
        w[i].pool = p;
        w[i].scratch.mem = malloc(p->scratch);
        w[i].scratch.size = p->scratch;
        w[i].vals = malloc(p->max_chunk * sizeof *w[i].vals);
        w[i].bytes = malloc(p->max_chunk * 8);
        ok = w[i].scratch.mem && w[i].vals && w[i].bytes;
    }
    p->jobs = jobs;
    atomic_store(&p->next, 0);
    for (unsigned i = 0; ok && i < threads; i++)
        if (start_worker(p, &tid[started], &w[i]))
            started++;
    ok = ok && started > 0;
    wait_workers(p);
    for (unsigned i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    for (unsigned i = 0; w && i < threads; i++) {
        kx_scratch_free(&w[i].scratch);
        free(w[i].vals);
        free(w[i].bytes);
    }
    free(w);
    free(tid);
    if (!ok) {
        dg_nomem(p->sink, "surg");
        return SURG_ENOMEM;
    }
    surg_status failure = (surg_status)atomic_load(&p->fail_status);
    return atomic_load(&p->failed) ? (failure ? failure : SURG_EIO) : SURG_OK;
}
