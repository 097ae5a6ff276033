/* A work-sharing thread pool for hearth's kernels on a machine hearth may share.
 *
 * Why not OpenMP: with OMP_WAIT_POLICY=PASSIVE (hearth's default, so idle workers never
 * steal a busy machine's cores) every parallel region wakes its sleeping workers through
 * the kernel, ~100 us each on the 2-core VM measured; a decode step has ~120 matmuls. With
 * spinning workers a region instead waits for any worker another process has descheduled.
 *
 * Here the caller and the helpers claim items from one counter and the caller waits only
 * for items a helper has claimed, never for a helper to turn up: a descheduled helper just
 * leaves its share to the others. Helpers spin for SPIN_US after each job (the gap
 * between a step's matmuls is tens of microseconds), then sleep on a futex until the next.
 *
 * Jobs are submitted one at a time; a call while another runs executes serially. */

#define _GNU_SOURCE
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PAUSE() _mm_pause()
#else
#define PAUSE() ((void)0)
#endif

#define MAX_HELPERS 63

typedef void (*item_fn)(void *ctx, int64_t item);

static _Atomic uint64_t claim;      /* job generation << 32 | next unclaimed item */
static _Atomic(item_fn) job_fn;
static _Atomic(void *) job_ctx;
static _Atomic int64_t job_items;
static _Atomic int64_t done;        /* items finished in this job */
static _Atomic uint32_t wake_seq;   /* futex word helpers sleep on */
static _Atomic int sleepers;
#define SPIN_US 200           /* how long a helper spins after a job before it sleeps */
static int helpers;                 /* started so far (under submit_lock) */
static pthread_mutex_t submit_lock = PTHREAD_MUTEX_INITIALIZER;

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* claim and run items of generation `gen` until none are left (or a newer job began) */
static void work(uint32_t gen) {
    item_fn fn = atomic_load_explicit(&job_fn, memory_order_relaxed);
    void *ctx = atomic_load_explicit(&job_ctx, memory_order_relaxed);
    const int64_t n = atomic_load_explicit(&job_items, memory_order_relaxed);
    uint64_t v = atomic_load(&claim);
    for (;;) {
        if ((uint32_t)(v >> 32) != gen || (int64_t)(v & 0xffffffffu) >= n) return;
        if (atomic_compare_exchange_weak(&claim, &v, v + 1)) {
            fn(ctx, (int64_t)(v & 0xffffffffu));
            atomic_fetch_add_explicit(&done, 1, memory_order_release);
            v = atomic_load(&claim);
        }
    }
}

static void *helper(void *arg) {
    (void)arg;
    uint32_t seen = (uint32_t)(atomic_load(&claim) >> 32);
    for (;;) {
        const int64_t until = now_us() + SPIN_US;
        int spins = 0;
        uint32_t gen;
        while ((gen = (uint32_t)(atomic_load(&claim) >> 32)) == seen) {
            PAUSE();
            if (++spins % 64 == 0 && now_us() > until) {
                const uint32_t seq = atomic_load(&wake_seq);
                atomic_fetch_add(&sleepers, 1);
                if ((uint32_t)(atomic_load(&claim) >> 32) == seen)
                    syscall(SYS_futex, &wake_seq, FUTEX_WAIT_PRIVATE, seq, NULL, NULL, 0);
                atomic_fetch_sub(&sleepers, 1);
                spins = 0;
            }
        }
        seen = gen;
        work(gen);
    }
    return NULL;
}

/* fn(ctx, i) for i in [0, n) on the caller and up to nthreads - 1 helpers. */
void hearth_pool_run(item_fn fn, void *ctx, int64_t n, int nthreads) {
    if (nthreads <= 1 || n <= 1 || n > 0x7fffffff || pthread_mutex_trylock(&submit_lock)) {
        for (int64_t i = 0; i < n; i++) fn(ctx, i);
        return;
    }
    const int want = nthreads - 1 < MAX_HELPERS ? nthreads - 1 : MAX_HELPERS;
    while (helpers < want) {
        pthread_t t;
        if (pthread_create(&t, NULL, helper, NULL)) break;
        pthread_detach(t);
        helpers++;
    }
    const uint32_t gen = (uint32_t)(atomic_load(&claim) >> 32) + 1;
    atomic_store_explicit(&job_fn, fn, memory_order_relaxed);
    atomic_store_explicit(&job_ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&job_items, n, memory_order_relaxed);
    atomic_store_explicit(&done, 0, memory_order_relaxed);
    atomic_store(&claim, (uint64_t)gen << 32); /* publishes the fields above */
    if (atomic_load(&sleepers) > 0) {
        atomic_fetch_add(&wake_seq, 1);
        syscall(SYS_futex, &wake_seq, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
    }
    work(gen);
    while (atomic_load_explicit(&done, memory_order_acquire) < n) PAUSE();
    pthread_mutex_unlock(&submit_lock);
}
