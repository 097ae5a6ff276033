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
 * Built at first use by hearth/model/cpu/paged_decode.py with the system C compiler. */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_common.h"

#define MAX_GROUP 32
#define MAX_DIM 512
#define MAX_BLOCK 64
#define MIN_KEYS_PER_THREAD 4096
#ifndef SCALAR_F32 /* -DSCALAR_F32=1: float32 on the scalar road (A/B builds) */
#define SCALAR_F32 0
#endif

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

#if defined(__AVX512F__) && defined(__AVX512BF16__)
#include <immintrin.h>
#define HAVE_BF16_ROAD 1
#define KEYS 16   /* keys scored together: one zmm of scores */
#define ROAD_MAX_GROUP 8

/* 16 vectors of partial dot products (v[j]: key j's 16 partial sums) -> one vector whose
 * lane j is key j's total: a transpose folded into the adds, 45 shuffles and adds where
 * 16 horizontal sums cost ~10 each. */
static inline __m512 sum16(const __m512 *v) {
    __m512 w[8], x[4], y[2];
    for (int i = 0; i < 8; i++) /* key 2i in quarters 0-1, key 2i+1 in 2-3 */
        w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
    for (int i = 0; i < 4; i++) /* quarter r: key 4i + r */
        x[i] = _mm512_add_ps(_mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0xDD));
    for (int i = 0; i < 2; i++) /* quarter r: keys 8i + r (lanes 0-1), 8i + 4 + r (2-3) */
        y[i] = _mm512_add_ps(_mm512_shuffle_ps(x[2 * i], x[2 * i + 1], 0x44),
                             _mm512_shuffle_ps(x[2 * i], x[2 * i + 1], 0xEE));
    /* lane 4r + t: key r + 4t; put key j in lane j */
    const __m512 z = _mm512_add_ps(_mm512_shuffle_ps(y[0], y[1], 0x88),
                                   _mm512_shuffle_ps(y[0], y[1], 0xDD));
    const __m512i order = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
    return _mm512_permutexvar_ps(order, z);
}

static inline __m512 widen16(const uint16_t *src) { /* 16 bf16 -> 16 float32 */
    const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)src));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}

/* The vector road, bfloat16 (q and caches bf16, Dk == Dv a multiple of 32) or float32 (q
 * and caches float32, Dk == Dv a multiple of 16), groups up to 8: keys in runs of 16, read
 * in memory order (all KV heads of a key, then the next key: ~10% faster from DRAM than a
 * KV head at a time), each row once for the query heads sharing it; q.k by AVX512-BF16 dot
 * products (bf16 pairs multiplied exactly, summed in float32) or float32 FMAs, scaled
 * after; the 16 scores of a run summed across lanes together (sum16) and softmaxed as one
 * vector; values (widened once per run) accumulated in float32. `f32` is a constant after
 * inlining, so each road compiles to its own loops. */
static inline __attribute__((always_inline)) void road_item(const paged_job_t *job, int s,
                                                            const int g, const int f32) {
    const int H = job->H, Hkv = job->Hkv, D = job->Dk, bs = job->bs;
    const int C = f32 ? D / 16 : D / 32; /* one vector of key values per chunk */
    const int64_t row = (int64_t)Hkv * D;
    float *acc = malloc(sizeof(float) * ((size_t)H * D + 2 * (size_t)H));
    if (!acc) return;
    float *m = acc + (size_t)H * D, *l = m + H;
    for (int h = 0; h < H; h++) m[h] = -INFINITY, l[h] = 0.0f;
    memset(acc, 0, sizeof(float) * (size_t)H * D);
    const uint16_t *q = (const uint16_t *)job->q + (int64_t)s * H * D;
    const float *qf = (const float *)job->q + (int64_t)s * H * D;
    const uint16_t *kc = job->kcache, *vc = job->vcache;
    const float *kcf = job->kcache, *vcf = job->vcache;
    const int64_t *table = job->blocks + (int64_t)s * job->blocks_stride;
    const int64_t start = job->starts[s], end = job->ends[s];
    const __m512 scale = _mm512_set1_ps(job->scale);
    /* per query head, the run's 16 vectors of partial q.k sums */
    __m512 *part = _mm_malloc(sizeof(__m512) * (size_t)H * KEYS, 64);
    if (!part) {
        free(acc);
        return;
    }
    float probs[ROAD_MAX_GROUP][KEYS];
    for (int64_t b = start / bs; b * bs < end; b++) {
        const int lo = b * bs < start ? (int)(start - b * bs) : 0;
        const int hi = (b + 1) * bs > end ? (int)(end - b * bs) : bs;
        for (int j0 = lo; j0 < hi; j0 += KEYS) {
            const int n = hi - j0 < KEYS ? hi - j0 : KEYS;
            const int64_t first = table[b] * bs + j0; /* slot of the run's first key */
            const __mmask16 live = (__mmask16)((1u << n) - 1u);
            for (int j = 0; j < KEYS; j++) { /* key rows in memory order, all KV heads */
                for (int kvh = 0; kvh < Hkv; kvh++) {
                    const int64_t at = (first + j) * row + (int64_t)kvh * D;
                    const int64_t qat = (int64_t)kvh * g * D;
                    __m512 t[ROAD_MAX_GROUP];
                    for (int h = 0; h < g; h++) t[h] = _mm512_setzero_ps();
                    for (int c = 0; c < C && j < n; c++) {
                        if (f32) {
                            const __m512 k = _mm512_loadu_ps(kcf + at + c * 16);
                            for (int h = 0; h < g; h++)
                                t[h] = _mm512_fmadd_ps(
                                    _mm512_loadu_ps(qf + qat + (int64_t)h * D + c * 16), k, t[h]);
                        } else {
                            const __m512bh k = (__m512bh)_mm512_loadu_si512(kc + at + c * 32);
                            for (int h = 0; h < g; h++) {
                                const __m512bh qh = (__m512bh)_mm512_loadu_si512(
                                    q + qat + (int64_t)h * D + c * 32);
                                t[h] = _mm512_dpbf16_ps(t[h], qh, k);
                            }
                        }
                    }
                    for (int h = 0; h < g; h++) part[(kvh * g + h) * KEYS + j] = t[h];
                }
            }
            for (int kvh = 0; kvh < Hkv; kvh++) {
                for (int h = 0; h < g; h++) {
                    const int hh = kvh * g + h;
                    __m512 sc = _mm512_mul_ps(sum16(part + (size_t)hh * KEYS), scale);
                    if (job->softcap > 0.0f) {
                        float t[KEYS];
                        _mm512_storeu_ps(t, sc);
                        for (int j = 0; j < KEYS; j++)
                            t[j] = tanhf(t[j] / job->softcap) * job->softcap;
                        sc = _mm512_loadu_ps(t);
                    }
                    sc = _mm512_mask_blend_ps(live, _mm512_set1_ps(-INFINITY), sc);
                    const float mx_run = _mm512_reduce_max_ps(sc);
                    const float mx = mx_run > m[hh] ? mx_run : m[hh];
                    const float correction = expf(m[hh] - mx); /* m = -inf at first: 0 */
                    m[hh] = mx;
                    const __m512 p = _mm512_maskz_mov_ps(
                        live, exp16(_mm512_sub_ps(sc, _mm512_set1_ps(mx))));
                    l[hh] = l[hh] * correction + _mm512_reduce_add_ps(p);
                    _mm512_storeu_ps(probs[h], p);
                    if (correction != 1.0f) {
                        const __m512 cv = _mm512_set1_ps(correction);
                        float *ah = acc + (size_t)hh * D;
                        for (int d = 0; d < D; d += 16)
                            _mm512_storeu_ps(ah + d, _mm512_mul_ps(_mm512_loadu_ps(ah + d), cv));
                    }
                }
                const int64_t vat = first * row + (int64_t)kvh * D;
                for (int d = 0; d < D; d += 16) {
                    __m512 a[ROAD_MAX_GROUP];
                    for (int h = 0; h < g; h++) a[h] = _mm512_loadu_ps(acc + (size_t)(kvh * g + h) * D + d);
                    for (int j = 0; j < n; j++) {
                        const __m512 v = f32 ? _mm512_loadu_ps(vcf + vat + j * row + d)
                                             : widen16(vc + vat + j * row + d);
                        for (int h = 0; h < g; h++)
                            a[h] = _mm512_fmadd_ps(_mm512_set1_ps(probs[h][j]), v, a[h]);
                    }
                    for (int h = 0; h < g; h++) _mm512_storeu_ps(acc + (size_t)(kvh * g + h) * D + d, a[h]);
                }
            }
        }
    }
    for (int h = 0; h < H; h++) {
        const float inv = l[h] > 0.0f ? 1.0f / l[h] : 0.0f;
        const float *ah = acc + (size_t)h * D;
        if (f32) {
            float *o = (float *)job->out + (int64_t)s * H * D + (size_t)h * D;
            for (int d = 0; d < D; d++) o[d] = ah[d] * inv;
        } else {
            uint16_t *o = (uint16_t *)job->out + (int64_t)s * H * D + (size_t)h * D;
            for (int d = 0; d < D; d++) o[d] = f32_to_bf16(ah[d] * inv);
        }
    }
    free(acc);
    _mm_free(part);
}

#define ROAD_GROUPS(f32)                          \
    switch (job->H / job->Hkv) {                  \
    case 1: road_item(job, s, 1, f32); break;     \
    case 2: road_item(job, s, 2, f32); break;     \
    case 3: road_item(job, s, 3, f32); break;     \
    case 4: road_item(job, s, 4, f32); break;     \
    case 5: road_item(job, s, 5, f32); break;     \
    case 6: road_item(job, s, 6, f32); break;     \
    case 7: road_item(job, s, 7, f32); break;     \
    default: road_item(job, s, 8, f32); break;    \
    }

/* the group size and the dtype as constants: unrolled head loops */
static void paged_item_road(const paged_job_t *job, int s, int f32) {
    if (f32) {
        ROAD_GROUPS(1)
    } else {
        ROAD_GROUPS(0)
    }
}
#else
#define HAVE_BF16_ROAD 0
#endif

#if !HAVE_BF16_ROAD && defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
/* The scalar road's two inner loops by hand on 256-bit registers (the avx2 build, and
 * AVX-512 CPUs without AVX512-BF16): the compiler's `omp simd` reduction summed each key's
 * q.k across lanes on its own (~10 ops per key and head), and the value loop loaded and
 * stored the accumulator once per key. Measured 2.8x slower than the bf16 road before
 * (30 layers, 256 keys, SmolLM2's 9/3 heads of 64: 1.33 against 0.48 ms). */
#define HAVE_AVX2_DOTS 1
#define DOT_KEYS 8

/* v[j]: key j's 8 partial sums -> lane j: key j's total */
static inline __m256 sum8(const __m256 *v) {
    const __m256 ab = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
    const __m256 cd = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
    /* ab: keys 0-3 columns 0-3 | keys 0-3 columns 4-7; cd the same for keys 4-7 */
    return _mm256_add_ps(_mm256_permute2f128_ps(ab, cd, 0x20),
                         _mm256_permute2f128_ps(ab, cd, 0x31));
}

/* 8 cache values from `index` as float32 (bf16 widened in the register: no copy) */
static inline __m256 load8(const void *base, int64_t index, int bf16) {
    if (!bf16) return _mm256_loadu_ps((const float *)base + index);
    const __m128i raw = _mm_loadu_si128((const __m128i *)((const uint16_t *)base + index));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
}
#else
#define HAVE_AVX2_DOTS 0
#endif

/* One sequence, every head: each block's keys (then values) for all KV heads are one
 * contiguous run of memory, read once and widened into `kbuf`. Per-head state on the heap. */
static void paged_item(const paged_job_t *job, int s) {
    const int H = job->H, Hkv = job->Hkv, g = H / Hkv, Dk = job->Dk, Dv = job->Dv;
#if HAVE_BF16_ROAD
    if (job->q_bf16 && job->kv_bf16 && Dk == Dv && Dk % 32 == 0 && g <= ROAD_MAX_GROUP) {
        paged_item_road(job, s, 0);
        return;
    }
    if (!job->q_bf16 && !job->kv_bf16 && Dk == Dv && Dk % 16 == 0 && g <= ROAD_MAX_GROUP &&
        !SCALAR_F32) {
        paged_item_road(job, s, 1);
        return;
    }
#endif
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
        /* the AVX2 loops read the cache in place (whole runs of 8 keys, 8 columns); the
         * others read it widened into buf */
        const int vec_k = HAVE_AVX2_DOTS && Dk % 8 == 0 && n % 8 == 0;
        const int vec_v = HAVE_AVX2_DOTS && Dv % 8 == 0;
        if (!vec_k) load_row(buf, job->kcache, first * krow, (int)(n * krow), job->kv_bf16);
        for (int h = 0; h < H; h++) {
            const float *qh = qf + (size_t)h * Dk;
            const int kvh = h / g;
            float *sc = scores + (size_t)h * MAX_BLOCK;
            int j0 = 0;
#if HAVE_AVX2_DOTS
            if (vec_k)
                for (; j0 < n; j0 += DOT_KEYS) { /* 8 keys: 8 chains, one sum */
                    const int64_t kr = (first + j0) * krow + (int64_t)kvh * Dk;
                    __m256 part[DOT_KEYS];
                    for (int t = 0; t < DOT_KEYS; t++) part[t] = _mm256_setzero_ps();
                    for (int d = 0; d < Dk; d += 8) {
                        const __m256 qv = _mm256_loadu_ps(qh + d);
                        for (int t = 0; t < DOT_KEYS; t++)
                            part[t] = _mm256_fmadd_ps(
                                qv, load8(job->kcache, kr + t * krow + d, job->kv_bf16), part[t]);
                    }
                    _mm256_storeu_ps(sc + j0, sum8(part));
                }
#endif
            for (int j = j0; j < n; j++) {
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
        if (!vec_v) load_row(buf, job->vcache, first * vrow, (int)(n * vrow), job->kv_bf16);
        for (int h = 0; h < H; h++) {
            float *ah = acc + (size_t)h * Dv;
            const float *sc = scores + (size_t)h * MAX_BLOCK;
            const int kvh = h / g;
            int d0 = 0;
#if HAVE_AVX2_DOTS
            /* 8 columns held in a register over the block's keys: the same sums in the
             * same order (key by key) as the loop below */
            if (vec_v)
                for (; d0 < Dv; d0 += 8) {
                    const int64_t vr = first * vrow + (int64_t)kvh * Dv + d0;
                    __m256 a = _mm256_loadu_ps(ah + d0);
                    for (int j = 0; j < n; j++)
                        a = _mm256_fmadd_ps(_mm256_set1_ps(sc[j]),
                                            load8(job->vcache, vr + j * vrow, job->kv_bf16), a);
                    _mm256_storeu_ps(ah + d0, a);
                }
#endif
            for (int j = 0; j < n; j++) {
                const float *vr = buf + j * vrow + (int64_t)kvh * Dv;
                const float p = sc[j];
#pragma omp simd
                for (int d = d0; d < Dv; d++) ah[d] += p * vr[d];
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
