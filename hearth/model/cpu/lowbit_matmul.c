/* Low-bit weight matmuls on the CPU for the few-row steps of decoding: y = x @ w.T with w
 * held as 4-bit codes (per-32 scale and min) or 8-bit codes (per-row scale), x quantized to
 * int8 per 32 columns on entry, products summed in int32 by AVX-512 VNNI (vpdpbusd) and
 * scaled into float32 per group. The same scheme as llama.cpp's Q4_1 x Q8_1 dot products,
 * laid out so one 64-byte load feeds 16 output rows:
 *
 * int4 weights, N rows in blocks of 16, K columns in groups of 32:
 *   codes   [N/16][K/32][4][16][4] uint8: chunk c of group g holds, for row r, columns
 *           g*32 + c*8 + j (low nibble) and g*32 + c*8 + 4 + j (high nibble), j = 0..3
 *   scales  [N/16][K/32][16] fp16 (d), mins [N/16][K/32][16] fp16 (m): w = q * d + m
 * int8 weights:
 *   codes   [N/16][K/32][8][16][4] int8: chunk c of group g holds columns g*32 + c*4 + j
 *   corr    [N/16][K/32][16] int32: -128 * (sum of the group's codes), because vpdpbusd
 *           multiplies unsigned by signed bytes and the activations go in as x_q + 128
 *   scales  [N] float32: w = q * scale
 * x: (M, K) bfloat16 or float32, row-major; y: (M, N) bfloat16 or float32.
 *
 * Three roads, chosen when the library is built for an instruction-set level (isa.py):
 *   AVX-512 VNNI   vpdpbusd, 16 rows per zmm (the int8 activations go in as x_q + 128,
 *                  hence corr)
 *   AVX2 + FMA     vpmaddubsw + vpmaddwd (llama.cpp's AVX2 dot), 8 rows per ymm, two per
 *                  block; int8 weights take |w| * sign(x, w) so no pair of products
 *                  saturates int16, and no offset (corr unused)
 *   portable C     the same sums one lane at a time (the compiler vectorizes what it can)
 * Every road sums the same integers exactly and applies the same float32 operations per
 * output row in the same order, so the three give bit-identical results.
 *
 * Rows of y are split over OpenMP threads (torch's pool: this .so's libgomp resolves to the
 * copy torch loaded) or the work-sharing pool. Built at first use by
 * hearth/model/cpu/lowbit_matmul.py. */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_common.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#include <immintrin.h>
#define HAVE_VNNI 1
#define HAVE_AVX2_ROAD 0
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define HAVE_VNNI 0
#define HAVE_AVX2_ROAD 1
#else
#define HAVE_VNNI 0
#define HAVE_AVX2_ROAD 0
#endif

#define GROUP 32
#define ROWS 16 /* output rows per block: one zmm of float32 */
#define MC 4    /* activation rows per pass over a block's weights */

/* which road this build took: 2 AVX-512 VNNI, 1 AVX2, 0 portable C */
int hearth_lowbit_road(void) { return HAVE_VNNI ? 2 : HAVE_AVX2_ROAD; }

/* One activation row into int8 per group of 32: q = round(x / d), d = max|x| / 127.
 * offset 128 stores q + 128 (the unsigned operand of the int8-weight kernel). */
static void quantize_row(const void *x, int bf16, int64_t base, int K, int8_t *q, float *d,
                         float *dsum, int offset) {
#if HAVE_VNNI
    /* the same arithmetic, 16 lanes at a time: max|x|, the IEEE product by 127 / max and
     * round-to-nearest-even (cvtps2dq under the default MXCSR, as rintf) */
    const __m512 sign = _mm512_set1_ps(-0.0f);
    for (int g = 0; g < K / GROUP; g++) {
        const int64_t at = base + (int64_t)g * GROUP;
        __m512 lo, hi;
        if (bf16) {
            const uint16_t *src = (const uint16_t *)x + at;
            lo = _mm512_castsi512_ps(_mm512_slli_epi32(
                _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)src)), 16));
            hi = _mm512_castsi512_ps(_mm512_slli_epi32(
                _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(src + 16))), 16));
        } else {
            lo = _mm512_loadu_ps((const float *)x + at);
            hi = _mm512_loadu_ps((const float *)x + at + 16);
        }
        const float amax =
            _mm512_reduce_max_ps(_mm512_max_ps(_mm512_andnot_ps(sign, lo), _mm512_andnot_ps(sign, hi)));
        const float scale = amax / 127.0f;
        const __m512 inv = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
        const __m512i clo = _mm512_cvtps_epi32(_mm512_mul_ps(lo, inv));
        const __m512i chi = _mm512_cvtps_epi32(_mm512_mul_ps(hi, inv));
        const int sum = _mm512_reduce_add_epi32(_mm512_add_epi32(clo, chi));
        __m128i blo = _mm512_cvtepi32_epi8(clo), bhi = _mm512_cvtepi32_epi8(chi);
        if (offset) { /* c + 128 as a byte */
            blo = _mm_xor_si128(blo, _mm_set1_epi8((char)0x80));
            bhi = _mm_xor_si128(bhi, _mm_set1_epi8((char)0x80));
        }
        _mm_storeu_si128((__m128i *)(q + g * GROUP), blo);
        _mm_storeu_si128((__m128i *)(q + g * GROUP + 16), bhi);
        d[g] = scale;
        dsum[g] = scale * (float)sum;
    }
    return;
#elif HAVE_AVX2_ROAD
    /* the same arithmetic, 8 lanes at a time (the compiler left the portable loops scalar:
     * 2.4 us more than VNNI per 1536-column call, ~0.1 ms of a SmolLM2 token) */
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int g = 0; g < K / GROUP; g++) {
        const int64_t at = base + (int64_t)g * GROUP;
        __m256 v[4];
        for (int i = 0; i < 4; i++) {
            if (bf16) {
                const __m128i raw =
                    _mm_loadu_si128((const __m128i *)((const uint16_t *)x + at + 8 * i));
                v[i] = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
            } else {
                v[i] = _mm256_loadu_ps((const float *)x + at + 8 * i);
            }
        }
        const __m256 mx = _mm256_max_ps(
            _mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
            _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        const float scale = amax / 127.0f;
        const __m256 inv = _mm256_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
        __m256i c[4];
        for (int i = 0; i < 4; i++) c[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], inv));
        const __m256i s8 = _mm256_add_epi32(_mm256_add_epi32(c[0], c[1]),
                                            _mm256_add_epi32(c[2], c[3]));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
        const int sum = _mm_cvtsi128_si32(s4);
        /* |c| <= 127: the saturating packs are exact; they interleave 128-bit lanes, which
         * the dword permutation undoes */
        __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(c[0], c[1]),
                                       _mm256_packs_epi32(c[2], c[3]));
        b = _mm256_permutevar8x32_epi32(b, order);
        if (offset) b = _mm256_xor_si256(b, _mm256_set1_epi8((char)0x80));
        _mm256_storeu_si256((__m256i *)(q + g * GROUP), b);
        d[g] = scale;
        dsum[g] = scale * (float)sum;
    }
    return;
#endif
    float v[GROUP];
    for (int g = 0; g < K / GROUP; g++) {
        const int64_t at = base + (int64_t)g * GROUP;
        if (bf16) {
            const uint16_t *src = (const uint16_t *)x + at;
            for (int i = 0; i < GROUP; i++) v[i] = bf16_to_f32(src[i]);
        } else {
            memcpy(v, (const float *)x + at, sizeof v);
        }
        float amax = 0.0f;
        for (int i = 0; i < GROUP; i++) amax = fmaxf(amax, fabsf(v[i]));
        const float scale = amax / 127.0f;
        const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (int i = 0; i < GROUP; i++) {
            const int c = (int)__builtin_rintf(v[i] * inv);
            sum += c;
            q[g * GROUP + i] = (int8_t)(offset ? c ^ 0x80 : c); /* c + 128 as a byte */
        }
        d[g] = scale;
        dsum[g] = scale * (float)sum;
    }
}

static void store_rows(void *y, int bf16, int64_t at, const float *v) {
    if (bf16) {
        uint16_t *dst = (uint16_t *)y + at;
        for (int i = 0; i < ROWS; i++) dst[i] = f32_to_bf16(v[i]);
    } else {
        memcpy((float *)y + at, v, ROWS * sizeof(float));
    }
}

typedef struct {
    const int8_t *q; /* (M, K) quantized activations */
    const float *d, *dsum; /* (M, G) */
    int M, K, N;
    void *y;
    int y_bf16;
} acts_t;

#if HAVE_VNNI

/* A decode step streams each weight once from DRAM in ~50 us calls, too short for the
 * hardware prefetcher to ramp up: the next block's codes are requested while this one is
 * multiplied (one block ahead measured best of 1, 2 and 4: a cold 3072 x 576 int4 matmul
 * on one row 41 -> 34 us, 21 -> 26 GB/s, on 2 threads). Prefetching past the last block
 * is harmless. (A macro: the same loop as a static function compiled to no prefetches.) */
#define PREFETCH_LINES(at, lines)                                                    \
    for (int line_ = 0; line_ < (lines); line_++)                                     \
    _mm_prefetch((const char *)(at) + line_ * 64, _MM_HINT_T0)

/* One block of 16 output rows x `mc` activation rows (mc <= MC, a constant after inlining). */
static inline __attribute__((always_inline)) void int4_block(
    const acts_t *a, int m0, int mc, int64_t nb, const uint8_t *codes, const uint16_t *scales,
    const uint16_t *mins) {
    const int G = a->K / GROUP;
    const __m512i low = _mm512_set1_epi8(0x0F);
    __m512 acc[MC];
    for (int m = 0; m < mc; m++) acc[m] = _mm512_setzero_ps();
    const uint8_t *wb = codes + nb * (int64_t)G * 256;
    const uint16_t *sb = scales + nb * (int64_t)G * ROWS, *mb = mins + nb * (int64_t)G * ROWS;
    const uint8_t *ahead = wb + (int64_t)G * 256; /* the next block's codes */
    for (int g = 0; g < G; g++) {
        __m512i w[8];
        if (m0 == 0) PREFETCH_LINES(ahead + g * 256, 4);
        for (int c = 0; c < 4; c++) {
            const __m512i v = _mm512_loadu_si512((const void *)(wb + (g * 4 + c) * 64));
            w[2 * c] = _mm512_and_si512(v, low);
            w[2 * c + 1] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
        }
        const __m512 dv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sb + g * ROWS)));
        const __m512 mv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(mb + g * ROWS)));
        for (int m = 0; m < mc; m++) {
            const int8_t *xq = a->q + (int64_t)(m0 + m) * a->K + g * GROUP;
            /* two chains of four (int32 sums are exact in any order) */
            __m512i dot = _mm512_setzero_si512(), dot2 = _mm512_setzero_si512();
            for (int c = 0; c < 4; c++) {
                int32_t lo4, hi4;
                memcpy(&lo4, xq + c * 8, 4);
                memcpy(&hi4, xq + c * 8 + 4, 4);
                dot = _mm512_dpbusd_epi32(dot, w[2 * c], _mm512_set1_epi32(lo4));
                dot2 = _mm512_dpbusd_epi32(dot2, w[2 * c + 1], _mm512_set1_epi32(hi4));
            }
            dot = _mm512_add_epi32(dot, dot2);
            const int64_t ag = (int64_t)(m0 + m) * G + g;
            const __m512 scale = _mm512_mul_ps(dv, _mm512_set1_ps(a->d[ag]));
            acc[m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, acc[m]);
            acc[m] = _mm512_fmadd_ps(mv, _mm512_set1_ps(a->dsum[ag]), acc[m]);
        }
    }
    for (int m = 0; m < mc; m++) {
        float out[ROWS];
        _mm512_storeu_ps(out, acc[m]);
        store_rows(a->y, a->y_bf16, (int64_t)(m0 + m) * a->N + nb * ROWS, out);
    }
}

static inline __attribute__((always_inline)) void int8_block(
    const acts_t *a, int m0, int mc, int64_t nb, const int8_t *codes, const int32_t *corr,
    const float *scales) {
    const int G = a->K / GROUP;
    __m512 acc[MC];
    for (int m = 0; m < mc; m++) acc[m] = _mm512_setzero_ps();
    const int8_t *wb = codes + nb * (int64_t)G * 512;
    const int32_t *cb = corr + nb * (int64_t)G * ROWS;
    for (int g = 0; g < G; g++) {
        __m512i w[8];
        if (m0 == 0) PREFETCH_LINES(wb + (int64_t)G * 512 + g * 512, 8);
        for (int c = 0; c < 8; c++) w[c] = _mm512_loadu_si512((const void *)(wb + (g * 8 + c) * 64));
        const __m512i start = _mm512_loadu_si512((const void *)(cb + g * ROWS));
        for (int m = 0; m < mc; m++) {
            const int8_t *xq = a->q + (int64_t)(m0 + m) * a->K + g * GROUP;
            __m512i dot = start;
            for (int c = 0; c < 8; c++) {
                int32_t four;
                memcpy(&four, xq + c * 4, 4);
                dot = _mm512_dpbusd_epi32(dot, _mm512_set1_epi32(four), w[c]);
            }
            const int64_t ag = (int64_t)(m0 + m) * G + g;
            acc[m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_set1_ps(a->d[ag]), acc[m]);
        }
    }
    const __m512 sv = _mm512_loadu_ps(scales + nb * ROWS);
    for (int m = 0; m < mc; m++) {
        float out[ROWS];
        _mm512_storeu_ps(out, _mm512_mul_ps(acc[m], sv));
        store_rows(a->y, a->y_bf16, (int64_t)(m0 + m) * a->N + nb * ROWS, out);
    }
}

#elif HAVE_AVX2_ROAD

#define PREFETCH_LINES(at, lines)                                                    \
    for (int line_ = 0; line_ < (lines); line_++)                                     \
    _mm_prefetch((const char *)(at) + line_ * 64, _MM_HINT_T0)

/* int4_block of the VNNI road on 256-bit registers: rows 0-7 and 8-15 of the block are
 * one ymm each. vpmaddubsw multiplies the unsigned nibbles by the signed activations and
 * adds pairs into int16 (|pair| <= 2 * 15 * 127); the eight products of a group (4 chunks,
 * low and high nibbles) are summed in int16 (<= 30480, no overflow) and widened by
 * vpmaddwd against ones into the four-byte sums vpdpbusd gives. */
static inline __attribute__((always_inline)) void int4_block(
    const acts_t *a, int m0, int mc, int64_t nb, const uint8_t *codes, const uint16_t *scales,
    const uint16_t *mins) {
    const int G = a->K / GROUP;
    const __m256i low = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    __m256 acc[MC][2];
    for (int m = 0; m < mc; m++) acc[m][0] = acc[m][1] = _mm256_setzero_ps();
    const uint8_t *wb = codes + nb * (int64_t)G * 256;
    const uint16_t *sb = scales + nb * (int64_t)G * ROWS, *mb = mins + nb * (int64_t)G * ROWS;
    const uint8_t *ahead = wb + (int64_t)G * 256;
    for (int g = 0; g < G; g++) {
        if (m0 == 0) PREFETCH_LINES(ahead + g * 256, 4);
        __m256 dv[2], mv[2];
        for (int h = 0; h < 2; h++) {
            dv[h] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(sb + g * ROWS + 8 * h)));
            mv[h] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(mb + g * ROWS + 8 * h)));
        }
        for (int m = 0; m < mc; m++) {
            const int8_t *xq = a->q + (int64_t)(m0 + m) * a->K + g * GROUP;
            __m256i sum[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
            for (int c = 0; c < 4; c++) {
                int32_t lo4, hi4;
                memcpy(&lo4, xq + c * 8, 4);
                memcpy(&hi4, xq + c * 8 + 4, 4);
                const __m256i xl = _mm256_set1_epi32(lo4), xh = _mm256_set1_epi32(hi4);
                for (int h = 0; h < 2; h++) {
                    const __m256i v =
                        _mm256_loadu_si256((const __m256i *)(wb + (g * 4 + c) * 64 + 32 * h));
                    const __m256i wl = _mm256_and_si256(v, low);
                    const __m256i wh = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                    sum[h] = _mm256_add_epi16(sum[h], _mm256_maddubs_epi16(wl, xl));
                    sum[h] = _mm256_add_epi16(sum[h], _mm256_maddubs_epi16(wh, xh));
                }
            }
            const int64_t ag = (int64_t)(m0 + m) * G + g;
            for (int h = 0; h < 2; h++) {
                const __m256i dot = _mm256_madd_epi16(sum[h], ones);
                const __m256 scale = _mm256_mul_ps(dv[h], _mm256_set1_ps(a->d[ag]));
                acc[m][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc[m][h]);
                acc[m][h] = _mm256_fmadd_ps(mv[h], _mm256_set1_ps(a->dsum[ag]), acc[m][h]);
            }
        }
    }
    for (int m = 0; m < mc; m++) {
        float out[ROWS];
        _mm256_storeu_ps(out, acc[m][0]);
        _mm256_storeu_ps(out + 8, acc[m][1]);
        store_rows(a->y, a->y_bf16, (int64_t)(m0 + m) * a->N + nb * ROWS, out);
    }
}

/* int8 weights: vpmaddubsw(|w|, sign(x, w)) is w * x with no pair over 2 * 128 * 127, so
 * it cannot saturate; each chunk's pairs are widened to int32 at once. No corr: the
 * activations were quantized without the +128 offset. */
static inline __attribute__((always_inline)) void int8_block(
    const acts_t *a, int m0, int mc, int64_t nb, const int8_t *codes, const int32_t *corr,
    const float *scales) {
    (void)corr;
    const int G = a->K / GROUP;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[MC][2];
    for (int m = 0; m < mc; m++) acc[m][0] = acc[m][1] = _mm256_setzero_ps();
    const int8_t *wb = codes + nb * (int64_t)G * 512;
    for (int g = 0; g < G; g++) {
        if (m0 == 0) PREFETCH_LINES(wb + (int64_t)G * 512 + g * 512, 8);
        for (int m = 0; m < mc; m++) {
            const int8_t *xq = a->q + (int64_t)(m0 + m) * a->K + g * GROUP;
            __m256i dot[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
            for (int c = 0; c < 8; c++) {
                int32_t four;
                memcpy(&four, xq + c * 4, 4);
                const __m256i xb = _mm256_set1_epi32(four);
                for (int h = 0; h < 2; h++) {
                    const __m256i w =
                        _mm256_loadu_si256((const __m256i *)(wb + (g * 8 + c) * 64 + 32 * h));
                    const __m256i pairs =
                        _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(xb, w));
                    dot[h] = _mm256_add_epi32(dot[h], _mm256_madd_epi16(pairs, ones));
                }
            }
            const int64_t ag = (int64_t)(m0 + m) * G + g;
            for (int h = 0; h < 2; h++)
                acc[m][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[h]), _mm256_set1_ps(a->d[ag]),
                                            acc[m][h]);
        }
    }
    for (int m = 0; m < mc; m++) {
        float out[ROWS];
        for (int h = 0; h < 2; h++)
            _mm256_storeu_ps(out + 8 * h,
                             _mm256_mul_ps(acc[m][h], _mm256_loadu_ps(scales + nb * ROWS + 8 * h)));
        store_rows(a->y, a->y_bf16, (int64_t)(m0 + m) * a->N + nb * ROWS, out);
    }
}

#else /* portable C: the definition the vector roads implement */

static inline void int4_block(const acts_t *a, int m0, int mc, int64_t nb, const uint8_t *codes,
                              const uint16_t *scales, const uint16_t *mins) {
    const int G = a->K / GROUP;
    const uint8_t *wb = codes + nb * (int64_t)G * 256;
    const uint16_t *sb = scales + nb * (int64_t)G * ROWS, *mb = mins + nb * (int64_t)G * ROWS;
    for (int m = 0; m < mc; m++) {
        float acc[ROWS] = {0};
        for (int g = 0; g < G; g++) {
            const int8_t *xq = a->q + (int64_t)(m0 + m) * a->K + g * GROUP;
            const int64_t ag = (int64_t)(m0 + m) * G + g;
            for (int r = 0; r < ROWS; r++) {
                int32_t dot = 0;
                for (int c = 0; c < 4; c++)
                    for (int j = 0; j < 4; j++) {
                        const uint8_t b = wb[(g * 4 + c) * 64 + r * 4 + j];
                        dot += (b & 0x0F) * xq[c * 8 + j] + (b >> 4) * xq[c * 8 + 4 + j];
                    }
                const float scale = f16_to_f32(sb[g * ROWS + r]) * a->d[ag];
                acc[r] = fmaf((float)dot, scale, acc[r]);
                acc[r] = fmaf(f16_to_f32(mb[g * ROWS + r]), a->dsum[ag], acc[r]);
            }
        }
        store_rows(a->y, a->y_bf16, (int64_t)(m0 + m) * a->N + nb * ROWS, acc);
    }
}

static inline void int8_block(const acts_t *a, int m0, int mc, int64_t nb, const int8_t *codes,
                              const int32_t *corr, const float *scales) {
    (void)corr; /* the activations were quantized without the +128 offset */
    const int G = a->K / GROUP;
    const int8_t *wb = codes + nb * (int64_t)G * 512;
    for (int m = 0; m < mc; m++) {
        float acc[ROWS] = {0};
        for (int g = 0; g < G; g++) {
            const int8_t *xq = a->q + (int64_t)(m0 + m) * a->K + g * GROUP;
            const float d = a->d[(int64_t)(m0 + m) * G + g];
            for (int r = 0; r < ROWS; r++) {
                int32_t dot = 0;
                for (int c = 0; c < 8; c++)
                    for (int j = 0; j < 4; j++) dot += wb[(g * 8 + c) * 64 + r * 4 + j] * xq[c * 4 + j];
                acc[r] = fmaf((float)dot, d, acc[r]);
            }
        }
        for (int r = 0; r < ROWS; r++) acc[r] *= scales[nb * ROWS + r];
        store_rows(a->y, a->y_bf16, (int64_t)(m0 + m) * a->N + nb * ROWS, acc);
    }
}

#endif /* roads */

/* the block functions with mc a compile-time constant, so the accumulators stay in
 * registers and the m loops unroll */
#define DISPATCH(fn, a, m0, mc, nb, ...)                    \
    switch (mc) {                                           \
    case 1: fn(a, m0, 1, nb, __VA_ARGS__); break;           \
    case 2: fn(a, m0, 2, nb, __VA_ARGS__); break;           \
    case 3: fn(a, m0, 3, nb, __VA_ARGS__); break;           \
    default: fn(a, m0, MC, nb, __VA_ARGS__); break;         \
    }


/* Rows of y in blocks of 16, run by OpenMP or by the work-sharing pool (thread_pool.c,
 * handed over as a function pointer: one pool for the process, not one per kernel). */
static pool_fn lowbit_pool;

void hearth_lowbit_set_pool(pool_fn fn) { lowbit_pool = fn; }

#define QUANT_ROWS 32 /* activation rows quantized per work item */

typedef struct {
    const void *x;
    int x_bf16, M, K, offset;
    int8_t *q;
    float *d, *dsum;
} quant_job_t;

static void quantize_rows(void *ctx, int64_t item) {
    const quant_job_t *j = ctx;
    const int G = j->K / GROUP;
    const int last = (int)(item + 1) * QUANT_ROWS < j->M ? (int)(item + 1) * QUANT_ROWS : j->M;
    for (int m = (int)item * QUANT_ROWS; m < last; m++)
        quantize_row(j->x, j->x_bf16, (int64_t)m * j->K, j->K, j->q + (size_t)m * j->K,
                     j->d + (size_t)m * G, j->dsum + (size_t)m * G, j->offset);
}

/* x quantized into a->q (rows split over the threads from 2 items on: a 512-row prefill
 * chunk took ~0.75 ms on one thread, a quarter of a small projection's time) */
static int prepare(acts_t *a, const void *x, int x_bf16, int M, int K, int N, void *y,
                   int y_bf16, int offset, int nthreads, int pooled) {
    if (K % GROUP || N % ROWS || M < 1) return 1;
    const int G = K / GROUP;
    int8_t *q = malloc((size_t)M * K + 2 * sizeof(float) * (size_t)M * G + 64);
    if (!q) return 2;
    float *d = (float *)(((uintptr_t)(q + (size_t)M * K) + 63) & ~(uintptr_t)63);
    float *dsum = d + (size_t)M * G;
    quant_job_t job = {x, x_bf16, M, K, offset, q, d, dsum};
    const int64_t items = (M + QUANT_ROWS - 1) / QUANT_ROWS;
    if (items > 1 && nthreads > 1 && pooled && lowbit_pool) {
        lowbit_pool(quantize_rows, &job, items, nthreads);
    } else {
#pragma omp parallel for num_threads(nthreads) schedule(static) if (items > 1 && nthreads > 1)
        for (int64_t i = 0; i < items; i++) quantize_rows(&job, i);
    }
    *a = (acts_t){q, d, dsum, M, K, N, y, y_bf16};
    return 0;
}

typedef struct {
    const acts_t *a;
    const void *w0, *w1, *w2; /* codes, then scales + mins (int4) or corr + scales (int8) */
    int64_t blocks, per_item;
    int int8;
} lowbit_job_t;

static void run_blocks(const lowbit_job_t *j, int64_t first, int64_t last) {
    const acts_t *a = j->a;
    for (int64_t nb = first; nb < last; nb++)
        for (int m0 = 0; m0 < a->M; m0 += MC) {
            const int mc = a->M - m0 < MC ? a->M - m0 : MC;
            if (j->int8) {
                DISPATCH(int8_block, a, m0, mc, nb, (const int8_t *)j->w0, (const int32_t *)j->w1,
                         (const float *)j->w2)
            } else {
                DISPATCH(int4_block, a, m0, mc, nb, (const uint8_t *)j->w0,
                         (const uint16_t *)j->w1, (const uint16_t *)j->w2)
            }
        }
}

static void lowbit_item(void *ctx, int64_t i) {
    const lowbit_job_t *j = ctx;
    const int64_t first = i * j->per_item;
    const int64_t last = first + j->per_item < j->blocks ? first + j->per_item : j->blocks;
    run_blocks(j, first, last);
}

static int lowbit_matmul(const void *x, int x_bf16, int M, int K, int N, const void *w0, const void *w1,
                  const void *w2, void *y, int y_bf16, int nthreads, int pooled, int int8) {
    acts_t a;
    /* only vpdpbusd needs the int8 weights' activations offset to unsigned */
    const int offset = int8 && HAVE_VNNI;
    const int status = prepare(&a, x, x_bf16, M, K, N, y, y_bf16, offset, nthreads, pooled);
    if (status) return status;
    lowbit_job_t job = {&a, w0, w1, w2, N / ROWS, 1, int8};
    if (pooled && lowbit_pool && nthreads > 1) {
        /* ~8 items per thread: small enough to balance, large enough to claim cheaply */
        const int64_t items = job.blocks < 8 * nthreads ? job.blocks : 8 * nthreads;
        job.per_item = (job.blocks + items - 1) / items;
        lowbit_pool(lowbit_item, &job, (job.blocks + job.per_item - 1) / job.per_item, nthreads);
    } else {
#pragma omp parallel for num_threads(nthreads) schedule(static) if (nthreads > 1)
        for (int64_t nb = 0; nb < job.blocks; nb++) run_blocks(&job, nb, nb + 1);
    }
    free((void *)a.q);
    return 0;
}

/* y (M, N) = x (M, K) @ w.T for int4 w; returns 0, or non-zero for shapes it does not take
 * (K not a multiple of 32, N not of 16). pooled: the work-sharing pool runs it
 * (when one was set), else OpenMP. */
int hearth_int4_matmul(const void *x, int x_bf16, int M, int K, int N, const uint8_t *codes,
                       const uint16_t *scales, const uint16_t *mins, void *y, int y_bf16,
                       int nthreads, int pooled) {
    return lowbit_matmul(x, x_bf16, M, K, N, codes, scales, mins, y, y_bf16, nthreads, pooled, 0);
}

/* y (M, N) = x (M, K) @ (q * scale).T for int8 q; same return values. */
int hearth_int8_matmul(const void *x, int x_bf16, int M, int K, int N, const int8_t *codes,
                       const int32_t *corr, const float *scales, void *y, int y_bf16,
                       int nthreads, int pooled) {
    return lowbit_matmul(x, x_bf16, M, K, N, codes, corr, scales, y, y_bf16, nthreads, pooled, 1);
}
