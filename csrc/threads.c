/*
 * threads.c: a small thread pool for the kernels' block-parallel loops.
 *
 * Why not OpenMP: GNU libgomp's pool does not survive fork() (a child that uses OpenMP
 * after its parent did can hang), and fastloss is used under multiprocessing, Dask and
 * gunicorn workers.  This pool:
 *  - runs fn(ctx, t) for t in [0, n_tasks) on up to n_threads threads, the caller
 *    included, tasks claimed in order from an atomic counter;
 *  - is one per process and used by one call at a time: a call that finds it busy (another
 *    Python thread is in a parallel call) runs its tasks alone on its own thread, so
 *    concurrent callers never oversubscribe the cores;
 *  - survives fork(): pthread_atfork handlers make the child start with no workers (they
 *    are created again on first use) and fresh locks.  A fork does not wait for a parallel
 *    call running in another thread (that thread may be waiting for the GIL the forking
 *    thread holds, see fl_parallel_for_poll): the child simply does not inherit the call;
 *  - can be stopped (fl_parallel_for_poll): the caller polls between its tasks and, when
 *    told to stop, makes the task counter run past the end, so no thread starts another
 *    task; the running ones finish (a task is one block: well under a millisecond to a
 *    few milliseconds of work);
 *  - has nothing to do with results: the callers split work into blocks fixed by the data
 *    shape and combine block partials in block order, so any thread count gives the same
 *    bits.
 * Without pthreads (Windows builds), every call runs serially.
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* clock_gettime, CLOCK_MONOTONIC under -std=c11 */
#endif
#include <stdint.h>
#include <time.h>

#include "fastloss.h"

/* A monotonic clock in nanoseconds (only differences are used). */
static int64_t fl_now_ns(void)
{
    struct timespec ts;
#if defined(CLOCK_MONOTONIC) && !defined(_WIN32)
    clock_gettime(CLOCK_MONOTONIC, &ts);
#else
    timespec_get(&ts, TIME_UTC);
#endif
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The tasks on the calling thread alone, polling between them: 1, or -1 when stopped. */
static int run_serial(int64_t n_tasks, fl_task_fn fn, void *ctx, fl_poll_fn poll,
                      void *poll_ctx, int64_t interval_ns)
{
    if (!poll) {
        for (int64_t t = 0; t < n_tasks; t++)
            fn(ctx, t);
        return 1;
    }
    int64_t next_poll = fl_now_ns() + interval_ns;
    for (int64_t t = 0; t < n_tasks; t++) {
        fn(ctx, t);
        if (t + 1 < n_tasks && fl_now_ns() >= next_poll) {
            if (poll(poll_ctx))
                return -1;
            next_poll = fl_now_ns() + interval_ns;
        }
    }
    return 1;
}

static int64_t interval_to_ns(int interval_ms)
{
    return (int64_t)(interval_ms > 0 ? interval_ms : 0) * 1000000;
}

#if defined(_WIN32) || defined(FL_NO_THREADS)

int fl_parallel_for_poll(int64_t n_tasks, int n_threads, fl_task_fn fn, void *ctx,
                         fl_poll_fn poll, void *poll_ctx, int interval_ms)
{
    (void)n_threads;
    return run_serial(n_tasks, fn, ctx, poll, poll_ctx, interval_to_ns(interval_ms));
}

int fl_parallel_for(int64_t n_tasks, int n_threads, fl_task_fn fn, void *ctx)
{
    return fl_parallel_for_poll(n_tasks, n_threads, fn, ctx, NULL, NULL, 0);
}

int fl_num_cores(void) { return 1; }

#else

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#define FL_MAX_THREADS 256

static struct {
    pthread_mutex_t lock;    /* guards everything below but the atomics */
    pthread_cond_t wake;     /* workers wait here for a new generation */
    pthread_cond_t done;     /* the caller waits here for its helpers */
    pthread_mutex_t busy;    /* held for the whole of one parallel call */
    int n_workers;           /* threads created so far */
    unsigned long generation;
    int wanted;              /* workers asked to join the current job */
    int joined;              /* workers that took part in the current job */
    int finished;            /* workers that finished the current job */
    fl_task_fn fn;
    void *ctx;
    int64_t n_tasks;
    atomic_int_fast64_t next;
} pool = {
    PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
    PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0, 0, NULL, NULL, 0, 0,
};

static void run_tasks(fl_task_fn fn, void *ctx, int64_t n_tasks)
{
    for (;;) {
        const int64_t t = atomic_fetch_add(&pool.next, 1);
        if (t >= n_tasks)
            return;
        fn(ctx, t);
    }
}

static void *worker(void *arg)
{
    (void)arg;
    unsigned long seen = 0;
    pthread_mutex_lock(&pool.lock);
    seen = pool.generation;
    for (;;) {
        while (pool.generation == seen || pool.joined >= pool.wanted) {
            if (pool.generation != seen)
                seen = pool.generation; /* a job we are not needed for */
            pthread_cond_wait(&pool.wake, &pool.lock);
        }
        seen = pool.generation;
        pool.joined++;
        fl_task_fn fn = pool.fn;
        void *ctx = pool.ctx;
        const int64_t n_tasks = pool.n_tasks;
        pthread_mutex_unlock(&pool.lock);
        run_tasks(fn, ctx, n_tasks);
        pthread_mutex_lock(&pool.lock);
        pool.finished++;
        pthread_cond_signal(&pool.done);
    }
    return NULL;
}

/* fork: the parent holds the pool's state lock across fork() (held only for short
 * bookkeeping, never while waiting for anything else), so the child sees consistent
 * fields; the child gets a pool with no workers and fresh locks.  `busy` is deliberately
 * not taken: a parallel call in another thread may be polling for the GIL (Ctrl-C, see
 * fl_parallel_for_poll) that the forking thread holds, and waiting for it would deadlock.
 * The child has no part in that call: its caller thread does not exist there. */
static void atfork_prepare(void)
{
    pthread_mutex_lock(&pool.lock);
}

static void atfork_parent(void)
{
    pthread_mutex_unlock(&pool.lock);
}

static void atfork_child(void)
{
    pthread_mutex_init(&pool.lock, NULL);
    pthread_mutex_init(&pool.busy, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pthread_cond_init(&pool.done, NULL);
    pool.n_workers = 0;
    pool.wanted = pool.joined = pool.finished = 0;
    pool.n_tasks = 0;
    atomic_store(&pool.next, 0);
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void register_atfork(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

int fl_num_cores(void)
{
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (n > FL_MAX_THREADS ? FL_MAX_THREADS : (int)n);
}

/* The caller's share of a pooled job: claims tasks like the helpers and polls between
 * them.  Returns 1 when stopped (the counter is then past the end for everyone), else 0
 * once every task has been claimed. */
static int run_caller(fl_task_fn fn, void *ctx, int64_t n_tasks, fl_poll_fn poll,
                      void *poll_ctx, int64_t interval_ns)
{
    int64_t next_poll = poll ? fl_now_ns() + interval_ns : 0;
    for (;;) {
        const int64_t t = atomic_fetch_add(&pool.next, 1);
        if (t >= n_tasks)
            return 0;
        fn(ctx, t);
        if (poll && fl_now_ns() >= next_poll) {
            if (poll(poll_ctx)) {
                /* no thread starts another task (fetch_add only grows past n_tasks) */
                atomic_store(&pool.next, n_tasks);
                return 1;
            }
            next_poll = fl_now_ns() + interval_ns;
        }
    }
}

int fl_parallel_for(int64_t n_tasks, int n_threads, fl_task_fn fn, void *ctx)
{
    return fl_parallel_for_poll(n_tasks, n_threads, fn, ctx, NULL, NULL, 0);
}

int fl_parallel_for_poll(int64_t n_tasks, int n_threads, fl_task_fn fn, void *ctx,
                         fl_poll_fn poll, void *poll_ctx, int interval_ms)
{
    const int64_t interval_ns = interval_to_ns(interval_ms);
    if (n_threads > FL_MAX_THREADS)
        n_threads = FL_MAX_THREADS;
    if ((int64_t)n_threads > n_tasks)
        n_threads = (int)n_tasks;
    if (n_threads <= 1 || pthread_mutex_trylock(&pool.busy) != 0) /* or the pool is in use */
        return run_serial(n_tasks, fn, ctx, poll, poll_ctx, interval_ns);
    pthread_once(&atfork_once, register_atfork);
    pthread_mutex_lock(&pool.lock);
    while (pool.n_workers < n_threads - 1) {
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        const int rc = pthread_create(&th, &attr, worker, NULL);
        pthread_attr_destroy(&attr);
        if (rc != 0)
            break; /* fewer threads than asked: still correct */
        pool.n_workers++;
    }
    const int helpers = n_threads - 1 < pool.n_workers ? n_threads - 1 : pool.n_workers;
    pool.fn = fn;
    pool.ctx = ctx;
    pool.n_tasks = n_tasks;
    atomic_store(&pool.next, 0);
    pool.wanted = helpers;
    pool.joined = 0;
    pool.finished = 0;
    pool.generation++;
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);

    const int stopped = run_caller(fn, ctx, n_tasks, poll, poll_ctx, interval_ns);

    pthread_mutex_lock(&pool.lock);
    /* every task has been claimed (or none will be: stopped); wait for the helpers that
     * joined to finish theirs, and close the job so that a late worker does not join it */
    pool.wanted = pool.joined;
    while (pool.finished < pool.joined)
        pthread_cond_wait(&pool.done, &pool.lock);
    const int used = 1 + pool.joined;
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&pool.busy);
    return stopped ? -1 : used;
}

#endif
