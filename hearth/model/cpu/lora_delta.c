/* Serving LoRA's per-row update of one projection, added in place after the base matmul:
 *   y_r += B_s (A_s x_r)        for every row r whose adapter slot s = row_slots[r] >= 0
 * (the scaling is folded into B). Rows are grouped by slot, so each resident adapter's A
 * and B are read once per call whatever number of rows use it; rows of slot -1 (the base)
 * cost nothing. One function serves both roads that run adapters, the layers' hook
 * (model/layers/lora_slots.py through lora_delta.py) and the whole decode step
 * (decode_step.c includes this file), so the two give the same bits.
 *
 * Layouts (lora_slots.py owns them):
 *   a   (slots * C, K) float32 or bfloat16 (w_bf16), C = parts * R: slot s, part i's rank
 *       rows at s*C + i*R
 *   bt  (slots * C, N) as a, B transposed and scaled: part i's rows fill its columns
 *       [offset[i], offset[i] + size[i]) and are zero elsewhere (never read here)
 *   ranks (slots,) int32: the rank rows in use in each slot (the largest of its parts; 0:
 *       the slot's adapter does not target this projection); rows past it are zero
 *   x (S, K), y (S, N): bfloat16 or float32, contiguous
 * A fused projection (qkv: parts q, k, v; gate_up: gate, up) is one call.
 *
 * Roundings: every product and sum in float32 (PEFT's dtype), in an order fixed by the
 * code alone (16 lanes for the A products, rank order for the B products), never by the
 * thread count, the rows sharing the call or a pointer's alignment; a bf16 y gets y = bf16(y + bf16(delta)), what `out.add_(delta.
 * to(out.dtype))` on bf16 tensors does. Work is split over (slot, rank-row) items, then
 * (slot, part, 128 columns) items, on the work-sharing pool or OpenMP, as lowbit_matmul.c;
 * rows go 4 at a time, so each weight vector is loaded once for four rows. On SmolLM2 with
 * 4 rank-16 adapters the passes are bound by reading A and B (39 MB of bf16 a step):
 * docs/decisions/lora-serving.md. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_common.h"

#define LORA_MAX_PARTS 3
#define LORA_COLS 128 /* output columns per item of the B pass */
#define LORA_LANES 16

typedef struct {
    const void *a, *bt;
    const int32_t *ranks;
    int w_bf16, slots, R, parts, K, N;
    int offset[LORA_MAX_PARTS], size[LORA_MAX_PARTS];
} lora_proj_t;

static pool_fn lora_pool;

void hearth_lora_set_pool(pool_fn fn) { lora_pool = fn; }

typedef struct {
    int slot, first, count; /* rows order[first .. first+count) use `slot` */
    int64_t a_items, b_items; /* this group's items end here (prefix sums) */
} lora_group_t;

typedef struct {
    const lora_proj_t *p;
    const float *xs;   /* (S, K) float32, rows in group order */
    float *low;        /* (S, C) float32, rows in group order */
    const int32_t *order; /* group row -> the row of x and y */
    void *y;
    int y_bf16, ngroups, C;
    const lora_group_t *groups;
    int64_t chunks[LORA_MAX_PARTS]; /* column items per part */
} lora_job_t;

static const lora_group_t *lora_group_of(const lora_job_t *j, int64_t item, int b_pass,
                                         int64_t *local) {
    int64_t start = 0;
    for (int g = 0; g < j->ngroups; g++) {
        const int64_t end = b_pass ? j->groups[g].b_items : j->groups[g].a_items;
        if (item < end) {
            *local = item - start;
            return &j->groups[g];
        }
        start = end;
    }
    return NULL;
}

/* 4 rows at once against one weight row (each weight vector loaded once for the four),
 * 16 lanes a row: lane l sums k = l, l + 16, ... in order, then the lanes pairwise. Rows
 * past m repeat row 0 and are dropped. */
#define LORA_MR 4
#define LORA_DOTS(name, type, load)                                                         \
    static void name(const float *const *x, int m, const type *a, int K, float *out) {      \
        float acc[LORA_MR][LORA_LANES] = {{0}};                                               \
        int k = 0;                                                                            \
        for (; k + LORA_LANES <= K; k += LORA_LANES)                                          \
            _Pragma("omp simd") for (int l = 0; l < LORA_LANES; l++) {                       \
                const float w = load(a[k + l]);                                               \
                for (int r = 0; r < LORA_MR; r++) acc[r][l] += x[r][k + l] * w;              \
            }                                                                                 \
        for (int l = 0; k + l < K; l++)                                                       \
            for (int r = 0; r < LORA_MR; r++) acc[r][l] += x[r][k + l] * load(a[k + l]);    \
        for (int r = 0; r < m; r++) {                                                         \
            for (int w = LORA_LANES / 2; w > 0; w /= 2)                                      \
                for (int l = 0; l < w; l++) acc[r][l] += acc[r][l + w];                       \
            out[r] = acc[r][0];                                                               \
        }                                                                                     \
    }
#define LORA_F32(v) (v)
LORA_DOTS(lora_dots_f32, float, LORA_F32)
LORA_DOTS(lora_dots_bf16, uint16_t, bf16_to_f32)

/* item: one rank row (part i, row c) of one slot, against every row of that slot */
static void lora_a_item(void *ctx, int64_t item) {
    const lora_job_t *j = ctx;
    const lora_proj_t *p = j->p;
    int64_t local;
    const lora_group_t *g = lora_group_of(j, item, 0, &local);
    const int rank = p->ranks[g->slot];
    const int part = (int)(local / rank), c = (int)(local % rank);
    const int64_t a0 = ((int64_t)g->slot * j->C + (int64_t)part * p->R + c) * p->K;
    for (int r0 = g->first; r0 < g->first + g->count; r0 += LORA_MR) {
        const int m = g->first + g->count - r0 < LORA_MR ? g->first + g->count - r0 : LORA_MR;
        const float *x[LORA_MR];
        float out[LORA_MR];
        for (int r = 0; r < LORA_MR; r++) x[r] = j->xs + (int64_t)(r0 + (r < m ? r : 0)) * p->K;
        if (p->w_bf16)
            lora_dots_bf16(x, m, (const uint16_t *)p->a + a0, p->K, out);
        else
            lora_dots_f32(x, m, (const float *)p->a + a0, p->K, out);
        for (int r = 0; r < m; r++) j->low[(int64_t)(r0 + r) * j->C + part * p->R + c] = out[r];
    }
}

/* d[r][0..16) = sum over c in order of low[r][c] * bt[c][0..16), 4 rows at once (each B
 * vector loaded once for the four); rows past m repeat row 0 */
#define LORA_AXPYS(name, type, load)                                                        \
    static void name(const float *const *low, const type *b, int64_t N, int rank, int w,   \
                     float d[LORA_MR][LORA_LANES]) {                                          \
        float acc[LORA_MR][LORA_LANES] = {{0}}; /* local: kept in registers */                \
        if (w == LORA_LANES) {                                                                \
            for (int c = 0; c < rank; c++) {                                                  \
                const type *bc = b + (int64_t)c * N;                                          \
                const float l0 = low[0][c], l1 = low[1][c], l2 = low[2][c], l3 = low[3][c];   \
                _Pragma("omp simd") for (int l = 0; l < LORA_LANES; l++) {                   \
                    const float v = load(bc[l]);                                              \
                    acc[0][l] += l0 * v;                                                      \
                    acc[1][l] += l1 * v;                                                      \
                    acc[2][l] += l2 * v;                                                      \
                    acc[3][l] += l3 * v;                                                      \
                }                                                                             \
            }                                                                                 \
        } else {                                                                              \
            for (int c = 0; c < rank; c++)                                                    \
                for (int l = 0; l < w; l++)                                                   \
                    for (int r = 0; r < LORA_MR; r++)                                         \
                        acc[r][l] += low[r][c] * load(b[(int64_t)c * N + l]);                 \
        }                                                                                     \
        memcpy(d, acc, sizeof(acc));                                                          \
    }
LORA_AXPYS(lora_axpys_f32, float, LORA_F32)
LORA_AXPYS(lora_axpys_bf16, uint16_t, bf16_to_f32)

/* item: LORA_COLS output columns of one part of one slot, for every row of that slot */
static void lora_b_item(void *ctx, int64_t item) {
    const lora_job_t *j = ctx;
    const lora_proj_t *p = j->p;
    int64_t local;
    const lora_group_t *g = lora_group_of(j, item, 1, &local);
    const int rank = p->ranks[g->slot];
    int part = 0;
    while (local >= j->chunks[part]) local -= j->chunks[part++];
    const int start = p->offset[part] + (int)local * LORA_COLS;
    const int end = p->offset[part] + p->size[part];
    const int stop = end - start < LORA_COLS ? end : start + LORA_COLS;
    const int64_t b0 = ((int64_t)g->slot * j->C + (int64_t)part * p->R) * p->N;
    float d[LORA_MR][LORA_LANES] __attribute__((aligned(64)));
    for (int r0 = g->first; r0 < g->first + g->count; r0 += LORA_MR) {
        const int m = g->first + g->count - r0 < LORA_MR ? g->first + g->count - r0 : LORA_MR;
        const float *low[LORA_MR];
        for (int r = 0; r < LORA_MR; r++)
            low[r] = j->low + (int64_t)(r0 + (r < m ? r : 0)) * j->C + part * p->R;
        for (int o0 = start; o0 < stop; o0 += LORA_LANES) {
            const int w = stop - o0 < LORA_LANES ? stop - o0 : LORA_LANES;
            if (p->w_bf16)
                lora_axpys_bf16(low, (const uint16_t *)p->bt + b0 + o0, p->N, rank, w, d);
            else
                lora_axpys_f32(low, (const float *)p->bt + b0 + o0, p->N, rank, w, d);
            for (int r = 0; r < m; r++) {
                const int64_t row = (int64_t)j->order[r0 + r] * p->N + o0;
                if (j->y_bf16) {
                    uint16_t *y = (uint16_t *)j->y + row;
#pragma omp simd
                    for (int l = 0; l < w; l++)
                        y[l] = f32_to_bf16(bf16_to_f32(y[l]) + round_bf16(d[r][l]));
                } else {
                    float *y = (float *)j->y + row;
#pragma omp simd
                    for (int l = 0; l < w; l++) y[l] += d[r][l];
                }
            }
        }
    }
}

/* An OpenMP team only from this many multiply-adds a pass: waking PASSIVE workers costs
 * ~100 us a region on a shared 2-core machine, while a decode step's pass (16 rows, rank
 * 16, SmolLM2's widths: ~0.5 M) takes ~50 us on one thread; a prefill's passes are 30x
 * that. The pool's helpers are awake between a step's calls, so it always shares. */
#define LORA_OMP_MIN_MACS (4 << 20)

static void lora_run(item_fn fn, lora_job_t *j, int64_t items, int64_t macs, int nthreads,
                     int pooled) {
    if (items > 1 && nthreads > 1 && pooled && lora_pool) {
        lora_pool(fn, j, items, nthreads);
    } else if (items == 1 || nthreads < 2 || macs < LORA_OMP_MIN_MACS) {
        for (int64_t i = 0; i < items; i++) fn(j, i); /* no team to start */
    } else {
#pragma omp parallel for num_threads(nthreads) schedule(static)
        for (int64_t i = 0; i < items; i++) fn(j, i);
    }
}

/* y (S, N) += each row's update; row_slots (S,) int64 (-1: none). Returns 0, 1 for a
 * layout it does not take, 2 when out of memory. */
int hearth_lora_add(const lora_proj_t *p, const void *x, int x_bf16, void *y, int y_bf16,
                    int S, const int64_t *row_slots, int nthreads, int pooled) {
    if (p->parts < 1 || p->parts > LORA_MAX_PARTS || S < 1) return 1;
    const int C = p->parts * p->R;
    /* rows grouped by slot, in slot order; rows of untargeted slots dropped */
    int32_t *order = malloc(sizeof(int32_t) * (size_t)S);
    lora_group_t *groups = malloc(sizeof(lora_group_t) * (size_t)(p->slots > 0 ? p->slots : 1));
    if (!order || !groups) {
        free(order);
        free(groups);
        return 2;
    }
    lora_job_t j = {p, NULL, NULL, order, y, y_bf16, 0, C, groups, {0}};
    int64_t col_items = 0;
    for (int i = 0; i < p->parts; i++) {
        j.chunks[i] = (p->size[i] + LORA_COLS - 1) / LORA_COLS;
        col_items += j.chunks[i];
    }
    int n = 0;
    int64_t a_items = 0, b_items = 0, a_macs = 0, b_macs = 0;
    for (int s = 0; s < p->slots; s++) {
        if (p->ranks[s] <= 0) continue;
        const int first = n;
        for (int r = 0; r < S; r++)
            if (row_slots[r] == s) order[n++] = r;
        if (n == first) continue;
        a_items += (int64_t)p->parts * p->ranks[s];
        b_items += col_items;
        a_macs += (int64_t)(n - first) * p->parts * p->ranks[s] * p->K;
        b_macs += (int64_t)(n - first) * p->ranks[s] * p->N;
        groups[j.ngroups++] = (lora_group_t){s, first, n - first, a_items, b_items};
    }
    int status = 0;
    if (n > 0) {
        /* x's rows of the groups as float32 (64-byte aligned: the same bits whatever x's
         * address), then the rank-row activations */
        const size_t xs_bytes = ((sizeof(float) * (size_t)n * p->K) + 63) & ~(size_t)63;
        float *buf = aligned_alloc(64, xs_bytes + (((sizeof(float) * (size_t)n * C) + 63) &
                                                   ~(size_t)63));
        if (!buf) {
            status = 2;
        } else {
            float *xs = buf;
            for (int r = 0; r < n; r++) {
                const int64_t src = (int64_t)order[r] * p->K;
                float *dst = xs + (int64_t)r * p->K;
                if (x_bf16) {
                    const uint16_t *xb = (const uint16_t *)x + src;
#pragma omp simd
                    for (int k = 0; k < p->K; k++) dst[k] = bf16_to_f32(xb[k]);
                } else {
                    memcpy(dst, (const float *)x + src, sizeof(float) * (size_t)p->K);
                }
            }
            j.xs = xs;
            j.low = (float *)((char *)buf + xs_bytes);
            lora_run(lora_a_item, &j, a_items, a_macs, nthreads, pooled);
            lora_run(lora_b_item, &j, b_items, b_macs, nthreads, pooled);
            free(buf);
        }
    }
    free(order);
    free(groups);
    return status;
}
