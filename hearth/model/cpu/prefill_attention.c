/* Causal float32 attention of one sequence's new tokens over its whole context, for the
 * prefill steps of a float32 model (hearth eval's road). SDPA's CPU flash kernel runs these
 * shapes at 50-125 GFLOP/s on the 2-core AVX-512 machine (a 500-token prompt costs 60% of a
 * 1,030-token one per layer: little of the masked half is skipped, and a cached prefix
 * takes the mask road, which skips nothing); here only key blocks at or before a query
 * tile's last position are visited, and both products run as register-blocked FMA tiles.
 *
 * Layouts (float32, contiguous):
 *   q    (L, H, D)    the context's last L positions, C - L .. C - 1
 *   kt   (Hkv, D, C)  keys transposed: a key block's D rows of KB keys are vector loads
 *   v    (C, Hkv, D)
 *   out  (L, H, D)
 * Query heads h share KV head h / (H / Hkv). D a multiple of 64 up to 256, groups up to 8.
 *
 * Per work item (a KV head and TQ query positions: TQ x group rows sharing every key):
 * for each block of KB keys, S = (q * scale) K^T in tiles of 6 rows x 32 keys, an online
 * softmax per row (running max and sum, exp by the shared polynomial), then O += P V in
 * tiles of 3 rows x 64 dims. Items are handed out largest first (the last query tile sees
 * the most keys) over OpenMP, the team the prefill step's GEMMs run on: on the
 * work-sharing pool (thread_pool.c) the helpers' spinning after the call slowed the next
 * GEMM (gsm8k prefill +15%).
 *
 * Sums run in another order than SDPA's: outputs agree with it to float32 rounding (~1e-6
 * relative), not bit for bit. Without AVX-512F `hearth_prefill_available` returns 0. */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_common.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#define HAVE_AVX512 1
#else
#define HAVE_AVX512 0
#endif

#define TQ 16       /* query positions per work item */
#define KB 128      /* keys per block: the softmax's per-row reductions are paid per block */
#define KV (KB / 16) /* score vectors per row and block */
#define MAX_GROUP 8
#define MAX_DIM 256
#define ROWS_MAX (TQ * MAX_GROUP)

int hearth_prefill_available(void) { return HAVE_AVX512; }

typedef struct {
    const float *q, *kt, *v;
    float *out;
    int L, C, H, Hkv, D;
    float scale;
    int tiles;
} prefill_job_t;

#if HAVE_AVX512
/* scores (rows x KB, row stride KB) of `nr` rows of qs (stride D) against keys j0.. of kt
 * (row stride C), `live` lanes of each of the two key vectors valid */
static inline __attribute__((always_inline)) void score_tile(const float *qs, int D,
                                                             const float *kt, int64_t C,
                                                             int j0, __mmask16 live0,
                                                             __mmask16 live1, float *s,
                                                             const int nr) {
    __m512 a0[6], a1[6];
    for (int r = 0; r < nr; r++) a0[r] = a1[r] = _mm512_setzero_ps();
    for (int d = 0; d < D; d++) {
        const float *row = kt + (int64_t)d * C + j0;
        const __m512 k0 = _mm512_maskz_loadu_ps(live0, row);
        const __m512 k1 = _mm512_maskz_loadu_ps(live1, row + 16);
        for (int r = 0; r < nr; r++) {
            const __m512 qv = _mm512_set1_ps(qs[r * D + d]);
            a0[r] = _mm512_fmadd_ps(qv, k0, a0[r]);
            a1[r] = _mm512_fmadd_ps(qv, k1, a1[r]);
        }
    }
    for (int r = 0; r < nr; r++) {
        _mm512_storeu_ps(s + r * KB, a0[r]);
        _mm512_storeu_ps(s + r * KB + 16, a1[r]);
    }
}

/* o (nr rows, stride D) dims d0..d0+63 += p (nr rows of KB, n used) @ v rows (stride vs) */
static inline __attribute__((always_inline)) void value_tile(const float *p, const float *v,
                                                             int64_t vs, int n, float *o,
                                                             int D, int d0, const int nr) {
    __m512 a[3][4];
    for (int r = 0; r < nr; r++)
        for (int c = 0; c < 4; c++) a[r][c] = _mm512_loadu_ps(o + r * D + d0 + c * 16);
    for (int j = 0; j < n; j++) {
        const float *vr = v + j * vs + d0;
        const __m512 v0 = _mm512_loadu_ps(vr), v1 = _mm512_loadu_ps(vr + 16);
        const __m512 v2 = _mm512_loadu_ps(vr + 32), v3 = _mm512_loadu_ps(vr + 48);
        for (int r = 0; r < nr; r++) {
            const __m512 pv = _mm512_set1_ps(p[r * KB + j]);
            a[r][0] = _mm512_fmadd_ps(pv, v0, a[r][0]);
            a[r][1] = _mm512_fmadd_ps(pv, v1, a[r][1]);
            a[r][2] = _mm512_fmadd_ps(pv, v2, a[r][2]);
            a[r][3] = _mm512_fmadd_ps(pv, v3, a[r][3]);
        }
    }
    for (int r = 0; r < nr; r++)
        for (int c = 0; c < 4; c++) _mm512_storeu_ps(o + r * D + d0 + c * 16, a[r][c]);
}

static void prefill_item(const prefill_job_t *job, int64_t item) {
    const int H = job->H, Hkv = job->Hkv, D = job->D, C = job->C, L = job->L;
    const int g = H / Hkv;
    /* largest first: the last query tile sees the most keys */
    const int tile = job->tiles - 1 - (int)(item / Hkv);
    const int kvh = (int)(item % Hkv);
    const int i0 = tile * TQ, nq = L - i0 < TQ ? L - i0 : TQ;
    const int rows = nq * g;
    const int offset = C - L; /* position of query 0 */
    float *qs = _mm_malloc(sizeof(float) * ((size_t)rows * D * 2 + (size_t)rows * (KB + 2)), 64);
    if (!qs) return;
    float *o = qs + (size_t)rows * D, *s = o + (size_t)rows * D;
    float *m = s + (size_t)rows * KB, *l = m + rows;
    int qpos[ROWS_MAX];
    /* row r = (query i, head h of the group): i-major, so rows of one position are adjacent */
    for (int i = 0; i < nq; i++)
        for (int h = 0; h < g; h++) {
            const int r = i * g + h;
            const float *src = job->q + ((int64_t)(i0 + i) * H + kvh * g + h) * D;
            for (int d = 0; d < D; d++) qs[r * D + d] = src[d] * job->scale;
            qpos[r] = offset + i0 + i;
            m[r] = -INFINITY;
            l[r] = 0.0f;
        }
    memset(o, 0, sizeof(float) * (size_t)rows * D);
    const float *kt = job->kt + (int64_t)kvh * D * C;
    const int64_t vs = (int64_t)Hkv * D;
    const int kend = offset + i0 + nq; /* keys [0, kend) are visible to some row */
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int j0 = 0; j0 < kend; j0 += KB) {
        const int n = kend - j0 < KB ? kend - j0 : KB;
        for (int c = 0; c * 32 < n; c++) { /* scores of keys j0 + 32c .. + 31 */
            const int left = n - c * 32;
            const __mmask16 live0 = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1u);
            const __mmask16 live1 =
                left >= 32 ? 0xFFFF : (left > 16 ? (__mmask16)((1u << (left - 16)) - 1u) : 0);
            const int jc = j0 + c * 32;
            float *sc = s + c * 32;
            int r = 0;
            for (; r + 6 <= rows; r += 6)
                score_tile(qs + r * D, D, kt, C, jc, live0, live1, sc + r * KB, 6);
            switch (rows - r) {
            case 5: score_tile(qs + r * D, D, kt, C, jc, live0, live1, sc + r * KB, 5); break;
            case 4: score_tile(qs + r * D, D, kt, C, jc, live0, live1, sc + r * KB, 4); break;
            case 3: score_tile(qs + r * D, D, kt, C, jc, live0, live1, sc + r * KB, 3); break;
            case 2: score_tile(qs + r * D, D, kt, C, jc, live0, live1, sc + r * KB, 2); break;
            case 1: score_tile(qs + r * D, D, kt, C, jc, live0, live1, sc + r * KB, 1); break;
            default: break;
            }
        }
        const int nv = (n + 15) / 16; /* score vectors holding live keys */
        /* online softmax per row; keys after the row's position (or past n) weigh 0 */
        for (int r = 0; r < rows; r++) {
            const int visible = qpos[r] - j0 + 1 < n ? qpos[r] - j0 + 1 : n; /* >= 1 */
            const __m512i lim = _mm512_set1_epi32(visible);
            __m512 sv[KV];
            __mmask16 ok[KV];
            __m512 mxv = ninf;
            for (int c = 0; c < nv; c++) {
                ok[c] = _mm512_cmplt_epi32_mask(_mm512_add_epi32(lane, _mm512_set1_epi32(16 * c)), lim);
                sv[c] = _mm512_mask_blend_ps(ok[c], ninf, _mm512_loadu_ps(s + r * KB + 16 * c));
                mxv = _mm512_max_ps(mxv, sv[c]);
            }
            const float mx_block = _mm512_reduce_max_ps(mxv);
            const float mx = mx_block > m[r] ? mx_block : m[r];
            const float correction = expf(m[r] - mx); /* m = -inf at first: 0 */
            m[r] = mx;
            const __m512 mv = _mm512_set1_ps(mx);
            __m512 sum = _mm512_setzero_ps();
            for (int c = 0; c < nv; c++) {
                const __m512 p = _mm512_maskz_mov_ps(ok[c], exp16(_mm512_sub_ps(sv[c], mv)));
                sum = _mm512_add_ps(sum, p);
                _mm512_storeu_ps(s + r * KB + 16 * c, p);
            }
            l[r] = l[r] * correction + _mm512_reduce_add_ps(sum);
            if (correction != 1.0f) {
                const __m512 cv = _mm512_set1_ps(correction);
                for (int d = 0; d < D; d += 16)
                    _mm512_storeu_ps(o + r * D + d, _mm512_mul_ps(_mm512_loadu_ps(o + r * D + d), cv));
            }
        }
        const float *vb = job->v + (int64_t)j0 * vs + (int64_t)kvh * D;
        for (int d0 = 0; d0 < D; d0 += 64) {
            int r = 0;
            for (; r + 3 <= rows; r += 3) value_tile(s + r * KB, vb, vs, n, o + r * D, D, d0, 3);
            if (rows - r == 2) value_tile(s + r * KB, vb, vs, n, o + r * D, D, d0, 2);
            if (rows - r == 1) value_tile(s + r * KB, vb, vs, n, o + r * D, D, d0, 1);
        }
    }
    for (int i = 0; i < nq; i++)
        for (int h = 0; h < g; h++) {
            const int r = i * g + h;
            const float inv = 1.0f / l[r]; /* key 0 is visible to every row: l > 0 */
            float *dst = job->out + ((int64_t)(i0 + i) * H + kvh * g + h) * D;
            for (int d = 0; d < D; d++) dst[d] = o[r * D + d] * inv;
        }
    _mm_free(qs);
}
#endif

/* out = causal attention of q over (kt, v), shapes as above. Returns 0, or non-zero for a
 * shape it does not take (the caller keeps SDPA) or without AVX-512F. */
int hearth_prefill_attention(const float *q, const float *kt, const float *v, float *out, int L,
                             int C, int H, int Hkv, int D, float scale, int nthreads) {
#if HAVE_AVX512
    if (L < 1 || C < L || Hkv < 1 || H % Hkv || H / Hkv > MAX_GROUP || D % 64 || D > MAX_DIM)
        return 1;
    const int tiles = (L + TQ - 1) / TQ;
    prefill_job_t job = {q, kt, v, out, L, C, H, Hkv, D, scale, tiles};
    const int64_t items = (int64_t)tiles * Hkv;
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 1) if (nthreads > 1 && items > 1)
    for (int64_t i = 0; i < items; i++) prefill_item(&job, i);
    return 0;
#else
    (void)q, (void)kt, (void)v, (void)out, (void)L, (void)C, (void)H, (void)Hkv, (void)D;
    (void)scale, (void)nthreads;
    return 3;
#endif
}
