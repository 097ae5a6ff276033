/* float32 matmuls of few rows: y (M, N) = x (M, K) @ w (N, K).T (+ bias) for the decode
 * steps of a float32 model (hearth eval's road, where weights stay as lm-eval's reference
 * reads them). A step of one to a few dozen rows is a weight stream: every weight is read
 * once from DRAM and used M times. torch's CPU wheel takes MKL's SGEMM (one row through all
 * of SmolLM2's 211 projections: 51 ms, ~10 GB/s) or oneDNN's, which reorders the weight per
 * call (34 ms); here the weight rows are read in place, in memory order, four at a time
 * against up to four activation rows (16 accumulators), so a step runs at the memory's
 * speed instead of a copy's.
 *
 * Sums run over 16 lanes, then across them: the summation order differs from MKL's, so
 * products agree with it to float32 rounding (~1e-6 relative), not bit for bit.
 *
 * Output rows are split in blocks of 16 over the work-sharing pool (thread_pool.c, handed
 * over once) or OpenMP, like lowbit_matmul.c. Without AVX-512F `hearth_dense_available`
 * returns 0 and hearth keeps PyTorch's kernels. */

#include <stdint.h>
#include <string.h>

#include "kernel_common.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#define HAVE_AVX512 1
#else
#define HAVE_AVX512 0
#endif

#define NR 4         /* weight rows per pass */
#define MR 4         /* activation rows per pass */
#define BLOCK_ROWS 16 /* output rows per work item */
#ifndef PREFETCH
#define PREFETCH 1
#endif

int hearth_dense_available(void) { return HAVE_AVX512; }

static pool_fn dense_pool;

void hearth_dense_set_pool(pool_fn fn) { dense_pool = fn; }

typedef struct {
    const float *x, *w, *bias;
    float *y;
    int M, K, N;
} dense_job_t;

#if HAVE_AVX512
/* nr weight rows (w, stride K) x mr activation rows from x0 into y (stride N) at column
 * n; nr and mr are compile-time constants after inlining, so the accumulators stay in
 * registers. The K tail (K % 16) goes through masked loads. */
static inline __attribute__((always_inline)) void dense_tile(const dense_job_t *j, int m0,
                                                             int mr, int64_t n, int nr,
                                                             const float *ahead) {
    const int K = j->K;
    const float *w = j->w + n * K;
    const float *x = j->x + (int64_t)m0 * K;
    __m512 acc[MR][NR];
    for (int m = 0; m < mr; m++)
        for (int r = 0; r < nr; r++) acc[m][r] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 wv[NR];
        for (int r = 0; r < nr; r++) wv[r] = _mm512_loadu_ps(w + (int64_t)r * K + k);
        if (ahead)
            for (int r = 0; r < NR; r++) _mm_prefetch((const char *)(ahead + (int64_t)r * K + k), _MM_HINT_T0);
        for (int m = 0; m < mr; m++) {
            const __m512 xv = _mm512_loadu_ps(x + (int64_t)m * K + k);
            for (int r = 0; r < nr; r++) acc[m][r] = _mm512_fmadd_ps(xv, wv[r], acc[m][r]);
        }
    }
    if (k < K) {
        const __mmask16 tail = (__mmask16)((1u << (K - k)) - 1u);
        __m512 wv[NR];
        for (int r = 0; r < nr; r++) wv[r] = _mm512_maskz_loadu_ps(tail, w + (int64_t)r * K + k);
        for (int m = 0; m < mr; m++) {
            const __m512 xv = _mm512_maskz_loadu_ps(tail, x + (int64_t)m * K + k);
            for (int r = 0; r < nr; r++) acc[m][r] = _mm512_fmadd_ps(xv, wv[r], acc[m][r]);
        }
    }
    for (int m = 0; m < mr; m++)
        for (int r = 0; r < nr; r++) {
            float v = _mm512_reduce_add_ps(acc[m][r]);
            if (j->bias) v += j->bias[n + r];
            j->y[(int64_t)(m0 + m) * j->N + n + r] = v;
        }
}

#define TILE_MR(nr)                                               \
    switch (mr) {                                                 \
    case 1: dense_tile(j, m0, 1, n, nr, ahead); break;            \
    case 2: dense_tile(j, m0, 2, n, nr, ahead); break;            \
    case 3: dense_tile(j, m0, 3, n, nr, ahead); break;            \
    default: dense_tile(j, m0, 4, n, nr, ahead); break;           \
    }
#endif

/* output rows [first, last): the activation rows in passes of MR over each group of NR
 * weight rows (a group, 4 x K floats, stays in L1 across the passes) */
static void dense_rows(const dense_job_t *j, int64_t first, int64_t last) {
#if HAVE_AVX512
    int64_t n = first;
    for (; n + NR <= last; n += NR) {
        /* the next group's rows, requested while this one is multiplied: a weight is read
         * once, so nothing else brings it in ahead of use */
        for (int m0 = 0; m0 < j->M; m0 += MR) {
            const int mr = j->M - m0 < MR ? j->M - m0 : MR;
            const float *ahead = m0 == 0 && PREFETCH ? j->w + (n + NR) * j->K : NULL;
            TILE_MR(4)
        }
    }
    for (; n < last; n++)
        for (int m0 = 0; m0 < j->M; m0 += MR) {
            const int mr = j->M - m0 < MR ? j->M - m0 : MR;
            const float *ahead = NULL;
            TILE_MR(1)
        }
#else
    (void)j, (void)first, (void)last;
#endif
}

static void dense_item(void *ctx, int64_t item) {
    const dense_job_t *j = ctx;
    const int64_t first = item * BLOCK_ROWS;
    const int64_t last = first + BLOCK_ROWS < j->N ? first + BLOCK_ROWS : j->N;
    dense_rows(j, first, last);
}

/* y (M, N) = x (M, K) @ w (N, K).T + bias (N,) (bias may be NULL); all float32, row-major,
 * contiguous. Returns 0, or non-zero without AVX-512F or for an empty shape. pooled: the
 * work-sharing pool runs it (when one was set), else OpenMP. */
int hearth_dense_matmul(const float *x, int M, int K, int N, const float *w, const float *bias,
                        float *y, int nthreads, int pooled) {
#if HAVE_AVX512
    if (M < 1 || K < 1 || N < 1) return 1;
    dense_job_t job = {x, w, bias, y, M, K, N};
    const int64_t items = (N + BLOCK_ROWS - 1) / BLOCK_ROWS;
    if (pooled && dense_pool && nthreads > 1 && items > 1) {
        dense_pool(dense_item, &job, items, nthreads);
    } else {
#pragma omp parallel for num_threads(nthreads) schedule(static) if (nthreads > 1 && items > 1)
        for (int64_t i = 0; i < items; i++) dense_item(&job, i);
    }
    return 0;
#else
    (void)x, (void)M, (void)K, (void)N, (void)w, (void)bias, (void)y, (void)nthreads, (void)pooled;
    return 3;
#endif
}
