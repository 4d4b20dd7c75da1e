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
 *
 * How many threads `threads = 0` means: the CPUs this process may really
 * use, not the CPUs the machine has.  A container limited to 2 CPUs on a
 * 64-core host sees 64 online CPUs (sysconf) but has either an affinity mask
 * of 2 (docker --cpuset-cpus, taskset) or a CFS quota worth 2 CPUs (docker
 * --cpus, Kubernetes limits); 64 threads there would time-slice on 2 cores.
 * So: the affinity mask, then the smallest cgroup CPU quota on the path from
 * the process's cgroup to the root (v2 cpu.max, v1 cpu.cfs_quota_us /
 * cpu.cfs_period_us), rounded up.  Read on every call (a few system calls:
 * nothing next to starting the threads), so a changed mask or quota is seen
 * at once and no state is cached.
 */
#include "avq_internal.h"

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { AVQ_MAX_THREADS = 256 };

/* CPUs in this thread's affinity mask, or 0 if it cannot be read. */
static int affinity_cpus(void) {
    for (size_t ncpu = 1024; ncpu <= (1u << 16); ncpu *= 4) {
        cpu_set_t *set = CPU_ALLOC(ncpu);
        if (!set) return 0;
        size_t bytes = CPU_ALLOC_SIZE(ncpu);
        CPU_ZERO_S(bytes, set);
        int r = sched_getaffinity(0, bytes, set);
        int count = r == 0 ? CPU_COUNT_S(bytes, set) : 0;
        CPU_FREE(set);
        if (r == 0) return count;
        /* EINVAL: the kernel's mask is larger than ours; try a larger one */
    }
    return 0;
}

/* The first line of a small file into buf; false if it cannot be read. */
static bool read_line(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    bool ok = fgets(buf, (int)cap, f) != NULL;
    fclose(f);
    return ok;
}

/* CPUs a quota/period pair allows, rounded up; 0 = no limit. */
static int quota_cpus(double quota, double period) {
    if (!(quota > 0) || !(period > 0)) return 0;
    double cpus = ceil(quota / period);
    return cpus >= AVQ_MAX_THREADS ? AVQ_MAX_THREADS : (cpus < 1 ? 1 : (int)cpus);
}

/* The limit of one cgroup directory (v2 cpu.max or v1 CFS files); 0 = none. */
static int dir_limit(const char *dir, bool v2) {
    char path[PATH_MAX], line[128];
    if (v2) {
        if (snprintf(path, sizeof path, "%s/cpu.max", dir) >= (int)sizeof path) return 0;
        if (!read_line(path, line, sizeof line)) return 0;
        char quota[32];
        double period = 0;
        if (sscanf(line, "%31s %lf", quota, &period) != 2 || !strcmp(quota, "max")) return 0;
        return quota_cpus(strtod(quota, NULL), period);
    }
    double quota = -1, period = 0;
    if (snprintf(path, sizeof path, "%s/cpu.cfs_quota_us", dir) >= (int)sizeof path) return 0;
    if (!read_line(path, line, sizeof line) || sscanf(line, "%lf", &quota) != 1) return 0;
    if (snprintf(path, sizeof path, "%s/cpu.cfs_period_us", dir) >= (int)sizeof path) return 0;
    if (!read_line(path, line, sizeof line) || sscanf(line, "%lf", &period) != 1) return 0;
    return quota_cpus(quota, period);
}

/* The smallest limit from mount/cgroup up to mount (each ancestor's limit
 * applies too); 0 = none. */
static int path_limit(const char *mount, const char *cgroup, bool v2) {
    char dir[PATH_MAX];
    if (snprintf(dir, sizeof dir, "%s%s", mount, cgroup) >= (int)sizeof dir) return 0;
    size_t root = strlen(mount);
    int best = 0;
    for (;;) {
        int l = dir_limit(dir, v2);
        if (l > 0 && (best == 0 || l < best)) best = l;
        char *slash = strrchr(dir, '/');
        if (!slash || (size_t)(slash - dir) < root) break;
        *slash = '\0';
    }
    return best;
}

/* The CPU quota of this process's cgroup (v2, else v1 "cpu" controller), in
 * CPUs rounded up; 0 = no quota or no cgroup file system. */
static int cgroup_cpus(void) {
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f) return 0;
    char line[PATH_MAX + 64];
    int best = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        /* "ID:CONTROLLERS:PATH"; v2 is "0::PATH" */
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c2 = '\0';
        const char *controllers = c1 + 1, *path = c2 + 1;
        int l = 0;
        if (*controllers == '\0') {
            l = path_limit("/sys/fs/cgroup", path, true);
        } else {
            bool cpu = false;
            char list[256];
            snprintf(list, sizeof list, "%s", controllers);
            for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save))
                cpu |= strcmp(t, "cpu") == 0;
            if (!cpu) continue;
            static const char *const mounts[] = {"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct",
                                                 "/sys/fs/cgroup/cpuacct,cpu"};
            for (size_t m = 0; m < sizeof mounts / sizeof mounts[0] && l == 0; m++) {
                /* (the walk up ends at the mount itself: inside a
                 * container that is often the process's own cgroup, while
                 * PATH names it from the host) */
                l = path_limit(mounts[m], path, false);
            }
        }
        if (l > 0 && (best == 0 || l < best)) best = l;
    }
    fclose(f);
    return best;
}

int avq_cpu_count(void) {
    int n = affinity_cpus();
    if (n < 1) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        n = online < 1 ? 1 : (online > AVQ_MAX_THREADS ? AVQ_MAX_THREADS : (int)online);
    }
    int quota = cgroup_cpus();
    if (quota > 0 && quota < n) n = quota;
    return n < 1 ? 1 : (n > AVQ_MAX_THREADS ? AVQ_MAX_THREADS : n);
}

int avq_default_threads(void) { return avq_cpu_count(); }

int avq_resolve_threads(int threads) {
    if (threads <= 0) return avq_cpu_count();
    return threads > AVQ_MAX_THREADS ? AVQ_MAX_THREADS : threads;
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
