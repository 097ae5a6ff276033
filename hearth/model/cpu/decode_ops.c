/* Elementwise steps of a bfloat16 decoder layer, each one pass over its rows instead of the
 * 3-8 separate torch ops (and their temporaries) it replaces: on a one-token decode step
 * each torch op costs ~5 us of dispatch, far more than its arithmetic.
 *
 *   hearth_rms_norm   out = bf16(bf16(x / rms(x)) * w), or bf16(x / rms(x) * (1 + w)) with
 *                     unit_offset (Gemma); the roundings of hearth/model/layers/norms.py
 *   hearth_silu_mul   out = bf16(bf16(silu(g)) * u) for rows [g | u] (the gated MLP)
 *   hearth_rope_cache rope on q and k of a fused qkv row, k and v into the paged cache
 *
 * All tensors bfloat16 and contiguous; norm and gate rows are split over OpenMP threads
 * from 64 rows on. The `_f32` twins do the same on float32 tensors with no rounding between
 * the steps (torch's float32 code rounds only once per op, so results agree with it to a
 * float32 ulp or two, not bit for bit: sums run in another order, products may fuse).
 * Built at first use by hearth/model/cpu/decode_ops.py. */

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernel_common.h"

void hearth_rms_norm(const uint16_t *x, const uint16_t *w, uint16_t *out, int64_t rows, int dim,
                     float eps, int unit_offset, int nthreads) {
#pragma omp parallel for num_threads(nthreads) schedule(static) if (nthreads > 1 && rows >= 64)
    for (int64_t r = 0; r < rows; r++) {
        const uint16_t *xr = x + r * dim;
        uint16_t *o = out + r * dim;
        float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
        for (int i = 0; i < dim; i++) {
            const float v = bf16_to_f32(xr[i]);
            ss += v * v;
        }
        const float inv = 1.0f / sqrtf(ss / (float)dim + eps);
        if (unit_offset) {
#pragma omp simd
            for (int i = 0; i < dim; i++)
                o[i] = f32_to_bf16(bf16_to_f32(xr[i]) * inv * (1.0f + bf16_to_f32(w[i])));
        } else {
#pragma omp simd
            for (int i = 0; i < dim; i++)
                o[i] = f32_to_bf16(round_bf16(bf16_to_f32(xr[i]) * inv) * bf16_to_f32(w[i]));
        }
    }
}

void hearth_silu_mul(const uint16_t *gate_up, uint16_t *out, int64_t rows, int inter,
                     int nthreads) {
#pragma omp parallel for num_threads(nthreads) schedule(static) if (nthreads > 1 && rows >= 64)
    for (int64_t r = 0; r < rows; r++) {
        const uint16_t *g = gate_up + r * 2 * (int64_t)inter, *u = g + inter;
        uint16_t *o = out + r * inter;
#pragma omp simd
        for (int i = 0; i < inter; i++) {
            const float v = bf16_to_f32(g[i]);
            const float s = round_bf16(v / (1.0f + exp_f32(-v)));
            o[i] = f32_to_bf16(s * bf16_to_f32(u[i]));
        }
    }
}

/* Rope on q and k from one fused qkv row, then k and v stored in the paged cache:
 *   qkv (T, (H + 2 Hkv) D): q heads, then k heads, then v heads
 *   cos, sin (T, R / 2) with R <= D rotary dims (the first R of each head, halves rotated:
 *   out1 = x1 c - x2 s, out2 = x2 c + x1 s, each product and sum rounded to bf16 as torch
 *   does on bf16 tensors)
 *   q_out (T, H, D); key/value caches (slots, Hkv, D), slot_mapping (T,) int64 */
static inline void rope_head(const uint16_t *x, const uint16_t *c, const uint16_t *s,
                             uint16_t *o, int D, int R) {
    const int half = R / 2;
    for (int i = 0; i < half; i++) {
        const float x1 = bf16_to_f32(x[i]), x2 = bf16_to_f32(x[i + half]);
        const float ci = bf16_to_f32(c[i]), si = bf16_to_f32(s[i]);
        o[i] = f32_to_bf16(round_bf16(x1 * ci) - round_bf16(x2 * si));
        o[i + half] = f32_to_bf16(round_bf16(x2 * ci) + round_bf16(x1 * si));
    }
    if (R < D) memcpy(o + R, x + R, (size_t)(D - R) * 2);
}

void hearth_rope_cache(const uint16_t *qkv, const uint16_t *cos, const uint16_t *sin,
                       uint16_t *q_out, uint16_t *kcache, uint16_t *vcache,
                       const int64_t *slots, int64_t T, int H, int Hkv, int D, int R) {
    const int64_t row = (int64_t)(H + 2 * Hkv) * D;
    for (int64_t t = 0; t < T; t++) {
        const uint16_t *x = qkv + t * row;
        const uint16_t *c = cos + t * (R / 2), *s = sin + t * (R / 2);
        for (int h = 0; h < H; h++)
            rope_head(x + (int64_t)h * D, c, s, q_out + (t * H + h) * (int64_t)D, D, R);
        uint16_t *kdst = kcache + slots[t] * (int64_t)Hkv * D;
        for (int h = 0; h < Hkv; h++)
            rope_head(x + (int64_t)(H + h) * D, c, s, kdst + (int64_t)h * D, D, R);
        memcpy(vcache + slots[t] * (int64_t)Hkv * D, x + (int64_t)(H + Hkv) * D,
               (size_t)Hkv * D * 2);
    }
}

/* ---- float32 twins: the eval's road (weights and activations as lm-eval's reference keeps
 * them). On a 2,048-token prefill step of SmolLM2 the torch code for these is ~40 ops a
 * layer over (T, 1536) temporaries: ~15% of the step; here each is one pass. */

void hearth_rms_norm_f32(const float *x, const float *w, float *out, int64_t rows, int dim,
                         float eps, int unit_offset, int nthreads) {
#pragma omp parallel for num_threads(nthreads) schedule(static) if (nthreads > 1 && rows >= 64)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim;
        float *o = out + r * dim;
        float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
        for (int i = 0; i < dim; i++) ss += xr[i] * xr[i];
        const float inv = 1.0f / sqrtf(ss / (float)dim + eps);
        if (unit_offset) {
#pragma omp simd
            for (int i = 0; i < dim; i++) o[i] = xr[i] * inv * (1.0f + w[i]);
        } else {
#pragma omp simd
            for (int i = 0; i < dim; i++) o[i] = w[i] * (xr[i] * inv);
        }
    }
}

void hearth_silu_mul_f32(const float *gate_up, float *out, int64_t rows, int inter,
                         int nthreads) {
#pragma omp parallel for num_threads(nthreads) schedule(static) if (nthreads > 1 && rows >= 64)
    for (int64_t r = 0; r < rows; r++) {
        const float *g = gate_up + r * 2 * (int64_t)inter, *u = g + inter;
        float *o = out + r * inter;
#pragma omp simd
        for (int i = 0; i < inter; i++) o[i] = g[i] / (1.0f + exp_f32(-g[i])) * u[i];
    }
}

static inline void rope_head_f32(const float *x, const float *c, const float *s, float *o,
                                 int D, int R) {
    const int half = R / 2;
#pragma omp simd
    for (int i = 0; i < half; i++) {
        const float x1 = x[i], x2 = x[i + half];
        o[i] = x1 * c[i] - x2 * s[i];
        o[i + half] = x2 * c[i] + x1 * s[i];
    }
    if (R < D) memcpy(o + R, x + R, (size_t)(D - R) * sizeof(float));
}

/* as hearth_rope_cache, float32; tokens split over OpenMP threads from 64 on (a prefill
 * step's rows: each token's slots are its own) */
void hearth_rope_cache_f32(const float *qkv, const float *cos, const float *sin, float *q_out,
                           float *kcache, float *vcache, const int64_t *slots, int64_t T, int H,
                           int Hkv, int D, int R, int nthreads) {
    const int64_t row = (int64_t)(H + 2 * Hkv) * D;
#pragma omp parallel for num_threads(nthreads) schedule(static) if (nthreads > 1 && T >= 64)
    for (int64_t t = 0; t < T; t++) {
        const float *x = qkv + t * row;
        const float *c = cos + t * (R / 2), *s = sin + t * (R / 2);
        for (int h = 0; h < H; h++)
            rope_head_f32(x + (int64_t)h * D, c, s, q_out + (t * H + h) * (int64_t)D, D, R);
        float *kdst = kcache + slots[t] * (int64_t)Hkv * D;
        for (int h = 0; h < Hkv; h++)
            rope_head_f32(x + (int64_t)(H + h) * D, c, s, kdst + (int64_t)h * D, D, R);
        memcpy(vcache + slots[t] * (int64_t)Hkv * D, x + (int64_t)(H + Hkv) * D,
               (size_t)Hkv * D * sizeof(float));
    }
}
