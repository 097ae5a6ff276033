/* Paged decode attention on the CPU: one new query token per sequence attends over its
 * cached keys and values read in place through the block table (no gathered copy of the
 * context, no padding to the longest sequence), with an online softmax in float32.
 *
 * Layouts (all contiguous):
 *   q        (S, H, Dk)                     float32 or bfloat16 (q_bf16)
 *   kcache   (num_blocks, bs, Hkv, Dk)      float32 or bfloat16 (kv_bf16)
 *   vcache   (num_blocks, bs, Hkv, Dv)      same dtype as kcache
 *   blocks   (S, B) int64, row stride `blocks_stride`
 *   starts, ends (S,) int64: sequence s sees keys [starts[s], ends[s])
 *   out      (S, H, Dv)                     same dtype as q
 * Query heads h share KV head h / (H / Hkv) (GQA/MQA). softcap <= 0: none.
 * Sequences are split over `nthreads` OpenMP threads (torch's pool), balanced by keys.
 *
 * Built at first use by hearth/model/paged_kernel.py with the system C compiler. */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_common.h"

#define MAX_GROUP 32
#define MAX_DIM 512
#define MAX_BLOCK 64
#define MIN_KEYS_PER_THREAD 4096

typedef struct {
    const void *q, *kcache, *vcache;
    const int64_t *blocks, *starts, *ends;
    void *out;
    int64_t blocks_stride;
    int S, H, Hkv, Dk, Dv, bs, q_bf16, kv_bf16;
    float scale, softcap;
    int first, last; /* work items [first, last) */
} paged_job_t;

static inline void load_row(float *dst, const void *base, int64_t index, int n, int bf16) {
    if (bf16) {
        const uint16_t *src = (const uint16_t *)base + index;
#pragma omp simd
        for (int i = 0; i < n; i++) dst[i] = bf16_to_f32(src[i]);
    } else {
        memcpy(dst, (const float *)base + index, (size_t)n * sizeof(float));
    }
}

/* One sequence, every head: each block's keys (then values) for all KV heads are one
 * contiguous run of memory, read once and widened into `kbuf`. Per-head state on the heap. */
static void paged_item(const paged_job_t *job, int s) {
    const int H = job->H, Hkv = job->Hkv, g = H / Hkv, Dk = job->Dk, Dv = job->Dv;
    const int bs = job->bs;
    const int64_t krow = (int64_t)Hkv * Dk, vrow = (int64_t)Hkv * Dv;
    float *qf = malloc(sizeof(float) * ((size_t)H * Dk + (size_t)H * Dv + (size_t)H * MAX_BLOCK +
                                        2 * (size_t)H + (size_t)bs * (krow > vrow ? krow : vrow)));
    if (!qf) return;
    float *acc = qf + (size_t)H * Dk, *scores = acc + (size_t)H * Dv;
    float *m = scores + (size_t)H * MAX_BLOCK, *l = m + H, *buf = l + H;

    for (int h = 0; h < H; h++) {
        load_row(qf + (size_t)h * Dk, job->q, ((int64_t)s * H + h) * Dk, Dk, job->q_bf16);
        for (int d = 0; d < Dk; d++) qf[(size_t)h * Dk + d] *= job->scale;
        m[h] = -INFINITY;
        l[h] = 0.0f;
    }
    memset(acc, 0, sizeof(float) * (size_t)H * Dv);
    const int64_t *table = job->blocks + (int64_t)s * job->blocks_stride;
    const int64_t start = job->starts[s], end = job->ends[s];
    for (int64_t b = start / bs; b * bs < end; b++) {
        const int lo = b * bs < start ? (int)(start - b * bs) : 0;
        const int hi = (b + 1) * bs > end ? (int)(end - b * bs) : bs;
        const int n = hi - lo;
        const int64_t first = table[b] * bs + lo; /* slot of this block's first visible key */
        load_row(buf, job->kcache, first * krow, (int)(n * krow), job->kv_bf16);
        for (int h = 0; h < H; h++) {
            const float *qh = qf + (size_t)h * Dk;
            const int kvh = h / g;
            float *sc = scores + (size_t)h * MAX_BLOCK;
            for (int j = 0; j < n; j++) {
                const float *kr = buf + j * krow + (int64_t)kvh * Dk;
                float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
                for (int d = 0; d < Dk; d++) dot += qh[d] * kr[d];
                sc[j] = dot;
            }
            if (job->softcap > 0.0f)
                for (int j = 0; j < n; j++) sc[j] = tanhf(sc[j] / job->softcap) * job->softcap;
            /* online softmax: rescale what was summed so far to the new running max */
            float mx = m[h];
            for (int j = 0; j < n; j++) mx = sc[j] > mx ? sc[j] : mx;
            const float correction = exp_f32(m[h] - mx); /* m = -inf at first: ~0 */
            m[h] = mx;
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int j = 0; j < n; j++) {
                sc[j] = exp_f32(sc[j] - mx);
                sum += sc[j];
            }
            l[h] = l[h] * correction + sum;
            if (correction != 1.0f) {
                float *ah = acc + (size_t)h * Dv;
#pragma omp simd
                for (int d = 0; d < Dv; d++) ah[d] *= correction;
            }
        }
        load_row(buf, job->vcache, first * vrow, (int)(n * vrow), job->kv_bf16);
        for (int h = 0; h < H; h++) {
            float *ah = acc + (size_t)h * Dv;
            const float *sc = scores + (size_t)h * MAX_BLOCK;
            const int kvh = h / g;
            for (int j = 0; j < n; j++) {
                const float *vr = buf + j * vrow + (int64_t)kvh * Dv;
                const float p = sc[j];
#pragma omp simd
                for (int d = 0; d < Dv; d++) ah[d] += p * vr[d];
            }
        }
    }
    for (int h = 0; h < H; h++) {
        /* no visible key (cannot happen for a causal decode step): zeros, like a masked row */
        const float inv = l[h] > 0.0f ? 1.0f / l[h] : 0.0f;
        const int64_t oi = ((int64_t)s * H + h) * Dv;
        const float *ah = acc + (size_t)h * Dv;
        if (job->q_bf16) {
            uint16_t *o = (uint16_t *)job->out + oi;
            for (int d = 0; d < Dv; d++) o[d] = f32_to_bf16(ah[d] * inv);
        } else {
            float *o = (float *)job->out + oi;
            for (int d = 0; d < Dv; d++) o[d] = ah[d] * inv;
        }
    }
    free(qf);
}

static void paged_range(const paged_job_t *job) {
    for (int item = job->first; item < job->last; item++) paged_item(job, item);
}

/* the work-sharing pool (thread_pool.c), handed over as a function pointer */
static pool_fn paged_pool;

void hearth_paged_set_pool(pool_fn fn) { paged_pool = fn; }

static void paged_pool_item(void *ctx, int64_t s) { paged_item((const paged_job_t *)ctx, (int)s); }

/* Returns 0 on success, 1 when a size is over the kernel's limits (caller falls back). */
int hearth_paged_decode(const void *q, const void *kcache, const void *vcache,
                        const int64_t *blocks, int64_t blocks_stride, const int64_t *starts,
                        const int64_t *ends, void *out, int S, int H, int Hkv, int Dk, int Dv,
                        int bs, float scale, float softcap, int q_bf16, int kv_bf16,
                        int nthreads, int pooled) {
    if (Hkv <= 0 || H % Hkv != 0 || bs > MAX_BLOCK || H / Hkv > MAX_GROUP || Dk > MAX_DIM ||
        Dv > MAX_DIM)
        return 1;
    const int items = S;
    int64_t work = 0; /* keys read, over all items: what the threads share */
    for (int i = 0; i < S; i++) work += (ends[i] - starts[i]) * Hkv;
    /* waking a pool thread costs about what reading a few thousand keys does */
    if (nthreads > work / MIN_KEYS_PER_THREAD) nthreads = (int)(work / MIN_KEYS_PER_THREAD);
    if (nthreads > items) nthreads = items;
    if (nthreads > 64) nthreads = 64;
    if (nthreads < 1) nthreads = 1;
    paged_job_t base = {q,  kcache, vcache, blocks, starts, ends, out, blocks_stride, S, H, Hkv,
                  Dk, Dv,     bs,     q_bf16, kv_bf16, scale, softcap, 0,       items};
    if (nthreads == 1) {
        paged_range(&base);
        return 0;
    }
    if (pooled && paged_pool) { /* items claimed one sequence at a time: balanced as they go */
        paged_pool(paged_pool_item, &base, items, nthreads);
        return 0;
    }
    paged_job_t jobs[64];
    /* contiguous item ranges of about equal work (sequences differ in length) */
    int item = 0;
    int64_t done = 0;
    for (int t = 0; t < nthreads; t++) {
        jobs[t] = base;
        jobs[t].first = item;
        const int64_t goal = work * (t + 1) / nthreads;
        while (item < items && (t == nthreads - 1 || done < goal)) {
            done += (ends[item] - starts[item]) * Hkv;
            item++;
        }
        jobs[t].last = item;
    }
    /* torch's own OpenMP runtime (the .so is loaded after torch, and libgomp.so.1 resolves
     * to the copy torch loaded): its pool's workers run these ranges, where threads of our
     * own would fight them for the cores while they spin after torch's last op */
#pragma omp parallel for num_threads(nthreads) schedule(static, 1)
    for (int t = 0; t < nthreads; t++) paged_range(&jobs[t]);
    return 0;
}
