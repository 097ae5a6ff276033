/* A whole decode-only step of a plain Llama-family decoder in one call: for each layer,
 *   x = rms_norm(h); qkv = x @ Wqkv.T; rope on q, k; k, v into the paged cache;
 *   a = paged attention(q); h = h + a @ Wo.T;
 *   x = rms_norm(h); g = silu(x @ Wgate.T) * (x @ Wup.T); h = h + g @ Wdown.T
 * then the final norm. On a one-token step of a small model the ~15 torch calls per layer
 * this replaces cost more than their arithmetic (~5 us of dispatch each, 30 layers); here
 * the step is one ctypes call, and the work-sharing pool's helpers stay awake between
 * matmuls microseconds apart.
 *
 * The pieces are the other kernels' own functions (included below, one library), so the
 * roundings are exactly theirs and the torch road's: every intermediate bfloat16, each
 * residual add rounded once, as `hidden + attn` on bf16 tensors is.
 *
 * Weights: every projection int4 or int8 in lowbit_matmul.c's layout, no biases; q, k, v
 * fused (rows q, then k, then v), gate and up fused (rows gate, then up). hearth/model/
 * decode_step.py checks a model fits before it plans a step.
 *
 * LoRA: a step whose rows use adapters passes each projection's slots (lora_delta.c, the
 * very function the layers' hook calls) and each row's slot; after each base projection
 * the rows' updates are added to its bf16 output, as the hook adds them. */

#include "decode_ops.c"
#include "lora_delta.c"
#include "lowbit_matmul.c"
#include "paged_decode.c"

typedef struct {
    int int8; /* 0: int4 codes, scales, mins; 1: int8 codes, corr, scales */
    int N, K;
    const void *w0, *w1, *w2;
} step_linear_t;

typedef struct {
    const uint16_t *input_norm, *post_norm; /* (hidden,) bf16 */
    step_linear_t qkv, o, gate_up, down;
    uint16_t *kcache, *vcache; /* (num_blocks, bs, Hkv, D) bf16 */
    int rope, mask;            /* which of the step's rope tables and key ranges it takes */
    float scale;
} step_layer_t;

typedef struct {
    int layers, hidden, H, Hkv, D, R, inter, bs;
    float eps;
    const step_layer_t *layer;
    const uint16_t *final_norm; /* (hidden,) bf16 */
} step_model_t;

static int linear(const step_linear_t *w, const uint16_t *x, int S, uint16_t *y, int nthreads,
                  int pooled) {
    return lowbit_matmul(x, 1, S, w->K, w->N, w->w0, w->w1, w->w2, y, 1, nthreads, pooled,
                         w->int8);
}

/* y += the rows' LoRA updates of projection `k` of layer `l` (0 qkv, 1 o, 2 gate_up, 3
 * down), when the step has adapters and the adapters serve that projection */
static int lora_into(const lora_proj_t *const *lora, int l, int k, const uint16_t *x, int S,
                     uint16_t *y, const int64_t *row_slots, int nthreads, int pooled) {
    const lora_proj_t *p = lora ? lora[4 * l + k] : NULL;
    return p ? hearth_lora_add(p, x, 1, y, 1, S, row_slots, nthreads, pooled) : 0;
}

static void add_into(uint16_t *h, const uint16_t *d, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) h[i] = f32_to_bf16(bf16_to_f32(h[i]) + bf16_to_f32(d[i]));
}

/* hidden (S, hidden) bf16 is the residual stream: read, updated in place, and left before
 * the final norm; out (S, hidden) gets it normed. cos/sin: per rope table, (S, R/2) bf16;
 * starts: per key-range rule, (S,) int64; slots, ends (S,); blocks (S, B) with row stride
 * blocks_stride. nthreads/pooled: as the matmul kernels take them; omp_threads: the
 * elementwise passes' OpenMP threads (from 64 rows on, as decode_ops.c). Returns 0, or the
 * first non-zero status of a piece (a shape or size the plan should have refused: hidden is
 * then half-updated, and the caller raises). lora: NULL (no adapter in the step), or per
 * layer its four projections' slots (NULL: not served), row_slots (S,) int64 (-1: none). */
int hearth_decode_step(const step_model_t *m, uint16_t *hidden, uint16_t *out, int S,
                       const uint16_t *const *cos, const uint16_t *const *sin,
                       const int64_t *slots, const int64_t *blocks, int64_t blocks_stride,
                       const int64_t *const *starts, const int64_t *ends,
                       const lora_proj_t *const *lora, const int64_t *row_slots, int nthreads,
                       int pooled, int omp_threads) {
    const int Hd = m->hidden, H = m->H, Hkv = m->Hkv, D = m->D;
    const int64_t qkv_n = (int64_t)(H + 2 * Hkv) * D, inter = m->inter;
    /* one scratch block for the step: normed x, qkv, q, attention out, gate|up, gated */
    const int64_t widest = qkv_n > 2 * inter ? qkv_n : 2 * inter;
    uint16_t *x = malloc(sizeof(uint16_t) * (size_t)S *
                         ((size_t)Hd + (size_t)widest + 2 * (size_t)H * D + (size_t)inter + Hd));
    if (!x) return 2;
    uint16_t *wide = x + (size_t)S * Hd, *q = wide + (size_t)S * widest;
    uint16_t *att = q + (size_t)S * H * D, *gated = att + (size_t)S * H * D;
    uint16_t *proj = gated + (size_t)S * inter;
    int status = 0;
    for (int l = 0; l < m->layers && !status; l++) {
        const step_layer_t *L = &m->layer[l];
        hearth_rms_norm(hidden, L->input_norm, x, S, Hd, m->eps, 0, omp_threads);
        if ((status = linear(&L->qkv, x, S, wide, nthreads, pooled))) break;
        if ((status = lora_into(lora, l, 0, x, S, wide, row_slots, nthreads, pooled))) break;
        hearth_rope_cache(wide, cos[L->rope], sin[L->rope], q, L->kcache, L->vcache, slots, S, H,
                          Hkv, D, m->R);
        status = hearth_paged_decode(q, L->kcache, L->vcache, blocks, blocks_stride,
                                     starts[L->mask], ends, att, S, H, Hkv, D, D, m->bs,
                                     L->scale, 0.0f, 1, 1, nthreads, pooled);
        if (status || (status = linear(&L->o, att, S, proj, nthreads, pooled))) break;
        if ((status = lora_into(lora, l, 1, att, S, proj, row_slots, nthreads, pooled))) break;
        add_into(hidden, proj, (int64_t)S * Hd);
        hearth_rms_norm(hidden, L->post_norm, x, S, Hd, m->eps, 0, omp_threads);
        if ((status = linear(&L->gate_up, x, S, wide, nthreads, pooled))) break;
        if ((status = lora_into(lora, l, 2, x, S, wide, row_slots, nthreads, pooled))) break;
        hearth_silu_mul(wide, gated, S, (int)inter, omp_threads);
        if ((status = linear(&L->down, gated, S, proj, nthreads, pooled))) break;
        if ((status = lora_into(lora, l, 3, gated, S, proj, row_slots, nthreads, pooled))) break;
        add_into(hidden, proj, (int64_t)S * Hd);
    }
    if (!status) hearth_rms_norm(hidden, m->final_norm, out, S, Hd, m->eps, 0, omp_threads);
    free(x);
    return status;
}

void hearth_step_set_pool(pool_fn fn) {
    hearth_lowbit_set_pool(fn);
    hearth_paged_set_pool(fn);
    hearth_lora_set_pool(fn);
}
