/* Fused element-wise kernels of the NumPy fast path (xpmlp/_fast.py).
 *
 * Each kernel does in one pass over the arrays what _fast.py otherwise does in several NumPy
 * ufunc passes, with the same operations in the same order and every intermediate rounded
 * to the array's type, so that both give the same numbers bit for bit (the build turns off
 * floating-point contraction: no fused multiply-add). Optional: where this file cannot be
 * compiled, _fast.py runs the ufunc passes.
 *
 * One entry point, run(args): args is a bytes object of int64 words, packed once per
 * training call by _fast.py (the arrays' addresses, their sizes; per-step scalars are read
 * through pointers), so that a call costs about as little as a call can.
 *
 * The passes between a step's matrix products (h, delta, the batch gather, the optimizer's
 * step) can run in parts on the threads of the BLAS that NumPy links (OpenBLAS), which wait
 * between the products: set_pool() gives its gotoblas_pthread() and
 * openblas_get_num_threads(). Each element is computed as on one thread; only the work is
 * shared.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <fenv.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/ndarraytypes.h>
#include <numpy/ufuncobject.h>

#if defined(_MSC_VER)
#define restrict __restrict
#endif

/* the layout of run()'s words; _fast.py uses a build only of the layout it packs */
#define KERNELS_VERSION 4

/* The optimizer's step on rows r0:r1 of one layer, cols wide, C-contiguous: first the L2
 * term G[:, 1:] += c W[:, 1:] (when c is not NULL; the bias column is left as it is), then
 * the rule on W, G and its state A, B. With the L2 term it also writes each row's
 * sum_j>0 W[r, j]**2 of the weights it starts from, summed in double, to sq[r] (the caller
 * adds the rows in order: the same sum in parts or whole).
 * The rules:
 *   0 SGD        W <- W + (-eta G)
 *   1 momentum   V <- mu V + (-eta G); W <- W + V                       (A = V)
 *   2 Nesterov   V <- mu V + (-eta G); W <- W + (mu V + (-eta G))      (A = V)
 *   3 Adam       m <- b1 m + (1 - b1) G; v <- b2 v + (1 - b2) G G;
 *                W <- W + (-eta_t m) / (sqrt(v) + eps)                  (A = m, B = v)
 * hp holds the rule's constants in the array's type: mu, or b1, 1 - b1, b2, 1 - b2, eps;
 * neg_lr (-eta, or Adam's -eta_t) and c (alpha / S) are read at the call (they change per
 * step). G is overwritten (by G + c W, and for SGD by -eta G) as the ufunc passes do. */
#define STEP(NAME, T, SQRT)                                                                  \
    static void NAME(int rule, ptrdiff_t r0, ptrdiff_t r1, ptrdiff_t cols, T *restrict w,    \
                     T *restrict g, T *restrict a, T *restrict b, const T *c,                \
                     const T *neg_lr, const T *hp, double *restrict sq_rows)                 \
    {                                                                                        \
        const T lr = *neg_lr;                                                                \
        for (ptrdiff_t r = r0; r < r1; r++) {                                                \
            T *restrict wr = w + r * cols, *restrict gr = g + r * cols;                      \
            T *restrict ar = a ? a + r * cols : NULL, *restrict br = b ? b + r * cols : NULL; \
            if (c) {                                                                         \
                const T cc = *c;                                                             \
                for (ptrdiff_t j = 1; j < cols; j++) gr[j] = gr[j] + wr[j] * cc;             \
                double sq[8] = {0, 0, 0, 0, 0, 0, 0, 0}; /* lanes: it vectorizes */          \
                ptrdiff_t j = 1;                                                             \
                for (; j + 8 <= cols; j += 8)                                                \
                    for (int k = 0; k < 8; k++) sq[k] += (double)wr[j + k] * wr[j + k];      \
                for (; j < cols; j++) sq[0] += (double)wr[j] * wr[j];                        \
                double sum = 0;                                                              \
                for (int k = 0; k < 8; k++) sum += sq[k];                                    \
                sq_rows[r] = sum;                                                            \
            }                                                                                \
            if (rule == 0) {                                                                 \
                for (ptrdiff_t j = 0; j < cols; j++) {                                       \
                    T u = gr[j] * lr;                                                        \
                    gr[j] = u;                                                               \
                    wr[j] = wr[j] + u;                                                       \
                }                                                                            \
            } else if (rule == 1 || rule == 2) {                                             \
                const T mu = hp[0];                                                          \
                for (ptrdiff_t j = 0; j < cols; j++) {                                       \
                    T u = gr[j] * lr;                                                        \
                    T v = ar[j] * mu;                                                        \
                    v = v + u;                                                               \
                    ar[j] = v;                                                               \
                    if (rule == 2) {                                                         \
                        v = v * mu;                                                          \
                        v = v + u;                                                           \
                    }                                                                        \
                    wr[j] = wr[j] + v;                                                       \
                }                                                                            \
            } else {                                                                         \
                const T b1 = hp[0], c1 = hp[1], b2 = hp[2], c2 = hp[3], eps = hp[4];         \
                for (ptrdiff_t j = 0; j < cols; j++) {                                       \
                    T gj = gr[j];                                                            \
                    T m = ar[j] * b1;                                                        \
                    m = m + gj * c1;                                                         \
                    ar[j] = m;                                                               \
                    T q = gj * gj;                                                           \
                    q = q * c2;                                                              \
                    T v = br[j] * b2;                                                        \
                    v = v + q;                                                               \
                    br[j] = v;                                                               \
                    T den = SQRT(v);                                                         \
                    den = den + eps;                                                         \
                    T u = m * lr;                                                            \
                    u = u / den;                                                             \
                    wr[j] = wr[j] + u;                                                       \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    }

STEP(xpmlp_step_f32, float, sqrtf)
STEP(xpmlp_step_f64, double, sqrt)

/* delta = h'(a) * P over Z = h(a) in place, n elements:
 *   0 identity  Z <- P
 *   1 tanh      Z <- (1 - Z Z) P
 *   2 logistic  Z <- (1 - Z) (P Z)
 *   3 relu      Z <- [Z > 0] P */
#define DELTA(NAME, T, U, INF)                                                               \
    static void NAME(int kind, ptrdiff_t n, T *restrict z, const T *restrict p)              \
    {                                                                                        \
        if (kind == 0) {                                                                     \
            for (ptrdiff_t i = 0; i < n; i++) z[i] = p[i];                                   \
        } else if (kind == 1) {                                                              \
            for (ptrdiff_t i = 0; i < n; i++) {                                              \
                T s = z[i] * z[i];                                                           \
                s = (T)1 - s;                                                                \
                z[i] = s * p[i];                                                             \
            }                                                                                \
        } else if (kind == 2) {                                                              \
            for (ptrdiff_t i = 0; i < n; i++) {                                              \
                T q = p[i] * z[i];                                                           \
                T s = (T)1 - z[i];                                                           \
                z[i] = s * q;                                                                \
            }                                                                                \
        } else {                                                                             \
            /* [z > 0] from z's bits, 1 to +inf: a comparison raises "invalid" on NaN in   \
             * vector code, where NumPy's greater raises nothing */                          \
            for (ptrdiff_t i = 0; i < n; i++) {                                              \
                U u;                                                                         \
                memcpy(&u, z + i, sizeof u);                                                 \
                z[i] = ((U)(u - 1) < INF ? (T)1 : (T)0) * p[i];                              \
            }                                                                                \
        }                                                                                    \
    }

DELTA(xpmlp_delta_f32, float, uint32_t, 0x7f800000u)
DELTA(xpmlp_delta_f64, double, uint64_t, 0x7ff0000000000000u)

/* NumPy's own inner loop of a ufunc (ufunc->functions[i]), called on a part: in place,
 * z <- f(z), or z <- f(z, s) with the scalar *s (steps 0) */
typedef void (*loop_t)(char **args, const npy_intp *dims, const npy_intp *steps, void *data);

static void xpmlp_loop(void *fn, void *data, ptrdiff_t n, char *z, char *s, npy_intp size)
{
    npy_intp dims[1] = {n};
    if (s) {
        char *args[3] = {z, s, z};
        npy_intp steps[3] = {size, 0, size};
        ((loop_t)fn)(args, dims, steps, data);
    } else {
        char *args[2] = {z, z};
        npy_intp steps[2] = {size, size};
        ((loop_t)fn)(args, dims, steps, data);
    }
}

/* rows r of a batch: dst[r] <- src[idx[r]], each row `bytes` long; strides in bytes */
static void xpmlp_gather(ptrdiff_t lo, ptrdiff_t hi, char *dst, ptrdiff_t dst_ld,
                         const char *src, ptrdiff_t src_ld, ptrdiff_t bytes,
                         const npy_intp *idx)
{
    for (ptrdiff_t r = lo; r < hi; r++)
        memcpy(dst + r * dst_ld, src + idx[r] * src_ld, (size_t)bytes);
}

/* args: op, type (0 float32, 1 float64), then
 *   0 step:    rows, rule, cols, W, G, A, B, c, neg_lr, hp, penalty, scale, sq
 *              (addresses; 0 for NULL; sq: a double per row, for the L2 penalty, which
 *              is added to *penalty as *scale * sum_r sq[r])
 *   1 delta:   n, kind, Z, P
 *   2 loop:    n, Z, fn, data, s (a scalar's address, or 0 for a unary loop)
 *   3 gather:  rows, dst, dst_ld, src, src_ld, bytes, idx (intp)
 * and word 15: the fewest elements (rows of a step or a gather) worth a thread of their
 * own; 0 keeps the op on this thread. */
#define WORDS 16
#define MIN_PART 15
#define MAX_PARTS 64

static int (*pool_run)(int, void *, void *, int);  /* gotoblas_pthread(n, fn, parts, stride) */
static int (*pool_size)(void);                     /* openblas_get_num_threads() */

typedef struct {
    const int64_t *a;
    ptrdiff_t lo, hi; /* elements, or rows of a gather */
    int raised;       /* the part's floating-point errors: each thread has its own flags */
    char pad[64];     /* one cache line per part's flags */
} part_t;

#define P(T, k) ((T *)(intptr_t)a[k])

static void run_part(void *arg)
{
    part_t *part = arg;
    const int64_t *a = part->a;
    const int f64 = a[1] == 1;
    ptrdiff_t lo = part->lo, n = part->hi - part->lo;
    feclearexcept(FE_DIVBYZERO | FE_OVERFLOW | FE_INVALID);
    if (a[0] == 0 && !f64)
        xpmlp_step_f32((int)a[3], lo, part->hi, a[4], P(float, 5), P(float, 6), P(float, 7),
                       P(float, 8), P(const float, 9), P(const float, 10), P(const float, 11),
                       P(double, 14));
    else if (a[0] == 0)
        xpmlp_step_f64((int)a[3], lo, part->hi, a[4], P(double, 5), P(double, 6),
                       P(double, 7), P(double, 8), P(const double, 9), P(const double, 10),
                       P(const double, 11), P(double, 14));
    else if (a[0] == 1 && !f64)
        xpmlp_delta_f32((int)a[3], n, P(float, 4) + lo, P(const float, 5) + lo);
    else if (a[0] == 1)
        xpmlp_delta_f64((int)a[3], n, P(double, 4) + lo, P(const double, 5) + lo);
    else if (a[0] == 2) {
        npy_intp size = f64 ? sizeof(double) : sizeof(float);
        xpmlp_loop(P(void, 4), P(void, 5), n, P(char, 3) + lo * size, P(char, 6), size);
    } else
        xpmlp_gather(lo, part->hi, P(char, 3), a[4], P(const char, 5), a[6], a[7],
                     P(const npy_intp, 8));
    part->raised = fetestexcept(FE_DIVBYZERO | FE_OVERFLOW | FE_INVALID);
}

/* In how many parts the op runs: one per thread the BLAS may use now, each of at least
 * the op's least part */
static int count_parts(const int64_t *a)
{
    ptrdiff_t n = a[2], min_part = a[MIN_PART];
    if (!pool_run || min_part <= 0 || n < 2 * min_part) return 1;
    int threads = pool_size();
    ptrdiff_t most = n / min_part;
    int k = threads < most ? threads : (int)most;
    return k < 1 ? 1 : k > MAX_PARTS ? MAX_PARTS : k;
}

/* Runs the op, in parts on the BLAS's threads where it is large enough (element-wise parts
 * a multiple of 64 bytes long, whole vectors); gives its floating-point errors. */
static int run_op(const int64_t *a)
{
    part_t parts[MAX_PARTS];
    ptrdiff_t n = a[2];
    ptrdiff_t unit = a[0] == 0 || a[0] == 3 ? 1 : 64 / (a[1] ? sizeof(double) : sizeof(float));
    int k = count_parts(a);
    ptrdiff_t each = (n / k + unit - 1) / unit * unit;
    for (int i = 0; i < k; i++) {
        parts[i].a = a;
        parts[i].lo = i * each < n ? i * each : n;
        parts[i].hi = i == k - 1 ? n : ((i + 1) * each < n ? (i + 1) * each : n);
        parts[i].raised = 0;
    }
    if (k == 1)
        run_part(&parts[0]);
    else
        pool_run(k, (void *)run_part, parts, (int)sizeof(part_t));
    int raised = 0;
    for (int i = 0; i < k; i++) raised |= parts[i].raised;
    if (a[0] == 0 && a[9]) { /* the step's L2 penalty, its rows added in order */
        const double *sq = (const double *)(intptr_t)a[14];
        double sum = 0;
        for (ptrdiff_t r = 0; r < n; r++) sum += sq[r];
        *(double *)(intptr_t)a[12] += *(const double *)(intptr_t)a[13] * sum;
    }
    return raised;
}

#undef P

/* Called with the floating-point errors a kernel raised (1 divide by zero, 2 overflow,
 * 4 invalid), so that they are reported as NumPy's ufuncs report theirs (np.errstate). */
static PyObject *on_error = NULL;

static PyObject *set_error_handler(PyObject *self, PyObject *fn)
{
    Py_XSETREF(on_error, Py_NewRef(fn));
    Py_RETURN_NONE;
}

static PyObject *set_pool(PyObject *self, PyObject *args)
{
    Py_ssize_t run_fn, size_fn;
    if (!PyArg_ParseTuple(args, "nn", &run_fn, &size_fn)) return NULL;
    if ((run_fn == 0) != (size_fn == 0)) {
        PyErr_SetString(PyExc_ValueError, "set_pool() takes both functions, or neither");
        return NULL;
    }
    pool_run = (int (*)(int, void *, void *, int))(intptr_t)run_fn;
    pool_size = (int (*)(void))(intptr_t)size_fn;
    Py_RETURN_NONE;
}

/* (functions[i], data[i]) of the ufunc's loop whose every operand has type number `type`;
 * None where it has none */
static PyObject *loop(PyObject *self, PyObject *args)
{
    PyObject *obj;
    int type;
    if (!PyArg_ParseTuple(args, "Oi", &obj, &type)) return NULL;
    if (strcmp(Py_TYPE(obj)->tp_name, "numpy.ufunc") != 0) {
        PyErr_SetString(PyExc_TypeError, "loop() takes a NumPy ufunc");
        return NULL;
    }
    PyUFuncObject *uf = (PyUFuncObject *)obj;
    for (int i = 0; uf->functions && uf->types && i < uf->ntypes; i++) {
        int all = uf->functions[i] != NULL;
        for (int k = 0; all && k < uf->nargs; k++) all = uf->types[i * uf->nargs + k] == type;
        if (all)
            return Py_BuildValue("(nn)", (Py_ssize_t)(intptr_t)uf->functions[i],
                                 (Py_ssize_t)(intptr_t)(uf->data ? uf->data[i] : NULL));
    }
    Py_RETURN_NONE;
}

/* run()'s and parts()'s words, checked, into a */
static int read_words(PyObject *arg, int64_t *a)
{
    if (!PyBytes_Check(arg) || PyBytes_GET_SIZE(arg) != (Py_ssize_t)(WORDS * sizeof(int64_t))) {
        PyErr_SetString(PyExc_TypeError, "run() takes the bytes of 16 int64 words");
        return -1;
    }
    memcpy(a, PyBytes_AS_STRING(arg), WORDS * sizeof(int64_t));
    if (a[0] < 0 || a[0] > 3 || a[1] < 0 || a[1] > 1) {
        PyErr_SetString(PyExc_ValueError, "run(): no such kernel or type");
        return -1;
    }
    return 0;
}

static PyObject *parts(PyObject *self, PyObject *arg)
{
    int64_t a[WORDS];
    if (read_words(arg, a) < 0) return NULL;
    return PyLong_FromLong(count_parts(a));
}

static PyObject *run(PyObject *self, PyObject *arg)
{
    int64_t a[WORDS];
    if (read_words(arg, a) < 0) return NULL;
    int raised;
    Py_BEGIN_ALLOW_THREADS
    raised = run_op(a);
    Py_END_ALLOW_THREADS
    if (raised && on_error) {
        int flags = (raised & FE_DIVBYZERO ? 1 : 0) | (raised & FE_OVERFLOW ? 2 : 0) |
                    (raised & FE_INVALID ? 4 : 0);
        return PyObject_CallFunction(on_error, "i", flags);
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"run", run, METH_O, "Run one kernel on the arrays whose addresses args holds."},
    {"set_error_handler", set_error_handler, METH_O,
     "fn(flags), called with the floating-point errors a kernel raised."},
    {"set_pool", set_pool, METH_VARARGS,
     "set_pool(run, size): the addresses of gotoblas_pthread and openblas_get_num_threads "
     "of NumPy's BLAS (0, 0: none)."},
    {"parts", parts, METH_O, "In how many parts run(args) would run its op now."},
    {"loop", loop, METH_VARARGS,
     "loop(ufunc, type): the (function, data) addresses of its loop on that type number."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef kernels_module = {
    PyModuleDef_HEAD_INIT, "_kernels",
    "Fused element-wise kernels of the NumPy fast path (see _fast.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__kernels(void)
{
    PyObject *m = PyModule_Create(&kernels_module);
    if (m && PyModule_AddIntConstant(m, "VERSION", KERNELS_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
