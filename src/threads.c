/*
 * threads.c -- the single way avq runs work on several cores.
 *
 * avq_parallel_for hands out chunks of an index range from an atomic counter
 * (dynamic scheduling: a slow chunk never holds back the others) to a set of
 * pthreads created for the call, the calling thread being worker 0.
 *
 * Why plain pthreads and not OpenMP: OpenBLAS (the GEMM behind training and
 * exact search) runs its own thread pool; OpenMP workers spinning after a
 * parallel region would compete with it for the same two cores.  Threads that
 * exist only for the duration of one call cost ~20 us to start, which is
 * nothing next to the batch operations that use them, and they make the
 * `threads` argument mean exactly what it says.
 */
#include "avq_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

int avq_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (n > 256 ? 256 : (int)n);
}

int avq_resolve_threads(int threads) {
    if (threads <= 0) return avq_cpu_count();
    return threads > 256 ? 256 : threads;
}

typedef struct {
    size_t n, chunk;
    avq_range_fn fn;
    void *ctx;
    atomic_size_t next;
    atomic_int status; /* first error, AVQ_OK while none */
    /* avq_last_error() is per thread: the failing worker copies its message
     * here (only the first failure writes, after winning `status`), and the
     * calling thread re-records it, so the caller sees why. */
    char message[512];
} parallel_job;

typedef struct {
    parallel_job *job;
    int worker;
} worker_arg;

/* Take the next chunk; false when the range is exhausted or a worker failed. */
static bool take_chunk(parallel_job *job, size_t *begin, size_t *end) {
    if (atomic_load_explicit(&job->status, memory_order_relaxed) != AVQ_OK)
        return false;
    size_t b = atomic_fetch_add(&job->next, job->chunk);
    if (b >= job->n) return false;
    *begin = b;
    *end = b + job->chunk < job->n ? b + job->chunk : job->n;
    return true;
}

static void record_status(parallel_job *job, int status) {
    int expected = AVQ_OK;
    if (status != AVQ_OK && atomic_compare_exchange_strong(&job->status, &expected, status))
        snprintf(job->message, sizeof job->message, "%s", avq_last_error());
}

static void *worker_main(void *p) {
    worker_arg *arg = p;
    size_t begin, end;
    while (take_chunk(arg->job, &begin, &end))
        record_status(arg->job, arg->job->fn(arg->job->ctx, begin, end, arg->worker));
    return NULL;
}

int avq_parallel_for(size_t n, size_t chunk, int threads, avq_range_fn fn,
                     void *ctx, avq_progress_fn progress, void *progress_user,
                     const char *stage) {
    if (n == 0) return AVQ_OK;
    if (chunk == 0) chunk = 1;
    threads = avq_resolve_threads(threads);
    size_t max_useful = (n + chunk - 1) / chunk;
    if ((size_t)threads > max_useful) threads = (int)max_useful;

    parallel_job job = {.n = n, .chunk = chunk, .fn = fn, .ctx = ctx};
    atomic_init(&job.next, 0);
    atomic_init(&job.status, AVQ_OK);

    pthread_t tids[256];
    worker_arg args[256];
    int started = 1;
    for (int w = 1; w < threads; w++) {
        args[w] = (worker_arg){&job, w};
        if (pthread_create(&tids[w], NULL, worker_main, &args[w]) != 0) break;
        started++;
    }
    /* Worker 0 is this thread: it also reports progress, so callbacks never
     * run on a thread the user did not create. */
    size_t begin, end, done = 0;
    while (take_chunk(&job, &begin, &end)) {
        record_status(&job, fn(ctx, begin, end, 0));
        done = atomic_load(&job.next);
        if (progress && atomic_load(&job.status) == AVQ_OK &&
            progress(progress_user, stage, done < n ? done : n, n) != 0) {
            record_status(&job, avq_fail(AVQ_ERR_CANCELLED, "%s: cancelled by the progress callback", stage));
        }
    }
    for (int w = 1; w < started; w++) pthread_join(tids[w], NULL);
    int status = atomic_load(&job.status);
    if (status != AVQ_OK) return avq_fail(status, "%s", job.message); /* joined: visible */
    /* The final report may still cancel: with small jobs the other workers
     * can finish every chunk before this thread reports once. */
    if (status == AVQ_OK && progress && progress(progress_user, stage, n, n) != 0)
        status = avq_fail(AVQ_ERR_CANCELLED, "%s: cancelled by the progress callback", stage);
    return status;
}
