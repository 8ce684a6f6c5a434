/* Linear recurrence h_t = a_t * h_{t-1} + b_t on the CPU, forward and adjoint.
 *
 * Compiled on first use by cpu_scan.py (a C compiler, no Python or torch headers) and
 * called through ctypes, which releases the GIL. Every tensor is described by a base
 * pointer and element strides over (time, o0, o1, inner): lane (o0, o1, i) runs its own
 * recurrence over time. The lanes are split between up to `threads` POSIX threads, each
 * sweeping time once over blocks of at most WMAX lanes with their states in a small
 * buffer, so a, b and the output are each touched once (the torch-op chunked scan
 * touches them twice and launches ~3 sqrt(L) operations).
 *
 * Complex numbers are (re, im) pairs of float or double; strides count complex elements.
 * The adjoint uses PyTorch's convention for complex gradients (conjugate Wirtinger):
 *   g_t = dh_t + conj(a_{t+1}) g_{t+1},  db_t = g_t,  da_t = g_t conj(h_{t-1}),
 *   dh0 = conj(a_0) g_0,  with h_{-1} = h0 (zero when absent).
 * Nothing here validates: the Python side checks shapes, dtypes and strides.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

typedef int64_t i64;

typedef struct {
    i64 L, n0, n1, ni;   /* time steps, lane dims (o0, o1, inner) */
    const void *a, *b, *h0, *dh, *h;
    void *out, *da, *dh0;
    i64 sa[4], sb[4], so[4], sd[4], sda[4]; /* (time, o0, o1, inner) strides */
    i64 sh0[3], sdh0[3];                    /* (o0, o1, inner) strides */
    int backward;
} job_t;

/* Offsets of lane row (o0, o1): of a (time, o0, o1, inner) tensor, and of an (o0, o1,
 * inner) one (h0, dh0). In elements (complex elements for complex types). */
#define LANE_OFF(s, o0, o1) ((o0) * (s)[1] + (o1) * (s)[2])
#define H_OFF(s, o0, o1) ((o0) * (s)[0] + (o1) * (s)[1])

#define WMAX 128 /* lanes per block: bounds the per-thread buffers */
#define TB 32    /* time steps the backward stages per block */

/* Element arithmetic. A value is NC scalars of type T: NC = 1 real, 2 complex (re, im).
 * FMA: o = x y + z;  CFMA: o = conj(x) y + z;  MULC: o = x conj(y). */
#define R_FMA(o, x, y, z) ((o)[0] = (x)[0] * (y)[0] + (z)[0])
#define R_CFMA R_FMA
#define R_MULC(o, x, y) ((o)[0] = (x)[0] * (y)[0])
#define C_FMA(o, x, y, z) do { T xr_ = (x)[0], xi_ = (x)[1], yr_ = (y)[0], yi_ = (y)[1];      \
    (o)[0] = xr_ * yr_ - xi_ * yi_ + (z)[0]; (o)[1] = xr_ * yi_ + xi_ * yr_ + (z)[1]; } while (0)
#define C_CFMA(o, x, y, z) do { T xr_ = (x)[0], xi_ = (x)[1], yr_ = (y)[0], yi_ = (y)[1];     \
    (o)[0] = xr_ * yr_ + xi_ * yi_ + (z)[0]; (o)[1] = xr_ * yi_ - xi_ * yr_ + (z)[1]; } while (0)
#define C_MULC(o, x, y) do { T xr_ = (x)[0], xi_ = (x)[1], yr_ = (y)[0], yi_ = (y)[1];        \
    (o)[0] = xr_ * yr_ + xi_ * yi_; (o)[1] = xi_ * yr_ - xr_ * yi_; } while (0)

/* NAME##_fwd_block / NAME##_bwd_block run lanes [i0, i1) (at most WMAX) of row (o0, o1).
 * buf holds WMAX values of state (forward), and 3 TB WMAX staged values (backward). */
#define DEFINE_SCAN(NAME, NC, FMA, CFMA, MULC)                                                \
/* dst[i] = src[i * s] for w values, and back (inline loops: a libc call per row of a few \
 * hundred bytes cost more than the copy) */                                                 \
static inline void NAME##_gather(T *restrict dst, const T *restrict src, i64 s, i64 w) {     \
    if (s == 1)                                                                               \
        for (i64 k = 0; k < w * NC; ++k) dst[k] = src[k];                                     \
    else                                                                                      \
        for (i64 i = 0; i < w; ++i)                                                           \
            for (int c = 0; c < NC; ++c) dst[i * NC + c] = src[i * s * NC + c];               \
}                                                                                             \
static inline void NAME##_scatter(T *restrict dst, i64 s, const T *restrict src, i64 w) {    \
    if (s == 1)                                                                               \
        for (i64 k = 0; k < w * NC; ++k) dst[k] = src[k];                                     \
    else                                                                                      \
        for (i64 i = 0; i < w; ++i)                                                           \
            for (int c = 0; c < NC; ++c) dst[i * s * NC + c] = src[i * NC + c];               \
}                                                                                             \
static inline void NAME##_zero(T *restrict dst, i64 w) {                                      \
    for (i64 k = 0; k < w * NC; ++k) dst[k] = 0;                                              \
}                                                                                             \
static void NAME##_fwd_block(const job_t *j, i64 o0, i64 o1, i64 i0, i64 i1, void *buf) {     \
    T *restrict st = (T *)buf;                                                                \
    const i64 w = i1 - i0, ai = j->sa[3], bi = j->sb[3], oi = j->so[3];                       \
    const T *a = (const T *)j->a + NC * (LANE_OFF(j->sa, o0, o1) + i0 * ai);                  \
    const T *b = (const T *)j->b + NC * (LANE_OFF(j->sb, o0, o1) + i0 * bi);                  \
    T *o = (T *)j->out + NC * (LANE_OFF(j->so, o0, o1) + i0 * oi);                            \
    if (j->h0)                                                                                \
        NAME##_gather(st, (const T *)j->h0 + NC * (H_OFF(j->sh0, o0, o1) + i0 * j->sh0[2]),   \
                      j->sh0[2], w);                                                          \
    else                                                                                      \
        NAME##_zero(st, w);                                          \
    for (i64 t = 0; t < j->L; ++t) {                                                          \
        const T *at = a + NC * t * j->sa[0], *bt = b + NC * t * j->sb[0];                     \
        T *ot = o + NC * t * j->so[0];                                                        \
        for (i64 i = 0; i < w; ++i) {                                                         \
            FMA(st + NC * i, at + NC * i * ai, st + NC * i, bt + NC * i * bi);                \
            for (int c = 0; c < NC; ++c) ot[NC * i * oi + c] = st[NC * i + c];                \
        }                                                                                     \
    }                                                                                         \
}                                                                                             \
/* The adjoint runs backwards in time. Walking memory downwards is slow where the hardware   \
 * prefetcher does not follow it (4x on the AMD EPYC of our CI machines), so each block of   \
 * TB steps is staged upwards into buffers, swept downwards there, and written upwards. */    \
static void NAME##_bwd_block(const job_t *j, i64 o0, i64 o1, i64 i0, i64 i1, void *buf) {     \
    const i64 w = i1 - i0, ai = j->sa[3], di = j->sd[3], hs = j->so[3];                       \
    const i64 bi = j->sb[3], dai = j->sda[3];                                                 \
    T *restrict g = (T *)buf;                /* adjoint state, w values */                    \
    T *restrict A = g + NC * WMAX;           /* a_{t+1} */                                    \
    T *restrict D = A + NC * TB * WMAX;      /* dh_t, then g_t = db_t */                      \
    T *restrict H = D + NC * TB * WMAX;      /* h_{t-1}, then da_t */                         \
    const T *a = (const T *)j->a + NC * (LANE_OFF(j->sa, o0, o1) + i0 * ai);                  \
    const T *dh = (const T *)j->dh + NC * (LANE_OFF(j->sd, o0, o1) + i0 * di);                \
    const T *h = (const T *)j->h + NC * (LANE_OFF(j->so, o0, o1) + i0 * hs);                  \
    const T *h0 = j->h0 ? (const T *)j->h0 + NC * (H_OFF(j->sh0, o0, o1) + i0 * j->sh0[2])   \
                        : 0;                                                                  \
    T *db = (T *)j->out + NC * (LANE_OFF(j->sb, o0, o1) + i0 * bi);                           \
    T *da = j->da ? (T *)j->da + NC * (LANE_OFF(j->sda, o0, o1) + i0 * dai) : 0;              \
    NAME##_zero(g, w);                                                                        \
    for (i64 hi = j->L - 1; hi >= 0; hi -= TB) {                                              \
        const i64 lo = hi - TB + 1 > 0 ? hi - TB + 1 : 0, n = hi - lo + 1;                    \
        for (i64 k = 0; k < n; ++k) { /* stage, upwards in time */                            \
            const i64 t = lo + k;                                                             \
            NAME##_gather(D + NC * k * WMAX, dh + NC * t * j->sd[0], di, w);                  \
            if (t + 1 < j->L)                                                                 \
                NAME##_gather(A + NC * k * WMAX, a + NC * (t + 1) * j->sa[0], ai, w);         \
            else                                                                              \
                NAME##_zero(A + NC * k * WMAX, w); /* g_{L-1} = dh_{L-1} */                   \
            if (!da) continue;                                                                \
            if (t > 0)                                                                        \
                NAME##_gather(H + NC * k * WMAX, h + NC * (t - 1) * j->so[0], hs, w);         \
            else if (h0)                                                                      \
                NAME##_gather(H + NC * k * WMAX, h0, j->sh0[2], w);                           \
            else                                                                              \
                NAME##_zero(H + NC * k * WMAX, w);                                          \
        }                                                                                     \
        for (i64 k = n - 1; k >= 0; --k) { /* sweep, downwards */                             \
            T *restrict Dk = D + NC * k * WMAX, *restrict Hk = H + NC * k * WMAX;             \
            const T *restrict Ak = A + NC * k * WMAX;                                         \
            for (i64 i = 0; i < w; ++i) {                                                     \
                CFMA(g + NC * i, Ak + NC * i, g + NC * i, Dk + NC * i); /* g_t */             \
                for (int c = 0; c < NC; ++c) Dk[NC * i + c] = g[NC * i + c];                  \
            }                                                                                 \
            if (da)                                                                           \
                for (i64 i = 0; i < w; ++i) MULC(Hk + NC * i, g + NC * i, Hk + NC * i);       \
        }                                                                                     \
        for (i64 k = 0; k < n; ++k) { /* write, upwards */                                    \
            const i64 t = lo + k;                                                             \
            NAME##_scatter(db + NC * t * j->sb[0], bi, D + NC * k * WMAX, w);                 \
            if (da) NAME##_scatter(da + NC * t * j->sda[0], dai, H + NC * k * WMAX, w);       \
        }                                                                                     \
    }                                                                                         \
    if (j->dh0) { /* dh0 = conj(a_0) g_0 */                                                   \
        T *p = (T *)j->dh0 + NC * (H_OFF(j->sdh0, o0, o1) + i0 * j->sdh0[2]);                 \
        for (i64 i = 0; i < w; ++i) {                                                         \
            T v[NC], zero[NC];                                                                \
            for (int c = 0; c < NC; ++c) zero[c] = 0;                                         \
            CFMA(v, a + NC * i * ai, g + NC * i, zero);                                       \
            for (int c = 0; c < NC; ++c) p[NC * i * j->sdh0[2] + c] = v[c];                   \
        }                                                                                     \
    }                                                                                         \
}

#define T float
DEFINE_SCAN(f32, 1, R_FMA, R_CFMA, R_MULC)
DEFINE_SCAN(c64, 2, C_FMA, C_CFMA, C_MULC)
#undef T
#define T double
DEFINE_SCAN(f64, 1, R_FMA, R_CFMA, R_MULC)
DEFINE_SCAN(c128, 2, C_FMA, C_CFMA, C_MULC)
#undef T

typedef void (*block_fn)(const job_t *, i64, i64, i64, i64, void *);

typedef struct {
    const job_t *job;
    block_fn fn;
    size_t value_bytes; /* bytes of one value of the dtype */
    i64 lo, hi;         /* this worker's lanes [lo, hi) */
    int status;
} worker_t;

/* Walk the lanes [lo, hi) in blocks of at most WMAX lanes of one row (a row is one
 * (o0, o1) pair of ni inner lanes). */
static void *run_worker(void *arg) {
    worker_t *w = (worker_t *)arg;
    const job_t *j = w->job;
    size_t values = j->backward ? (size_t)WMAX * (1 + 3 * TB) : (size_t)WMAX;
    void *buf = malloc(values * w->value_bytes);
    if (!buf) { w->status = 1; return 0; }
    for (i64 lane = w->lo; lane < w->hi;) {
        i64 row = lane / j->ni, i0 = lane % j->ni;
        i64 i1 = i0 + (w->hi - lane);
        if (i1 > j->ni) i1 = j->ni;
        if (i1 > i0 + WMAX) i1 = i0 + WMAX;
        w->fn(j, row / j->n1, row % j->n1, i0, i1, buf);
        lane += i1 - i0;
    }
    free(buf);
    w->status = 0;
    return 0;
}

#define MAX_THREADS 256

/* dtype: 0 float32, 1 float64, 2 complex64, 3 complex128. Returns 0 on success. */
static int run(job_t *j, int dtype, int threads) {
    static const block_fn fwd[4] = {(block_fn)f32_fwd_block, (block_fn)f64_fwd_block,
                                    (block_fn)c64_fwd_block, (block_fn)c128_fwd_block};
    static const block_fn bwd[4] = {(block_fn)f32_bwd_block, (block_fn)f64_bwd_block,
                                    (block_fn)c64_bwd_block, (block_fn)c128_bwd_block};
    static const size_t bytes[4] = {4, 8, 8, 16};
    if (dtype < 0 || dtype > 3) return 2;
    i64 lanes = j->n0 * j->n1 * j->ni;
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads > lanes) threads = (int)(lanes > 0 ? lanes : 1);
    worker_t w[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    for (int k = 0; k < threads; ++k) {
        w[k].job = j;
        w[k].fn = j->backward ? bwd[dtype] : fwd[dtype];
        w[k].value_bytes = bytes[dtype];
        w[k].lo = lanes * k / threads;
        w[k].hi = lanes * (k + 1) / threads;
        w[k].status = 1;
    }
    int started = 0;
    for (int k = 1; k < threads; ++k) {
        if (pthread_create(&tid[k], 0, run_worker, &w[k]) != 0) break;
        started = k;
    }
    run_worker(&w[0]);
    for (int k = 1; k <= started; ++k) pthread_join(tid[k], 0);
    for (int k = started + 1; k < threads; ++k) run_worker(&w[k]); /* threads not started */
    for (int k = 0; k < threads; ++k)
        if (w[k].status) return 1;
    return 0;
}

static void set_strides(i64 *dst, const i64 *src, int n) {
    for (int k = 0; k < n; ++k) dst[k] = src[k];
}

/* h (out) from a, b, h0 (may be NULL). Strides: 4 per tensor, 3 for h0. */
int ssmts_scan_fwd(int dtype, int threads, i64 L, i64 n0, i64 n1, i64 ni,
                   const void *a, const i64 *sa, const void *b, const i64 *sb,
                   const void *h0, const i64 *sh0, void *out, const i64 *so) {
    job_t j = {0};
    j.L = L; j.n0 = n0; j.n1 = n1; j.ni = ni;
    j.a = a; j.b = b; j.h0 = h0; j.out = out;
    set_strides(j.sa, sa, 4); set_strides(j.sb, sb, 4); set_strides(j.so, so, 4);
    if (h0) set_strides(j.sh0, sh0, 3);
    return run(&j, dtype, threads);
}

/* db (into `db`, strides sdb), da (may be NULL), dh0 (may be NULL) from a, dh, the
 * forward's states h and h0 (may be NULL). */
int ssmts_scan_bwd(int dtype, int threads, i64 L, i64 n0, i64 n1, i64 ni,
                   const void *a, const i64 *sa, const void *dh, const i64 *sd,
                   const void *h, const i64 *sh, const void *h0, const i64 *sh0,
                   void *db, const i64 *sdb, void *da, const i64 *sda,
                   void *dh0, const i64 *sdh0) {
    job_t j = {0};
    j.L = L; j.n0 = n0; j.n1 = n1; j.ni = ni; j.backward = 1;
    j.a = a; j.dh = dh; j.h = h; j.h0 = h0; j.out = db; j.da = da; j.dh0 = dh0;
    set_strides(j.sa, sa, 4); set_strides(j.sd, sd, 4); set_strides(j.so, sh, 4);
    set_strides(j.sb, sdb, 4);
    if (da) set_strides(j.sda, sda, 4);
    if (h0) set_strides(j.sh0, sh0, 3);
    if (dh0) set_strides(j.sdh0, sdh0, 3);
    return run(&j, dtype, threads);
}
