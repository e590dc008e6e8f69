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
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <fenv.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(_MSC_VER)
#define restrict __restrict
#endif

/* the layout of run()'s words; _fast.py uses a build only of the layout it packs */
#define KERNELS_VERSION 3

/* The optimizer's step on one layer, rows x cols, C-contiguous: first the L2 term
 * G[:, 1:] += c W[:, 1:] (when c is not NULL; the bias column is left as it is), then the
 * rule on W, G and its state A, B. With the L2 term it also adds the penalty of the weights
 * it starts from, scale * sum_j>0 W[:, j]**2 summed in double, to *penalty.
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
    static void NAME(int rule, ptrdiff_t rows, ptrdiff_t cols, T *restrict w, T *restrict g, \
                     T *restrict a, T *restrict b, const T *c, const T *neg_lr, const T *hp,  \
                     double *penalty, const double *scale)                                   \
    {                                                                                        \
        const T lr = *neg_lr;                                                                \
        double sq[8] = {0, 0, 0, 0, 0, 0, 0, 0}; /* lanes: a sum the compiler vectorizes */  \
        for (ptrdiff_t r = 0; r < rows; r++) {                                               \
            T *restrict wr = w + r * cols, *restrict gr = g + r * cols;                      \
            T *restrict ar = a ? a + r * cols : NULL, *restrict br = b ? b + r * cols : NULL; \
            if (c) {                                                                         \
                const T cc = *c;                                                             \
                for (ptrdiff_t j = 1; j < cols; j++) gr[j] = gr[j] + wr[j] * cc;             \
                ptrdiff_t j = 1;                                                             \
                for (; j + 8 <= cols; j += 8)                                                \
                    for (int k = 0; k < 8; k++) sq[k] += (double)wr[j + k] * wr[j + k];      \
                for (; j < cols; j++) sq[0] += (double)wr[j] * wr[j];                        \
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
        if (c) {                                                                             \
            double sum = 0;                                                                  \
            for (int k = 0; k < 8; k++) sum += sq[k];                                        \
            *penalty += *scale * sum;                                                        \
        }                                                                                    \
    }

STEP(xpmlp_step_f32, float, sqrtf)
STEP(xpmlp_step_f64, double, sqrt)

/* delta = h'(a) * P over Z = h(a) in place, n elements:
 *   0 identity  Z <- P
 *   1 tanh      Z <- (1 - Z Z) P
 *   2 logistic  Z <- (1 - Z) (P Z)
 *   3 relu      Z <- [Z > 0] P */
#define DELTA(NAME, T)                                                                       \
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
            for (ptrdiff_t i = 0; i < n; i++) z[i] = (z[i] > 0 ? (T)1 : (T)0) * p[i];        \
        }                                                                                    \
    }

DELTA(xpmlp_delta_f32, float)
DELTA(xpmlp_delta_f64, double)

/* args: op (0 step, 1 delta), type (0 float32, 1 float64), then
 *   step:  rule, rows, cols, W, G, A, B, c, neg_lr, hp, penalty, scale
 *          (addresses; 0 for NULL)
 *   delta: kind, n, Z, P */
#define WORDS 14

/* Called with the floating-point errors a kernel raised (1 divide by zero, 2 overflow,
 * 4 invalid), so that they are reported as NumPy's ufuncs report theirs (np.errstate). */
static PyObject *on_error = NULL;

static PyObject *set_error_handler(PyObject *self, PyObject *fn)
{
    Py_XSETREF(on_error, Py_NewRef(fn));
    Py_RETURN_NONE;
}

static PyObject *run(PyObject *self, PyObject *arg)
{
    int64_t a[WORDS];
    if (!PyBytes_Check(arg) || PyBytes_GET_SIZE(arg) != (Py_ssize_t)sizeof(a)) {
        PyErr_SetString(PyExc_TypeError, "run() takes the bytes of 14 int64 words");
        return NULL;
    }
    memcpy(a, PyBytes_AS_STRING(arg), sizeof(a));
    if (a[0] < 0 || a[0] > 1 || a[1] < 0 || a[1] > 1) {
        PyErr_SetString(PyExc_ValueError, "run(): no such kernel or type");
        return NULL;
    }
#define P(T, k) ((T *)(intptr_t)a[k])
    int raised;
    Py_BEGIN_ALLOW_THREADS
    feclearexcept(FE_DIVBYZERO | FE_OVERFLOW | FE_INVALID);
    if (a[0] == 0 && a[1] == 0)
        xpmlp_step_f32((int)a[2], a[3], a[4], P(float, 5), P(float, 6), P(float, 7),
                       P(float, 8), P(const float, 9), P(const float, 10), P(const float, 11),
                       P(double, 12), P(const double, 13));
    else if (a[0] == 0)
        xpmlp_step_f64((int)a[2], a[3], a[4], P(double, 5), P(double, 6), P(double, 7),
                       P(double, 8), P(const double, 9), P(const double, 10),
                       P(const double, 11), P(double, 12), P(const double, 13));
    else if (a[1] == 0)
        xpmlp_delta_f32((int)a[2], a[3], P(float, 4), P(const float, 5));
    else
        xpmlp_delta_f64((int)a[2], a[3], P(double, 4), P(const double, 5));
    raised = fetestexcept(FE_DIVBYZERO | FE_OVERFLOW | FE_INVALID);
    Py_END_ALLOW_THREADS
#undef P
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
