/* The encoder's residual add and post-norm for bfloat16 projections with a float32
 * residual stream (hearth/model/layers/encoder.py), one pass per row in place of five
 * torch ops and their temporaries (promote, add, layer_norm, cast, and each one's fresh
 * (T, H) buffer):
 *
 *   hearth_add_layer_norm   x = LayerNorm(x + y) in float32 (x (T, H) float32, y (T, H) the
 *                           bfloat16 projection output), then y = bf16(x), the next
 *                           projection's input. Both written in place.
 *
 * Mean and variance in float32 over the row (two passes, as torch's float32 LayerNorm
 * does; sums in another order, so results agree with it to a float32 ulp or two). Rows are
 * split over OpenMP threads from 64 rows on. Built at first use by
 * hearth/model/cpu/encoder_ops.py. */

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernel_common.h"

void hearth_add_layer_norm(float *x, uint16_t *y, const float *gamma, const float *beta,
                           int64_t rows, int dim, float eps, int nthreads) {
#pragma omp parallel for num_threads(nthreads) schedule(static) if (nthreads > 1 && rows >= 64)
    for (int64_t r = 0; r < rows; r++) {
        float *xr = x + r * dim;
        uint16_t *yr = y + r * dim;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int i = 0; i < dim; i++) {
            const float v = xr[i] + bf16_to_f32(yr[i]);
            xr[i] = v;
            sum += v;
        }
        const float mean = sum / (float)dim;
        float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
        for (int i = 0; i < dim; i++) {
            const float d = xr[i] - mean;
            ss += d * d;
        }
        const float inv = 1.0f / sqrtf(ss / (float)dim + eps);
#pragma omp simd
        for (int i = 0; i < dim; i++) {
            const float v = (xr[i] - mean) * inv * gamma[i] + beta[i];
            xr[i] = v;
            yr[i] = f32_to_bf16(v);
        }
    }
}
