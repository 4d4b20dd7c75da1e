/*
 * _avq.c -- the CPython extension behind the `avq` Python package.
 *
 * A thin layer over include/avq.h written against the CPython and NumPy C
 * APIs: numpy arrays in and out, the GIL released around every call into
 * the library that can take time, and every avq status turned into the
 * Python exception a user expects (see raise_status).  The pure-Python parts
 * (the ScaNN-style builder, recall, the progress bar helper) live in
 * __init__.py.
 *
 * Lifetime of an index under threads.  Searches run with the GIL released,
 * so another thread may call close() while a search is in flight.  Every
 * call that uses the C index first "acquires" it (index_acquire: fails with
 * ValueError once closed, else counts one more user) and "releases" it when
 * done (index_release).  close() marks the object closed; the C index is
 * freed at once when nobody uses it, otherwise by the last running call
 * when it releases.  The counter and the flag are only touched with the GIL
 * held, which is what makes them safe without a lock (the module does not
 * declare itself free-threading safe, so CPython keeps the GIL on for it).
 *
 * Filters.  Ids and tags given to a search become a C avq_filter for that
 * call; avq.Filter holds one made once.  A Python keep(id) callback is
 * wrapped in a C filter per call (keep_trampoline): it is called with the
 * GIL released, possibly from the library's worker threads, so it takes the
 * GIL with PyGILState_Ensure; an exception it raises is kept in the call's
 * keep_call, the callback returns -1 (the library then stops the search),
 * and the search re-raises it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include "avq.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------------- */
/* Exceptions                                                                */
/* ------------------------------------------------------------------------- */

/* A new 2-tuple (a, b) that steals both references (NULLing the caller's
 * pointers), or NULL with both left to the caller on failure. */
static PyObject *steal_pair(PyObject **a, PyObject **b) {
    PyObject *t = PyTuple_New(2);
    if (t) {
        PyTuple_SET_ITEM(t, 0, *a);
        PyTuple_SET_ITEM(t, 1, *b);
        *a = *b = NULL;
    }
    return t;
}

static PyObject *AvqError;        /* avq.Error(Exception)           */
static PyObject *AvqFormatError;  /* avq.FormatError(avq.Error)     */

/* errno values whose strerror() text the library puts in its IO messages;
 * finding one in the message lets OSError pick its subclass
 * (FileNotFoundError, PermissionError, IsADirectoryError, ...). */
static const int known_errnos[] = {ENOENT, EACCES, EPERM,  EISDIR, ENOTDIR, ENOSPC,
                                   EROFS,  EEXIST, ENAMETOOLONG, ELOOP, EMFILE,
                                   ENFILE, EDQUOT, EFBIG,  EIO,     EBUSY, ETXTBSY};

static int errno_from_message(const char *msg, int saved_errno) {
    if (saved_errno > 0 && strstr(msg, strerror(saved_errno))) return saved_errno;
    for (size_t i = 0; i < sizeof known_errnos / sizeof known_errnos[0]; i++)
        if (strstr(msg, strerror(known_errnos[i]))) return known_errnos[i];
    return 0;
}

/* Raise the Python exception for a failed avq call and return NULL.
 * `path` (may be NULL) names the file of an IO error; `saved_errno` is errno
 * right after the call.  The message is avq_last_error() of this thread: a
 * failure inside one of the library's worker threads is copied to the
 * calling thread by avq_parallel_for (src/threads.c), so it is never stale.
 * (An earlier version compared it with a snapshot taken before the call,
 * which hid the message of the second of two identical failures.)  An
 * exception already set (by a progress callback that cancelled the call,
 * or by Ctrl-C) wins over the avq status. */
static PyObject *raise_status(int st, const char *path, int saved_errno) {
    if (PyErr_Occurred()) return NULL;
    const char *msg = avq_last_error();
    if (!msg || !msg[0]) msg = avq_strerror(st);
    switch (st) {
    case AVQ_ERR_INVALID: PyErr_SetString(PyExc_ValueError, msg); break;
    case AVQ_ERR_NOMEM: PyErr_SetString(PyExc_MemoryError, msg); break;
    case AVQ_ERR_FORMAT: PyErr_SetString(AvqFormatError, msg); break;
    case AVQ_ERR_IO: {
        int e = errno_from_message(msg, saved_errno);
        PyObject *exc;
        if (e) {
            /* OSError(errno, text, filename): str() gives
             * "[Errno 2] No such file or directory: 'x.avq'".  The library's
             * message starts with the path; drop it since filename says it. */
            const char *text = msg;
            size_t plen = path ? strlen(path) : 0;
            if (path && strncmp(msg, path, plen) == 0 && strncmp(msg + plen, ": ", 2) == 0)
                text = msg + plen + 2;
            PyObject *fname = path ? PyUnicode_DecodeFSDefault(path) : NULL;
            if (fname) exc = PyObject_CallFunction(PyExc_OSError, "isO", e, text, fname);
            else exc = path ? NULL : PyObject_CallFunction(PyExc_OSError, "is", e, text);
            Py_XDECREF(fname);
        } else {
            exc = PyObject_CallFunction(PyExc_OSError, "s", msg);
        }
        if (exc) {
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
            Py_DECREF(exc);
        }
        break;
    }
    default: /* CANCELLED without a Python exception, UNSUPPORTED, INTERNAL */
        PyErr_Format(AvqError, "%s (%s)", msg, avq_strerror(st));
        break;
    }
    return NULL;
}


/* ------------------------------------------------------------------------- */
/* Argument helpers                                                          */
/* ------------------------------------------------------------------------- */

/* An array of native-endian float32, C-contiguous and aligned: `obj` itself
 * (new reference) when it already is one, else a converted copy.  Integer
 * and float dtypes convert; bool, complex, strings, objects, dates raise
 * TypeError (never a silent cast that drops information). */

/* A new array from a non-array object (lists, scalars, buffers); a ValueError
 * (ragged nested sequences) keeps its type and gets `what` as context. */
static PyArrayObject *array_of_sequence(PyObject *obj, const char *what) {
    PyArrayObject *arr = (PyArrayObject *)PyArray_FromAny(obj, NULL, 0, 0, 0, NULL);
    if (!arr && PyErr_ExceptionMatches(PyExc_ValueError)) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_Format(PyExc_ValueError, "%s: cannot make an array of it (%S)", what,
                     value ? value : Py_None);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
    }
    return arr;
}

static PyArrayObject *as_float32(PyObject *obj, const char *what) {
    PyArrayObject *arr;
    if (PyArray_Check(obj)) {
        arr = (PyArrayObject *)obj;
        if (PyArray_TYPE(arr) == NPY_FLOAT32 && PyArray_ISCARRAY_RO(arr) &&
            PyArray_ISNOTSWAPPED(arr)) {
            Py_INCREF(arr);
            return arr;
        }
        Py_INCREF(arr);
    } else {
        arr = array_of_sequence(obj, what);
        if (!arr) return NULL;
    }
    char kind = PyArray_DESCR(arr)->kind;
    if (kind != 'f' && kind != 'i' && kind != 'u') {
        PyErr_Format(PyExc_TypeError,
                     "%s must be an array of real numbers (float or int), got dtype %S", what,
                     (PyObject *)PyArray_DESCR(arr));
        Py_DECREF(arr);
        return NULL;
    }
    PyArrayObject *out = (PyArrayObject *)PyArray_FromArray(
        arr, PyArray_DescrFromType(NPY_FLOAT32), NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    Py_DECREF(arr);
    return out;
}

/* A non-negative size from a Python int (or anything with __index__). */
static int get_size(PyObject *o, const char *name, size_t *out) {
    if (PyBool_Check(o) || !PyIndex_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, got %.100s", name, Py_TYPE(o)->tp_name);
        return -1;
    }
    Py_ssize_t v = PyNumber_AsSsize_t(o, PyExc_OverflowError);
    if (v == -1 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "%s is out of range", name);
        }
        return -1;
    }
    if (v < 0) {
        PyErr_Format(PyExc_ValueError, "%s must be >= 0, got %zd", name, v);
        return -1;
    }
    *out = (size_t)v;
    return 0;
}

/* A positive size, or 0 for None (the library's "use the default"). */
static int get_positive_or_none(PyObject *o, const char *name, size_t *out) {
    if (o == NULL || o == Py_None) {
        *out = 0;
        return 0;
    }
    if (get_size(o, name, out) < 0) return -1;
    if (*out == 0) {
        PyErr_Format(PyExc_ValueError, "%s must be >= 1 (or None for the default), got 0", name);
        return -1;
    }
    return 0;
}

static int get_int_range(PyObject *o, const char *name, long lo, long hi, int *out) {
    if (PyIndex_Check(o) && !PyBool_Check(o)) {
        Py_ssize_t s = PyNumber_AsSsize_t(o, NULL);
        if (s == -1 && PyErr_Occurred()) return -1;
        if (s < lo || s > hi) {
            PyErr_Format(PyExc_ValueError, "%s must be in [%ld, %ld], got %zd", name, lo, hi, s);
            return -1;
        }
        *out = (int)s;
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "%s must be an int, got %.100s", name, Py_TYPE(o)->tp_name);
    return -1;
}

static int get_float(PyObject *o, const char *name, float *out) {
    if (PyBool_Check(o) || !(PyFloat_Check(o) || PyLong_Check(o) || PyIndex_Check(o) ||
                             PyNumber_Check(o))) {
        PyErr_Format(PyExc_TypeError, "%s must be a number, got %.100s", name,
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    double d = PyFloat_AsDouble(o);
    if (d == -1.0 && PyErr_Occurred()) return -1;
    *out = (float)d;
    return 0;
}

/* Worker threads: None -> 0 (one per CPU), else an int >= 0. */
static int get_threads(PyObject *o, int *out) {
    if (o == NULL || o == Py_None) {
        *out = 0;
        return 0;
    }
    return get_int_range(o, "threads", 0, 256, out);
}

static int get_metric(PyObject *o, avq_metric *out) {
    if (!PyUnicode_Check(o)) {
        PyErr_Format(PyExc_TypeError, "metric must be a str, got %.100s", Py_TYPE(o)->tp_name);
        return -1;
    }
    const char *name = PyUnicode_AsUTF8(o);
    if (!name) return -1;
    if (avq_metric_parse(name, out) != AVQ_OK) {
        PyErr_SetString(PyExc_ValueError, avq_last_error());
        return -1;
    }
    return 0;
}

/* path: str, bytes or os.PathLike -> bytes (new reference in *out). */
static int get_path(PyObject *o, PyObject **out) {
    *out = NULL;
    if (!PyUnicode_FSConverter(o, out)) return -1;
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Fast keyword parsing for the hot methods (METH_FASTCALL | METH_KEYWORDS)   */
/* ------------------------------------------------------------------------- */

/* Fill values[0..nnames) from positional args and keywords; missing ones are
 * left NULL.  names[] are interned at module init, so keyword lookups are
 * usually a pointer comparison. */
static int parse_fast(const char *fname, PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames, PyObject *const *names, Py_ssize_t nnames,
                      Py_ssize_t npositional, Py_ssize_t nrequired, PyObject **values) {
    for (Py_ssize_t i = 0; i < nnames; i++) values[i] = NULL;
    if (nargs > npositional) {
        PyErr_Format(PyExc_TypeError,
                     "%s() takes at most %zd positional arguments (%zd given)", fname,
                     npositional, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) values[i] = args[i];
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t j = 0; j < nkw; j++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, j);
        Py_ssize_t slot = -1;
        for (Py_ssize_t i = 0; i < nnames && slot < 0; i++)
            if (key == names[i]) slot = i;
        for (Py_ssize_t i = 0; i < nnames && slot < 0; i++) {
            int eq = PyUnicode_Compare(key, names[i]);
            if (eq == -1 && PyErr_Occurred()) return -1;
            if (eq == 0) slot = i;
        }
        if (slot < 0) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname,
                         key);
            return -1;
        }
        if (values[slot]) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%U'", fname,
                         key);
            return -1;
        }
        values[slot] = args[nargs + j];
    }
    for (Py_ssize_t i = 0; i < nrequired; i++)
        if (!values[i]) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%U'", fname,
                         names[i]);
            return -1;
        }
    return 0;
}

/* search(q, k, leaves_to_search, pre_reorder, *, <filter keywords>) and
 * search_batched(queries, k, leaves_to_search, pre_reorder, threads, *,
 * <filter keywords>, filters): the filter keywords follow the positional
 * ones (at F_BASE_SEARCH / F_BASE_BATCHED), in the order of the F_ enum. */
enum { S_Q, S_K, S_LEAVES, S_PRE, S_THREADS, S_COUNT };
enum { F_FILTER, F_DENY, F_TAGS_ANY, F_TAGS_ALL, F_MIN_SCANNED, F_EXACT_BELOW, F_COUNT };
enum {
    F_BASE_SEARCH = S_THREADS,                       /* search has no threads */
    SEARCH_NAMES = F_BASE_SEARCH + F_COUNT,
    F_BASE_BATCHED = S_COUNT,
    B_FILTERS = F_BASE_BATCHED + F_COUNT,            /* search_batched(filters=) */
    BATCHED_NAMES = B_FILTERS + 1
};
static PyObject *search_names[SEARCH_NAMES];
static PyObject *batched_names[BATCHED_NAMES];

/* The largest k avq_index_search accepts (src/search.c) and the largest
 * k > n avq_exact_search pads to (src/exact.c).  Checked here as well,
 * because the (nq, k) result arrays are allocated before the library sees
 * k: k=10**9 must be a ValueError, not a 12 GB allocation per query. */
enum { MAX_SEARCH_K = 1 << 20 };

static int check_search_k(size_t k) {
    if (k <= MAX_SEARCH_K) return 0;
    PyErr_Format(PyExc_ValueError, "k = %zu is unreasonably large (max %d)", k, MAX_SEARCH_K);
    return -1;
}

/* k: a positive int. */
static int get_k(PyObject *o, size_t *out) {
    if (o == NULL) {
        *out = 10;
        return 0;
    }
    if (PyLong_CheckExact(o)) {
        Py_ssize_t v = PyLong_AsSsize_t(o);
        if (v == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            PyErr_SetString(PyExc_ValueError, "k is out of range");
            return -1;
        }
        if (v < 1) {
            PyErr_Format(PyExc_ValueError, "k must be >= 1, got %zd", v);
            return -1;
        }
        *out = (size_t)v;
        return 0;
    }
    if (get_size(o, "k", out) < 0) return -1;
    if (*out < 1) {
        PyErr_SetString(PyExc_ValueError, "k must be >= 1, got 0");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Progress callback: Ctrl-C and the user's callback during long calls      */
/* ------------------------------------------------------------------------- */

typedef struct {
    PyThreadState *ts;   /* saved when the GIL was released for the call */
    PyObject *callback;  /* the user's callable, or NULL                  */
    int cancelled;
    double last_time;
    char last_stage[64];
} progress_ctx;

static double monotonic_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Called by the library from the thread that released the GIL.  At most
 * ~20 times a second (plus at every change of stage and at every stage's
 * end) it takes the GIL back, runs pending signal handlers (Ctrl-C raises
 * KeyboardInterrupt there) and the user's callback(stage, done, total).  An
 * exception from either cancels the operation; it is re-raised when the
 * call returns. */
static int progress_trampoline(void *user, const char *stage, size_t done, size_t total) {
    progress_ctx *c = user;
    if (c->cancelled) return 1;
    double now = monotonic_seconds();
    int new_stage = strncmp(stage, c->last_stage, sizeof c->last_stage - 1) != 0;
    if (!new_stage && done < total && now - c->last_time < 0.05) return 0;
    c->last_time = now;
    snprintf(c->last_stage, sizeof c->last_stage, "%s", stage);
    PyEval_RestoreThread(c->ts);
    int cancel = 0;
    if (PyErr_CheckSignals() < 0) {
        cancel = 1;
    } else if (c->callback) {
        PyObject *r = PyObject_CallFunction(c->callback, "snn", stage, (Py_ssize_t)done,
                                            (Py_ssize_t)total);
        if (r) Py_DECREF(r);
        else cancel = 1;
    }
    c->ts = PyEval_SaveThread();
    c->cancelled = cancel;
    return cancel;
}

static int check_callback(PyObject *progress) {
    if (progress && progress != Py_None && !PyCallable_Check(progress)) {
        PyErr_Format(PyExc_TypeError, "progress must be callable(stage, done, total) or None, got %.100s",
                     Py_TYPE(progress)->tp_name);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------- */
/* The Index type                                                            */
/* ------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    avq_index *index;     /* NULL once freed                                */
    int closed;           /* close() was called: refuse new calls           */
    Py_ssize_t users;     /* calls running on `index` with the GIL released */
    int mapped;           /* loaded with mmap=True                          */
    PyObject *weakrefs;
} IndexObject;

static PyTypeObject IndexType;

/* A trained quantizer.  Immutable, so it needs no in-use counting.  Made by
 * Quantizer.train / Quantizer.load (`owned`, freed with the object), or by
 * Index.quantizer: the library lends an index's quantizer only for as long
 * as that index lives, so the object then owns an empty index created from
 * it (`holder`), which keeps a reference of its own. */
typedef struct {
    PyObject_HEAD
    avq_quantizer *owned;
    avq_index *holder;
    const avq_quantizer *q;
} QuantizerObject;

static PyTypeObject QuantizerType;

static avq_index *index_acquire(IndexObject *self) {
    if (self->closed || !self->index) {
        PyErr_SetString(PyExc_ValueError, "operation on a closed avq.Index");
        return NULL;
    }
    self->users++;
    return self->index;
}

static void free_index_nogil(avq_index *ix) {
    Py_BEGIN_ALLOW_THREADS
    avq_index_free(ix);
    Py_END_ALLOW_THREADS
}

static void index_release(IndexObject *self) {
    if (--self->users == 0 && self->closed && self->index) {
        avq_index *ix = self->index;
        self->index = NULL;
        free_index_nogil(ix);
    }
}

static PyObject *index_wrap(avq_index *ix, int mapped) {
    IndexObject *self = PyObject_New(IndexObject, &IndexType);
    if (!self) {
        avq_index_free(ix);
        return NULL;
    }
    self->index = ix;
    self->closed = 0;
    self->users = 0;
    self->mapped = mapped;
    self->weakrefs = NULL;
    return (PyObject *)self;
}

static void Index_dealloc(IndexObject *self) {
    if (self->weakrefs) PyObject_ClearWeakRefs((PyObject *)self);
    /* users is 0 here: every running call holds a reference to self */
    if (self->index) {
        avq_index *ix = self->index;
        self->index = NULL;
        free_index_nogil(ix);
    }
    PyObject_Free(self);
}

/* --- ids ----------------------------------------------------------------- */

/* ids as a C-contiguous int64 array (new reference), 1-D -- or 0-d for a
 * single id (*scalar set).  Any integer dtype or a list of Python ints;
 * floats, bools and anything else raise TypeError (an id is never rounded),
 * uint64 values above 2**63 - 1 ValueError.  An empty list (numpy makes it
 * float64) is accepted as no ids. */
static PyArrayObject *as_ids(PyObject *obj, const char *what, int *scalar) {
    *scalar = 0;
    PyArrayObject *arr;
    if (obj == Py_None) {
        PyErr_Format(PyExc_TypeError, "%s must be integers, got None", what);
        return NULL;
    }
    if (PyArray_Check(obj)) {
        arr = (PyArrayObject *)obj;
        Py_INCREF(arr);
    } else {
        arr = array_of_sequence(obj, what);
        if (!arr) return NULL;
    }
    char kind = PyArray_DESCR(arr)->kind;
    int nd = PyArray_NDIM(arr);
    int empty_list = !PyArray_Check(obj) && nd == 1 && PyArray_SIZE(arr) == 0;
    if (kind != 'i' && kind != 'u' && !empty_list) {
        PyErr_Format(PyExc_TypeError,
                     "%s must be integers (an int, or a 1-D array-like of ints in the int64 "
                     "range), got dtype %S",
                     what, (PyObject *)PyArray_DESCR(arr));
        Py_DECREF(arr);
        return NULL;
    }
    if (nd > 1) {
        PyErr_Format(PyExc_ValueError, "%s must be 1-D, got %d dimensions", what, nd);
        Py_DECREF(arr);
        return NULL;
    }
    *scalar = nd == 0;
    int wide_unsigned = kind == 'u' && PyArray_ITEMSIZE(arr) >= 8;
    PyArrayObject *out = (PyArrayObject *)PyArray_FromArray(
        arr, PyArray_DescrFromType(NPY_INT64), NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    Py_DECREF(arr);
    if (!out) return NULL;
    if (wide_unsigned) {
        const int64_t *v = PyArray_DATA(out);
        for (npy_intp i = 0; i < PyArray_SIZE(out); i++)
            if (v[i] < 0) {
                PyErr_Format(PyExc_ValueError, "%s: %llu is out of range (ids are int64)", what,
                             (unsigned long long)v[i]);
                Py_DECREF(out);
                return NULL;
            }
    }
    return out;
}

/* --- tags and filters: conversions, the Filter type ---------------------- */

/* One tag from a Python int (or anything with __index__): 0 .. 2**32-1.
 * `what` and `row` (SIZE_MAX = none) name it in the messages. */
static int tag_of_object(PyObject *o, const char *what, size_t row, uint32_t *out) {
    if (PyBool_Check(o) || !PyIndex_Check(o)) {
        if (row == SIZE_MAX)
            PyErr_Format(PyExc_TypeError, "%s: tags must be ints, got %.100s", what,
                         Py_TYPE(o)->tp_name);
        else
            PyErr_Format(PyExc_TypeError, "%s: row %zu: tags must be ints, got %.100s", what, row,
                         Py_TYPE(o)->tp_name);
        return -1;
    }
    PyObject *as_int = PyNumber_Index(o);
    if (!as_int) return -1;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(as_int, &overflow);
    if (v == -1 && !overflow && PyErr_Occurred()) {
        Py_DECREF(as_int);
        return -1;
    }
    if (overflow || v < 0 || (unsigned long long)v > UINT32_MAX) {
        if (row == SIZE_MAX)
            PyErr_Format(PyExc_ValueError,
                         "%s: tag %S is out of range (tags are integers in [0, 2**32))", what,
                         as_int);
        else
            PyErr_Format(PyExc_ValueError,
                         "%s: row %zu: tag %S is out of range (tags are integers in [0, 2**32))",
                         what, row, as_int);
        Py_DECREF(as_int);
        return -1;
    }
    Py_DECREF(as_int);
    *out = (uint32_t)v;
    return 0;
}

/* A growable array of tags (PyMem). */
typedef struct {
    uint32_t *v;
    size_t n, cap;
} tag_buf;

static int tag_buf_reserve(tag_buf *b, size_t more) {
    if (more <= b->cap - b->n) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->n < more) {
        if (cap > (SIZE_MAX / sizeof *b->v) / 2) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    uint32_t *v = PyMem_Realloc(b->v, cap * sizeof *v);
    if (!v) {
        PyErr_NoMemory();
        return -1;
    }
    b->v = v;
    b->cap = cap;
    return 0;
}

/* Append the tags of `obj` -- a 1-D integer ndarray, or a list / tuple /
 * other sequence of ints -- to *b.  row as for tag_of_object.  (An object
 * ndarray, e.g. of ints beyond 64 bits, is taken item by item.) */
static int tag_buf_append(tag_buf *b, PyObject *obj, const char *what, size_t row) {
    if (PyArray_Check(obj) && PyArray_DESCR((PyArrayObject *)obj)->kind != 'O') {
        PyArrayObject *a = (PyArrayObject *)obj;
        char kind = PyArray_DESCR(a)->kind;
        if (kind != 'i' && kind != 'u') {
            if (row == SIZE_MAX)
                PyErr_Format(PyExc_TypeError, "%s: tags must be integers, got dtype %S", what,
                             (PyObject *)PyArray_DESCR(a));
            else
                PyErr_Format(PyExc_TypeError, "%s: row %zu: tags must be integers, got dtype %S",
                             what, row, (PyObject *)PyArray_DESCR(a));
            return -1;
        }
        if (PyArray_NDIM(a) != 1) {
            PyErr_Format(PyExc_ValueError, "%s: a list of tags must be 1-D, got %d dimensions",
                         what, PyArray_NDIM(a));
            return -1;
        }
        {
            int is_signed = kind == 'i';
            PyArrayObject *c = (PyArrayObject *)PyArray_FromArray(
                a, PyArray_DescrFromType(is_signed ? NPY_INT64 : NPY_UINT64),
                NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
            if (!c) return -1;
            size_t n = (size_t)PyArray_SIZE(c);
            if (tag_buf_reserve(b, n) < 0) {
                Py_DECREF(c);
                return -1;
            }
            const int64_t *sv = PyArray_DATA(c);
            const uint64_t *uv = PyArray_DATA(c);
            for (size_t i = 0; i < n; i++) {
                int bad = is_signed ? (sv[i] < 0 || sv[i] > (int64_t)UINT32_MAX)
                                    : uv[i] > UINT32_MAX;
                if (bad) {
                    char num[32];
                    if (is_signed) snprintf(num, sizeof num, "%lld", (long long)sv[i]);
                    else snprintf(num, sizeof num, "%llu", (unsigned long long)uv[i]);
                    if (row == SIZE_MAX)
                        PyErr_Format(PyExc_ValueError,
                                     "%s: tag %s is out of range (tags are integers in [0, "
                                     "2**32))",
                                     what, num);
                    else
                        PyErr_Format(PyExc_ValueError,
                                     "%s: row %zu: tag %s is out of range (tags are integers in "
                                     "[0, 2**32))",
                                     what, row, num);
                    Py_DECREF(c);
                    return -1;
                }
                b->v[b->n++] = (uint32_t)(is_signed ? (uint64_t)sv[i] : uv[i]);
            }
            Py_DECREF(c);
            return 0;
        }
    }
    if (PyUnicode_Check(obj) || PyBytes_Check(obj) || PyByteArray_Check(obj) ||
        !PySequence_Check(obj)) {
        if (row == SIZE_MAX)
            PyErr_Format(PyExc_TypeError, "%s must be a sequence of ints, got %.100s", what,
                         Py_TYPE(obj)->tp_name);
        else
            PyErr_Format(PyExc_TypeError,
                         "%s[%zu] must be a sequence of ints (the tags of row %zu) or None, got "
                         "%.100s",
                         what, row, row, Py_TYPE(obj)->tp_name);
        return -1;
    }
    PyObject *seq = PySequence_Fast(obj, what);
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (tag_buf_reserve(b, (size_t)n) < 0) {
        Py_DECREF(seq);
        return -1;
    }
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (tag_of_object(items[i], what, row, &b->v[b->n]) < 0) {
            Py_DECREF(seq);
            return -1;
        }
        b->n++;
    }
    Py_DECREF(seq);
    return 0;
}

/* The tags of a tag filter (tags_any= / tags_all= / Filter.tags_*):
 * *out (PyMem, free with PyMem_Free) and *n.  The count limits are the
 * library's (its message says them). */
static int tags_of_object(PyObject *obj, const char *what, uint32_t **out, size_t *n) {
    tag_buf b = {NULL, 0, 0};
    if (PyArray_Check(obj) && PyArray_NDIM((PyArrayObject *)obj) == 0) {
        PyErr_Format(PyExc_TypeError, "%s must be a sequence of ints, got a 0-d array", what);
        return -1;
    }
    if (PyAnySet_Check(obj)) {
        PyObject *list = PySequence_List(obj);
        if (!list) return -1;
        int r = tag_buf_append(&b, list, what, SIZE_MAX);
        Py_DECREF(list);
        if (r < 0) {
            PyMem_Free(b.v);
            return -1;
        }
    } else if (tag_buf_append(&b, obj, what, SIZE_MAX) < 0) {
        PyMem_Free(b.v);
        return -1;
    }
    *out = b.v;
    *n = b.n;
    return 0;
}

/* The tags of n rows as the library's CSR pair (PyMem buffers). */
typedef struct {
    size_t *offsets; /* n + 1 entries */
    uint32_t *tags;
} tag_csr;

static void tag_csr_free(tag_csr *c) {
    PyMem_Free(c->offsets);
    PyMem_Free(c->tags);
    c->offsets = NULL;
    c->tags = NULL;
}

/* tags for n rows (what = the argument's name), in one of three forms:
 *   - a tuple (offsets, tags): CSR, offsets n + 1 non-decreasing ints from
 *     0 to len(tags);
 *   - a 2-D integer ndarray of shape (n, t): t tags per row;
 *   - a sequence of n items, each a sequence of ints, a 1-D integer ndarray
 *     or None (no tags).
 * The tag values are checked here; the per-row count limit by the library. */
static int tags_csr_of_object(PyObject *obj, size_t n, const char *what, tag_csr *out) {
    out->offsets = NULL;
    out->tags = NULL;
    if (n > (SIZE_MAX / sizeof(size_t)) - 1) {
        PyErr_NoMemory();
        return -1;
    }
    size_t *offsets = PyMem_Malloc((n + 1) * sizeof *offsets);
    if (!offsets) {
        PyErr_NoMemory();
        return -1;
    }
    tag_buf b = {NULL, 0, 0};
    offsets[0] = 0;
    if (PyTuple_Check(obj) && PyTuple_GET_SIZE(obj) == 2) {
        /* CSR */
        int scalar = 0;
        PyArrayObject *off = as_ids(PyTuple_GET_ITEM(obj, 0), "tag offsets", &scalar);
        if (!off) goto fail;
        if (scalar || (size_t)PyArray_SIZE(off) != n + 1) {
            PyErr_Format(PyExc_ValueError,
                         "%s: a tuple is read as a CSR pair (offsets, tags), and offsets must "
                         "have n + 1 = %zu entries, got %zd (give per-row tags as a list of "
                         "lists)",
                         what, n + 1, scalar ? (Py_ssize_t)0 : PyArray_SIZE(off));
            Py_DECREF(off);
            goto fail;
        }
        if (tag_buf_append(&b, PyTuple_GET_ITEM(obj, 1), what, SIZE_MAX) < 0) {
            Py_DECREF(off);
            goto fail;
        }
        const int64_t *o = PyArray_DATA(off);
        const char *bad = NULL;
        size_t at = 0;
        if (o[0] != 0) bad = "the first offset must be 0";
        for (size_t i = 1; i <= n && !bad; i++)
            if (o[i] < o[i - 1]) bad = "offsets must not decrease", at = i;
        if (!bad && (uint64_t)o[n] != (uint64_t)b.n)
            bad = "the last offset must be len(tags)", at = n;
        if (bad) {
            PyErr_Format(PyExc_ValueError,
                         "%s: malformed CSR pair: %s (offsets[%zu] = %lld, len(tags) = %zu)",
                         what, bad, at, (long long)o[at], b.n);
            Py_DECREF(off);
            goto fail;
        }
        for (size_t i = 0; i <= n; i++) offsets[i] = (size_t)o[i];
        Py_DECREF(off);
    } else if (PyArray_Check(obj) && PyArray_NDIM((PyArrayObject *)obj) == 2) {
        PyArrayObject *a = (PyArrayObject *)obj;
        if ((size_t)PyArray_DIM(a, 0) != n) {
            PyErr_Format(PyExc_ValueError, "%s has %zd rows for %zu vectors: give one row of tags "
                         "per vector",
                         what, PyArray_DIM(a, 0), n);
            goto fail;
        }
        PyObject *flat = PyArray_Ravel(a, NPY_CORDER);
        if (!flat) goto fail;
        int r = tag_buf_append(&b, flat, what, SIZE_MAX);
        Py_DECREF(flat);
        if (r < 0) goto fail;
        size_t t = (size_t)PyArray_DIM(a, 1);
        for (size_t i = 1; i <= n; i++) offsets[i] = i * t;
    } else {
        if (PyArray_Check(obj)) {
            PyArrayObject *a = (PyArrayObject *)obj;
            if (PyArray_NDIM(a) != 1 || PyArray_DESCR(a)->kind != 'O') {
                PyErr_Format(PyExc_TypeError,
                             "%s: an ndarray of tags must be 2-D (n, tags per row), got %d "
                             "dimension(s) of dtype %S (for one tag per row use shape (n, 1); "
                             "else give a list of lists or a CSR pair (offsets, tags))",
                             what, PyArray_NDIM(a), (PyObject *)PyArray_DESCR(a));
                goto fail;
            }
        }
        if (PyUnicode_Check(obj) || PyBytes_Check(obj) || !PySequence_Check(obj)) {
            PyErr_Format(PyExc_TypeError,
                         "%s must be a list of tag lists (one per row), a CSR pair "
                         "(offsets, tags) or a 2-D int array, got %.100s",
                         what, Py_TYPE(obj)->tp_name);
            goto fail;
        }
        PyObject *seq = PySequence_Fast(obj, what);
        if (!seq) goto fail;
        if ((size_t)PySequence_Fast_GET_SIZE(seq) != n) {
            PyErr_Format(PyExc_ValueError,
                         "%s has %zd rows for %zu vectors: give one list of tags per vector",
                         what, PySequence_Fast_GET_SIZE(seq), n);
            Py_DECREF(seq);
            goto fail;
        }
        PyObject **items = PySequence_Fast_ITEMS(seq);
        for (size_t i = 0; i < n; i++) {
            if (items[i] != Py_None && tag_buf_append(&b, items[i], what, i) < 0) {
                Py_DECREF(seq);
                goto fail;
            }
            offsets[i + 1] = b.n;
        }
        Py_DECREF(seq);
    }
    if (!b.v) { /* no tags at all: the library still wants a pointer */
        b.v = PyMem_Malloc(sizeof *b.v);
        if (!b.v) {
            PyErr_NoMemory();
            goto fail;
        }
    }
    out->offsets = offsets;
    out->tags = b.v;
    return 0;
fail:
    PyMem_Free(offsets);
    PyMem_Free(b.v);
    return -1;
}

/* ids of a filter: an array-like of ints, or a set / frozenset of them. */
static PyArrayObject *as_filter_ids(PyObject *obj, const char *what) {
    int scalar = 0;
    PyArrayObject *ids;
    if (PyAnySet_Check(obj)) {
        PyObject *list = PySequence_List(obj);
        if (!list) return NULL;
        ids = as_ids(list, what, &scalar);
        Py_DECREF(list);
    } else {
        ids = as_ids(obj, what, &scalar);
    }
    if (ids && scalar) {
        PyErr_Format(PyExc_TypeError,
                     "%s must be a sequence, set or 1-D array of ids, got a single int "
                     "(write [id] for one id)",
                     what);
        Py_DECREF(ids);
        return NULL;
    }
    return ids;
}

enum { FK_ALLOW, FK_DENY, FK_TAGS_ANY, FK_TAGS_ALL, FK_CALLBACK };
static const char *const filter_kind_names[] = {"allow_ids", "deny_ids", "tags_any", "tags_all",
                                                "callback"};

/* An id set made with the GIL released (building its hash takes time for
 * millions of ids). */
static int make_id_filter(int kind, PyArrayObject *ids, avq_filter **out) {
    const int64_t *v = PyArray_DATA(ids);
    size_t n = (size_t)PyArray_SIZE(ids);
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = kind == FK_ALLOW ? avq_filter_allow_ids(v, n, out) : avq_filter_deny_ids(v, n, out);
    Py_END_ALLOW_THREADS
    if (st != AVQ_OK) raise_status(st, NULL, 0);
    return st == AVQ_OK ? 0 : -1;
}

/* A tags_any / tags_all filter of the tags in `obj`; *count = how many were
 * given. */
static int make_tag_filter(int kind, PyObject *obj, const char *what, avq_filter **out,
                           size_t *count) {
    uint32_t *tags = NULL;
    size_t n = 0;
    if (tags_of_object(obj, what, &tags, &n) < 0) return -1;
    if (n == 0 || n > AVQ_MAX_FILTER_TAGS) {
        PyMem_Free(tags);
        PyErr_Format(PyExc_ValueError, "%s: a tag filter lists 1 to %d tags, got %zu", what,
                     AVQ_MAX_FILTER_TAGS, n);
        return -1;
    }
    int st = kind == FK_TAGS_ANY ? avq_filter_tags_any(tags, n, out)
                                 : avq_filter_tags_all(tags, n, out);
    PyMem_Free(tags);
    if (st != AVQ_OK) {
        raise_status(st, NULL, 0);
        return -1;
    }
    if (count) *count = n;
    return 0;
}

/* The Filter type: an avq_filter built once, reused by any number of
 * searches.  A callback filter keeps only the callable: each search makes
 * its own small C filter around it, so an exception raised inside reaches
 * the search that called it even when several threads search at once. */
typedef struct {
    PyObject_HEAD
    avq_filter *filter; /* NULL for a callback */
    PyObject *keep;     /* the callable of a callback filter */
    int kind;
    size_t count;       /* ids or tags given */
} FilterObject;

static PyTypeObject FilterType;

/* (garbage-collected: a keep() closure may refer back to its Filter) */
static int Filter_traverse(FilterObject *self, visitproc visit, void *arg) {
    Py_VISIT(self->keep);
    return 0;
}

static int Filter_clear(FilterObject *self) {
    Py_CLEAR(self->keep);
    return 0;
}

static void Filter_dealloc(FilterObject *self) {
    PyObject_GC_UnTrack(self);
    avq_filter_free(self->filter);
    Py_CLEAR(self->keep);
    PyObject_GC_Del(self);
}

static PyObject *filter_wrap(int kind, avq_filter *f, PyObject *keep, size_t count) {
    FilterObject *self = PyObject_GC_New(FilterObject, &FilterType);
    if (!self) {
        avq_filter_free(f);
        return NULL;
    }
    self->filter = f;
    self->keep = Py_XNewRef(keep);
    self->kind = kind;
    self->count = count;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

static PyObject *filter_of_ids(int kind, PyObject *arg) {
    PyArrayObject *ids = as_filter_ids(arg, "ids");
    if (!ids) return NULL;
    avq_filter *f = NULL;
    size_t n = (size_t)PyArray_SIZE(ids);
    int r = make_id_filter(kind, ids, &f);
    Py_DECREF(ids);
    return r < 0 ? NULL : filter_wrap(kind, f, NULL, n);
}

static PyObject *filter_of_tags(int kind, PyObject *arg) {
    avq_filter *f = NULL;
    size_t n = 0;
    if (make_tag_filter(kind, arg, "tags", &f, &n) < 0) return NULL;
    return filter_wrap(kind, f, NULL, n);
}

static PyObject *Filter_allow_ids(PyObject *cls, PyObject *arg) {
    return filter_of_ids(FK_ALLOW, arg);
}
static PyObject *Filter_deny_ids(PyObject *cls, PyObject *arg) {
    return filter_of_ids(FK_DENY, arg);
}
static PyObject *Filter_tags_any(PyObject *cls, PyObject *arg) {
    return filter_of_tags(FK_TAGS_ANY, arg);
}
static PyObject *Filter_tags_all(PyObject *cls, PyObject *arg) {
    return filter_of_tags(FK_TAGS_ALL, arg);
}
static PyObject *Filter_callback(PyObject *cls, PyObject *arg) {
    if (!PyCallable_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "keep must be callable(id) -> bool, got %.100s",
                     Py_TYPE(arg)->tp_name);
        return NULL;
    }
    return filter_wrap(FK_CALLBACK, NULL, arg, 0);
}

static PyObject *Filter_get_kind(FilterObject *self, void *c) {
    return PyUnicode_FromString(filter_kind_names[self->kind]);
}

static PyObject *Filter_get_size(FilterObject *self, void *c) {
    if (self->kind == FK_CALLBACK) Py_RETURN_NONE;
    return PyLong_FromSize_t(self->count);
}

static PyObject *Filter_get_keep(FilterObject *self, void *c) {
    return Py_NewRef(self->keep ? self->keep : Py_None);
}

static PyObject *Filter_repr(FilterObject *self) {
    if (self->kind == FK_CALLBACK)
        return PyUnicode_FromFormat("<avq.Filter callback %R>", self->keep);
    return PyUnicode_FromFormat("<avq.Filter %s (%zu %s)>", filter_kind_names[self->kind],
                                self->count,
                                self->kind <= FK_DENY ? "ids" : "tags");
}

PyDoc_STRVAR(Filter_allow_ids_doc,
"allow_ids($type, ids, /)\n"
"--\n"
"\n"
"Only vectors whose id is in `ids` (an array-like or set of ints; copied;\n"
"duplicates and ids not in any index are fine).  No ids allows nothing: a\n"
"search then returns only id -1.  Built once (a hash set, GIL released),\n"
"then reused by any number of searches.");

PyDoc_STRVAR(Filter_deny_ids_doc,
"deny_ids($type, ids, /)\n"
"--\n"
"\n"
"Every vector except those whose id is in `ids` (\"not already seen\").");

PyDoc_STRVAR(Filter_tags_any_doc,
"tags_any($type, tags, /)\n"
"--\n"
"\n"
"Vectors carrying at least one of `tags` (1 to 4096 ints in [0, 2**32)).");

PyDoc_STRVAR(Filter_tags_all_doc,
"tags_all($type, tags, /)\n"
"--\n"
"\n"
"Vectors carrying every one of `tags` (1 to 4096 ints in [0, 2**32)).");

PyDoc_STRVAR(Filter_callback_doc,
"callback($type, keep, /)\n"
"--\n"
"\n"
"The general, slow path: keep(id) -> bool is called (with the GIL) for\n"
"every live vector the search looks at.  An exception raised by keep\n"
"stops the search, which re-raises it.  Prefer tags or id sets: they are\n"
"checked inside the scan without Python, and the search can plan by their\n"
"size.");

static PyMethodDef Filter_methods[] = {
    {"allow_ids", (PyCFunction)Filter_allow_ids, METH_CLASS | METH_O, Filter_allow_ids_doc},
    {"deny_ids", (PyCFunction)Filter_deny_ids, METH_CLASS | METH_O, Filter_deny_ids_doc},
    {"tags_any", (PyCFunction)Filter_tags_any, METH_CLASS | METH_O, Filter_tags_any_doc},
    {"tags_all", (PyCFunction)Filter_tags_all, METH_CLASS | METH_O, Filter_tags_all_doc},
    {"callback", (PyCFunction)Filter_callback, METH_CLASS | METH_O, Filter_callback_doc},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef Filter_getset[] = {
    {"kind", (getter)Filter_get_kind, NULL,
     "'allow_ids', 'deny_ids', 'tags_any', 'tags_all' or 'callback' (str).", NULL},
    {"size", (getter)Filter_get_size, NULL,
     "How many ids or tags were given (duplicates included); None for a callback.", NULL},
    {"keep", (getter)Filter_get_keep, NULL, "The callable of a callback filter, else None.",
     NULL},
    {NULL, NULL, NULL, NULL, NULL}};

PyDoc_STRVAR(Filter_doc,
"A search filter built once and reused: pass it as search(..., filter=f).\n"
"\n"
"Make one with Filter.allow_ids(ids), Filter.deny_ids(ids),\n"
"Filter.tags_any(tags), Filter.tags_all(tags) or Filter.callback(keep).\n"
"Immutable, not tied to an index, safe to share between threads.  Passing\n"
"ids or tags to search() directly builds such a filter on every call;\n"
"for large id sets build it once here.");

static PyTypeObject FilterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "avq.Filter",
    .tp_basicsize = sizeof(FilterObject),
    .tp_dealloc = (destructor)Filter_dealloc,
    .tp_repr = (reprfunc)Filter_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)Filter_traverse,
    .tp_clear = (inquiry)Filter_clear,
    .tp_doc = Filter_doc,
    .tp_methods = Filter_methods,
    .tp_getset = Filter_getset,
};

/* --- filters of one search call ------------------------------------------ */

/* What the callback filters of one search call share: the first exception
 * raised by a keep() (re-raised when the search returns) and a flag that
 * makes every later call stop at once. */
typedef struct {
    atomic_int failed;
    PyObject *type, *value, *tb;
} keep_call;

typedef struct {
    keep_call *call;
    PyObject *keep; /* borrowed: the search's argument (or its Filter) holds it */
} keep_ctx;

/* A query's filter: `use` goes into the search parameters; `owned` (may be
 * NULL) is freed after the call. */
typedef struct {
    avq_filter *owned;
    const avq_filter *use;
    keep_ctx ctx;
} query_filter;

/* Called by the library, from the searching thread or a batch worker, with
 * the GIL released: take it (PyGILState works from any thread) and ask
 * keep(id).  Pending signals are handled here too, so Ctrl-C stops a long
 * callback-filtered search (KeyboardInterrupt). */
static int keep_trampoline(void *user, int64_t id) {
    keep_ctx *c = user;
    if (atomic_load_explicit(&c->call->failed, memory_order_relaxed)) return -1;
    PyGILState_STATE g = PyGILState_Ensure();
    int r = -1;
    PyObject *o = PyLong_FromLongLong((long long)id);
    if (o) {
        PyObject *res = PyObject_CallOneArg(c->keep, o);
        Py_DECREF(o);
        if (res) {
            r = PyObject_IsTrue(res);
            Py_DECREF(res);
        }
    }
    if (r >= 0 && PyErr_CheckSignals() < 0) r = -1;
    if (r < 0) {
        if (!c->call->type) PyErr_Fetch(&c->call->type, &c->call->value, &c->call->tb);
        else PyErr_Clear();
        atomic_store(&c->call->failed, 1);
    }
    PyGILState_Release(g);
    return r < 0 ? -1 : r;
}

static void keep_call_init(keep_call *call) {
    atomic_init(&call->failed, 0);
    call->type = call->value = call->tb = NULL;
}

/* After the search: 1 (with the exception set) when a keep() raised. */
static int keep_call_finish(keep_call *call) {
    if (!call->type) return 0;
    PyErr_Restore(call->type, call->value, call->tb);
    call->type = call->value = call->tb = NULL;
    return 1;
}

static void keep_call_discard(keep_call *call) {
    Py_CLEAR(call->type);
    Py_CLEAR(call->value);
    Py_CLEAR(call->tb);
}

static int query_filter_callback(query_filter *qf, PyObject *keep, keep_call *call) {
    qf->ctx.call = call;
    qf->ctx.keep = keep;
    int st = avq_filter_callback(keep_trampoline, &qf->ctx, &qf->owned);
    if (st != AVQ_OK) {
        raise_status(st, NULL, 0);
        return -1;
    }
    qf->use = qf->owned;
    return 0;
}

/* `obj` as the filter of kind `kind` (FK_ALLOW: the filter= argument: an
 * avq.Filter, a callable or ids; FK_DENY: ids; FK_TAGS_*: tags).  qf must
 * not move afterwards (a callback filter points into it). */
static int query_filter_make(query_filter *qf, int kind, PyObject *obj, const char *what,
                             keep_call *call) {
    qf->owned = NULL;
    qf->use = NULL;
    qf->ctx.call = call;
    qf->ctx.keep = NULL;
    if (kind == FK_ALLOW) {
        if (PyObject_TypeCheck(obj, &FilterType)) {
            FilterObject *f = (FilterObject *)obj;
            if (f->kind == FK_CALLBACK) {
                if (!f->keep) {
                    PyErr_SetString(PyExc_ValueError, "this avq.Filter was cleared");
                    return -1;
                }
                return query_filter_callback(qf, f->keep, call);
            }
            qf->use = f->filter;
            return 0;
        }
        if (PyCallable_Check(obj)) return query_filter_callback(qf, obj, call);
    }
    if (kind == FK_ALLOW || kind == FK_DENY) {
        PyArrayObject *ids = as_filter_ids(obj, what);
        if (!ids) {
            /* (a single int keeps as_filter_ids' own message) */
            if (kind == FK_ALLOW && !PyIndex_Check(obj) &&
                PyErr_ExceptionMatches(PyExc_TypeError)) {
                PyErr_Clear();
                PyErr_Format(PyExc_TypeError,
                             "%s must be an avq.Filter, a callable keep(id) -> bool, or ids (a "
                             "sequence, set or 1-D array of ints), got %.100s",
                             what, Py_TYPE(obj)->tp_name);
            }
            return -1;
        }
        int r = make_id_filter(kind, ids, &qf->owned);
        Py_DECREF(ids);
        if (r < 0) return -1;
    } else if (make_tag_filter(kind, obj, what, &qf->owned, NULL) < 0) {
        return -1;
    }
    qf->use = qf->owned;
    return 0;
}

static void query_filter_clear(query_filter *qf) {
    avq_filter_free(qf->owned);
    qf->owned = NULL;
    qf->use = NULL;
}

/* The filter keywords of search / search_batched (v[F_*], NULL = not
 * given): at most one filter into *qf (use = NULL when none) and the two
 * sizes into *sp.  Returns 0, or -1 with an exception. */
static int parse_search_filter(PyObject *const *v, avq_search_params *sp, query_filter *qf,
                               keep_call *call) {
    static const char *const names[] = {"filter", "deny", "tags_any", "tags_all"};
    static const int kinds[] = {FK_ALLOW, FK_DENY, FK_TAGS_ANY, FK_TAGS_ALL};
    qf->owned = NULL;
    qf->use = NULL;
    if (v[F_MIN_SCANNED] && v[F_MIN_SCANNED] != Py_None &&
        get_size(v[F_MIN_SCANNED], "filter_min_scanned", &sp->filter_min_scanned) < 0)
        return -1;
    if (v[F_EXACT_BELOW] && v[F_EXACT_BELOW] != Py_None &&
        get_size(v[F_EXACT_BELOW], "filter_exact_below", &sp->filter_exact_below) < 0)
        return -1;
    int which = -1;
    for (int i = 0; i < 4; i++) {
        if (!v[i] || v[i] == Py_None) continue;
        if (which >= 0) {
            PyErr_Format(PyExc_ValueError,
                         "give at most one of filter, deny, tags_any and tags_all (got %s and "
                         "%s): combine conditions in one tag list, an avq.Filter or a callable",
                         names[which], names[i]);
            return -1;
        }
        which = i;
    }
    if (which < 0) return 0;
    return query_filter_make(qf, kinds[which], v[which], names[which], call);
}

/* --- build --------------------------------------------------------------- */

PyDoc_STRVAR(Index_build_doc,
"build($type, /, data, metric='dot_product', *, num_leaves=0,\n"
"      training_sample=0, kmeans_iterations=12, spherical=None,\n"
"      avq_center_eta=..., dims_per_block=2, bits=4, threshold=...,\n"
"      eta=0.0, reorder='float', brute_force_below=20000, threads=None,\n"
"      seed=42, progress=None, threshold_kind='auto', leaf_spread_z='auto',\n"
"      weight='step', int8_aware=False, spill=False, spill_lambda=1.0,\n"
"      tags=None)\n"
"--\n"
"\n"
"Build an index over the rows of `data` (an (n, dim) array-like of real\n"
"numbers; row i gets id i).  tags: the tags of the rows, in any form\n"
"Index.add takes (checked before the build starts).\n"
"\n"
"`data` is used without a copy when it is a C-contiguous float32 ndarray;\n"
"anything else (float64, int, non-contiguous, lists) is converted once.\n"
"The library copies what it keeps, so `data` may be freed afterwards.\n"
"\n"
"metric: 'dot_product' (maximum inner product), 'squared_l2' or 'cosine'\n"
"    (aliases: 'ip', 'dot', 'l2', 'euclidean', 'cos', 'angular').\n"
"\n"
"The keyword arguments are the fields of avq_build_params (include/avq.h);\n"
"an argument left out keeps the library's default for the metric:\n"
"  num_leaves          k-means leaves; 0 = auto (one leaf below 100k points,\n"
"                      about sqrt(n) above)\n"
"  training_sample     rows sampled to train k-means and the codebooks; 0 = auto\n"
"  kmeans_iterations   1..1000 (12)\n"
"  spherical           unit-norm leaf centers; None = auto (True for cosine\n"
"                      and dot_product)\n"
"  avq_center_eta      > 0: anisotropic leaf centers with this eta (0 = off;\n"
"                      dot_product / cosine only; default 2.5 for both)\n"
"  dims_per_block      dimensions per PQ code (2)\n"
"  bits                4 (16 centers, SIMD fast scan) or 8\n"
"  threshold           anisotropic threshold T (ScaNN's\n"
"                      anisotropic_quantization_threshold); left out: the\n"
"                      metric's default (0.2 for dot/cosine); None =\n"
"                      reconstruction loss (plain PQ)\n"
"  eta                 > 0: fixed eta instead of deriving it from threshold\n"
"                      (threshold, eta, threshold_kind, avq_center_eta,\n"
"                      weight and int8_aware are for dot_product / cosine:\n"
"                      for squared_l2 anything but the default raises\n"
"                      ValueError, as L2 has no anisotropic loss)\n"
"  threshold_kind      'relative' (T scales with each point's norm: the\n"
"                      weighting of unit vectors at any norm), 'absolute'\n"
"                      (ScaNN's T, meant for norms ~1) or 'auto' (default:\n"
"                      relative for dot_product, absolute for cosine)\n"
"  leaf_spread_z       leaf ranking for raw inner products: a leaf is ranked by\n"
"                      <q, c> + z |q| (its spread), so wide leaves of large-norm\n"
"                      points are not passed over; 'auto' (default): 2 for\n"
"                      dot_product when the norms vary, else 0; 0 = off\n"
"  weight              score weight of the loss (dot_product / cosine):\n"
"                      'step' (the paper's, default), 'pow:P', 'exp:L' or\n"
"                      'logistic:S' (a soft step at threshold, width S)\n"
"  int8_aware          with reorder='int8': round the rows by the\n"
"                      anisotropic loss instead of to nearest (False)\n"
"  spill               SOAR spilling: False/0 (default) or True/1 = store every\n"
"                      vector also in a second leaf, chosen by the spilled-\n"
"                      residual loss, so a query whose best leaves miss its\n"
"                      primary leaf still finds it: higher recall at few\n"
"                      leaves_to_search for about 2x memory and add time.\n"
"                      Searches return each id once.  Needs leaves: an index\n"
"                      with one leaf (or the exact tier) resolves it to 0.\n"
"                      Anything else raises ValueError\n"
"  spill_lambda        with spill: the weight lambda of the loss\n"
"                      |r'|^2 + lambda <r, r'>^2 / |r|^2, a finite number >= 0\n"
"                      (1.0, the paper's; None = that default; 0 = the\n"
"                      second-nearest center);\n"
"                      giving it without spill raises ValueError\n"
"  reorder             'float' (exact re-ranking), 'float16' (half the\n"
"                      memory, scores within ~0.05 %), 'int8' or 'none'\n"
"  brute_force_below   below this many points the index scores every point\n"
"                      exactly and trains nothing (20000); 0 = always quantize\n"
"  threads             worker threads; None or 0 = one per CPU\n"
"  seed                all sampling is reproducible from it (42)\n"
"  progress            callable(stage: str, done: int, total: int), called\n"
"                      from the calling thread at most ~20 times a second and\n"
"                      at the end of every stage; its return value is\n"
"                      ignored; an exception it raises cancels the build and\n"
"                      is re-raised\n"
"\n"
"The GIL is released while the index is built.  Ctrl-C (in the main thread)\n"
"cancels the build within a fraction of a second and raises\n"
"KeyboardInterrupt.\n"
"\n"
"Raises ValueError (empty data, a wrong shape, a NaN or infinite value, a\n"
"parameter out of range: the message names it), TypeError (a dtype that is\n"
"not real numbers, a parameter of the wrong type), MemoryError.");

/* The keyword parameters of Index.build, Quantizer.train and Index.retrain
 * (the fields of avq_build_params); NULL = not given. */
typedef struct {
    PyObject *num_leaves, *training_sample, *kmeans_iterations, *spherical, *avq_center_eta,
        *dims_per_block, *bits, *threshold, *eta, *reorder, *brute_force_below, *threads, *seed,
        *progress, *threshold_kind, *leaf_spread_z, *weight, *int8_aware, *spill, *spill_lambda;
} build_kw;

/* Apply the given keywords to *p (already initialised for its metric). */
static int apply_build_kw(const build_kw *kw, avq_build_params *p) {
    if (kw->num_leaves && get_size(kw->num_leaves, "num_leaves", &p->num_leaves) < 0) return -1;
    if (kw->training_sample &&
        get_size(kw->training_sample, "training_sample", &p->training_sample) < 0)
        return -1;
    if (kw->kmeans_iterations && get_int_range(kw->kmeans_iterations, "kmeans_iterations", 1,
                                               1000, &p->kmeans_iterations) < 0)
        return -1;
    if (kw->spherical) {
        if (kw->spherical == Py_None) {
            p->spherical = -1;
        } else {
            int truth = PyObject_IsTrue(kw->spherical);
            if (truth < 0) return -1;
            p->spherical = truth;
        }
    }
    if (kw->avq_center_eta &&
        get_float(kw->avq_center_eta, "avq_center_eta", &p->avq_center_eta) < 0)
        return -1;
    if (kw->dims_per_block &&
        get_int_range(kw->dims_per_block, "dims_per_block", 1, 1 << 20, &p->dims_per_block) < 0)
        return -1;
    if (kw->bits && get_int_range(kw->bits, "bits", 0, 64, &p->bits) < 0) return -1;
    if (kw->threshold) {
        if (kw->threshold == Py_None) p->threshold = NAN;
        else if (get_float(kw->threshold, "threshold", &p->threshold) < 0) return -1;
    }
    if (kw->eta && get_float(kw->eta, "eta", &p->eta) < 0) return -1;
    if (kw->threshold_kind && kw->threshold_kind != Py_None) {
        const char *t = PyUnicode_Check(kw->threshold_kind) ? PyUnicode_AsUTF8(kw->threshold_kind)
                                                           : NULL;
        if (!t) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_TypeError,
                             "threshold_kind must be 'auto', 'relative' or 'absolute', got %.100s",
                             Py_TYPE(kw->threshold_kind)->tp_name);
            return -1;
        }
        if (!strcmp(t, "auto")) p->threshold_kind = AVQ_THRESHOLD_AUTO;
        else if (!strcmp(t, "relative")) p->threshold_kind = AVQ_THRESHOLD_RELATIVE;
        else if (!strcmp(t, "absolute")) p->threshold_kind = AVQ_THRESHOLD_ABSOLUTE;
        else {
            PyErr_Format(PyExc_ValueError,
                         "threshold_kind must be 'auto', 'relative' or 'absolute', got '%s'", t);
            return -1;
        }
    }
    if (kw->leaf_spread_z) {
        if (kw->leaf_spread_z == Py_None ||
            (PyUnicode_Check(kw->leaf_spread_z) &&
             !PyUnicode_CompareWithASCIIString(kw->leaf_spread_z, "auto"))) {
            p->leaf_spread_z = -1.0f;
        } else if (PyUnicode_Check(kw->leaf_spread_z)) {
            PyErr_Format(PyExc_ValueError, "leaf_spread_z must be 'auto', None or a number >= 0, "
                                           "got '%U'", kw->leaf_spread_z);
            return -1;
        } else {
            if (get_float(kw->leaf_spread_z, "leaf_spread_z", &p->leaf_spread_z) < 0) return -1;
            if (!(p->leaf_spread_z >= 0.0f)) {
                PyErr_Format(PyExc_ValueError, "leaf_spread_z must be 'auto', None or a number "
                                               ">= 0, got %R", kw->leaf_spread_z);
                return -1;
            }
        }
    }
    /* score-aware weights (issue 19): 'step', 'pow:P', 'exp:L', 'logistic:S' */
    if (kw->weight && kw->weight != Py_None) {
        const char *w = PyUnicode_Check(kw->weight) ? PyUnicode_AsUTF8(kw->weight) : NULL;
        if (!w) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_TypeError, "weight must be a str such as 'step' or 'pow:3', "
                             "got %.100s", Py_TYPE(kw->weight)->tp_name);
            return -1;
        }
        static const char *const kinds[] = {"step", "pow", "exp", "logistic"};
        const char *colon = strchr(w, ':');
        size_t len = colon ? (size_t)(colon - w) : strlen(w);
        int kind = -1;
        for (int k = 0; k < 4; k++)
            if (strlen(kinds[k]) == len && !strncmp(w, kinds[k], len)) kind = k;
        char *end = NULL;
        double v = colon ? strtod(colon + 1, &end) : 0.0;
        if (kind < 0 || (kind == 0) != (colon == NULL) ||
            (colon && (end == colon + 1 || *end || !(v >= 0.0) || !isfinite(v)))) {
            PyErr_Format(PyExc_ValueError, "weight must be 'step', 'pow:P', 'exp:L' or "
                         "'logistic:S', got '%s'", w);
            return -1;
        }
        p->weight = (avq_weight_kind)kind;
        p->weight_param = (float)v;
    }
    if (kw->int8_aware) {
        int truth = PyObject_IsTrue(kw->int8_aware);
        if (truth < 0) return -1;
        p->int8_aware = truth;
    }
    /* SOAR spilling (issue 15).  spill is a count of extra leaves in the C
     * API (0 or 1 today), so only False/True/0/1 are taken: a truthy string
     * or 2 must not quietly mean 1. */
    if (kw->spill) {
        long v = -1;
        PyObject *o = kw->spill;
        if (PyBool_Check(o)) {
            v = o == Py_True;
        } else if (PyArray_IsScalar(o, Bool)) {
            v = PyObject_IsTrue(o);
            if (v < 0) return -1;
        } else if (PyIndex_Check(o)) {
            PyObject *as_int = PyNumber_Index(o);
            if (!as_int) return -1;
            v = PyLong_AsLong(as_int);
            Py_DECREF(as_int);
            if (v == -1 && PyErr_Occurred()) PyErr_Clear(); /* out of range: refused below */
        }
        if (v != 0 && v != 1) {
            PyErr_Format(PyExc_ValueError, "spill must be False, True, 0 or 1, got %R", o);
            return -1;
        }
        p->spill = (int)v;
    }
    /* None = the default, so that Index.build(**ix.build_params) works on an
     * index that does not spill (build_params shows spill_lambda None there) */
    if (kw->spill_lambda && kw->spill_lambda != Py_None) {
        if (get_float(kw->spill_lambda, "spill_lambda", &p->spill_lambda) < 0) return -1;
        if (!(p->spill_lambda >= 0.0f) || isinf(p->spill_lambda)) {
            PyErr_Format(PyExc_ValueError, "spill_lambda must be a finite number >= 0, got %R",
                         kw->spill_lambda);
            return -1;
        }
        /* as the CLI's --spill-lambda without --spill: a lambda that would be
         * ignored is a mistake worth reporting (for retrain, spill is the
         * source index's unless given) */
        if (!p->spill) {
            PyErr_SetString(PyExc_ValueError,
                            "spill_lambda sets the loss of spill: give spill=True too");
            return -1;
        }
    }
    PyObject *reorder = kw->reorder;
    if (reorder && reorder != Py_None) {
        const char *r = PyUnicode_Check(reorder) ? PyUnicode_AsUTF8(reorder) : NULL;
        if (!r) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_TypeError,
                             "reorder must be 'float', 'float16', 'int8' or 'none', got %.100s",
                             Py_TYPE(reorder)->tp_name);
            return -1;
        }
        if (!strcmp(r, "float") || !strcmp(r, "float32")) p->reorder = AVQ_REORDER_FLOAT;
        else if (!strcmp(r, "float16")) p->reorder = AVQ_REORDER_FLOAT16;
        else if (!strcmp(r, "int8")) p->reorder = AVQ_REORDER_INT8;
        else if (!strcmp(r, "none")) p->reorder = AVQ_REORDER_NONE;
        else {
            PyErr_Format(PyExc_ValueError,
                         "reorder must be 'float', 'float16', 'int8' or 'none', got '%s'", r);
            return -1;
        }
    } else if (reorder == Py_None) {
        p->reorder = AVQ_REORDER_NONE;
    }
    if (kw->brute_force_below &&
        get_size(kw->brute_force_below, "brute_force_below", &p->brute_force_below) < 0)
        return -1;
    if (kw->threads && get_threads(kw->threads, &p->threads) < 0) return -1;
    if (kw->seed) {
        PyObject *seed = kw->seed;
        if (PyBool_Check(seed) || !PyIndex_Check(seed)) {
            PyErr_Format(PyExc_TypeError, "seed must be an int, got %.100s",
                         Py_TYPE(seed)->tp_name);
            return -1;
        }
        PyObject *as_int = PyNumber_Index(seed);
        if (!as_int) return -1;
        unsigned long long s = PyLong_AsUnsignedLongLong(as_int);
        Py_DECREF(as_int);
        if (s == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            PyErr_SetString(PyExc_ValueError, "seed must be in [0, 2**64)");
            return -1;
        }
        p->seed = (uint64_t)s;
    }
    return check_callback(kw->progress);
}

/* Parse (data, metric='dot_product', *, <build keywords>) for `fname`:
 * *p is initialised for the metric with the keywords applied, *arr is data
 * as a non-empty (n, dim) float32 array (new reference). */
static int parse_training_call(PyObject *args, PyObject *kwargs, const char *fname,
                               avq_build_params *p, build_kw *kw, PyArrayObject **arr) {
    static char *kwlist[] = {"data",      "metric",       "num_leaves",    "training_sample",
                             "kmeans_iterations", "spherical", "avq_center_eta", "dims_per_block",
                             "bits",      "threshold",    "eta",           "reorder",
                             "brute_force_below", "threads", "seed",        "progress",
                             "threshold_kind", "leaf_spread_z", "weight", "int8_aware", "spill",
                             "spill_lambda", NULL};
    char format[64];
    snprintf(format, sizeof format, "O|O$OOOOOOOOOOOOOOOOOOOO:%s", fname);
    PyObject *data, *metric_o = NULL;
    memset(kw, 0, sizeof *kw);
    *arr = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, format, kwlist, &data, &metric_o,
                                     &kw->num_leaves, &kw->training_sample,
                                     &kw->kmeans_iterations, &kw->spherical,
                                     &kw->avq_center_eta, &kw->dims_per_block, &kw->bits,
                                     &kw->threshold, &kw->eta, &kw->reorder,
                                     &kw->brute_force_below, &kw->threads, &kw->seed,
                                     &kw->progress, &kw->threshold_kind, &kw->leaf_spread_z, &kw->weight,
                                     &kw->int8_aware, &kw->spill, &kw->spill_lambda))
        return -1;
    avq_metric metric = AVQ_METRIC_DOT;
    if (metric_o && get_metric(metric_o, &metric) < 0) return -1;
    avq_build_params_init(p, metric);
    if (apply_build_kw(kw, p) < 0) return -1;
    PyArrayObject *a = as_float32(data, "data");
    if (!a) return -1;
    if (PyArray_NDIM(a) != 2) {
        PyErr_Format(PyExc_ValueError, "data must be 2-D (n, dim), got %d dimension(s)",
                     PyArray_NDIM(a));
        Py_DECREF(a);
        return -1;
    }
    size_t n = (size_t)PyArray_DIM(a, 0), dim = (size_t)PyArray_DIM(a, 1);
    if (n == 0 || dim == 0) {
        PyErr_Format(PyExc_ValueError, "data is empty: shape (%zu, %zu)", n, dim);
        Py_DECREF(a);
        return -1;
    }
    *arr = a;
    return 0;
}

/* What run_training makes. */
enum { TRAIN_INDEX, TRAIN_QUANTIZER, TRAIN_RETRAIN };

/* Run a long training call with the GIL released, progress reported and
 * Ctrl-C honoured: avq_index_build / avq_quantizer_train on `arr`, or
 * avq_index_retrain of `source`.  Returns the new object (avq_index * or
 * avq_quantizer *) or NULL with an exception set. */
/* progress= not given: avq._default_progress() (a bar on a terminal, shown
 * once a build has run a few seconds; None elsewhere).  New reference or
 * NULL, never an error (a failure only means no bar). */
static PyObject *default_progress(void) {
    PyObject *mod = PyImport_ImportModule("avq");
    PyObject *cb = mod ? PyObject_CallMethod(mod, "_default_progress", NULL) : NULL;
    Py_XDECREF(mod);
    if (!cb) PyErr_Clear();
    if (cb == Py_None) Py_CLEAR(cb);
    return cb;
}

static void *run_training(int what, PyArrayObject *arr, const avq_index *source,
                          avq_build_params *p, PyObject *progress) {
    PyObject *auto_bar = progress == NULL ? default_progress() : NULL;
    void *made = NULL;
    progress_ctx ctx = {NULL, progress == Py_None ? NULL : progress ? progress : auto_bar, 0, 0.0,
                        {0}};
    ctx.last_time = monotonic_seconds();
    p->progress = progress_trampoline;
    p->progress_user = &ctx;
    avq_index *ix = NULL;
    avq_quantizer *qz = NULL;
    const float *data = arr ? (const float *)PyArray_DATA(arr) : NULL;
    size_t n = arr ? (size_t)PyArray_DIM(arr, 0) : 0, dim = arr ? (size_t)PyArray_DIM(arr, 1) : 0;
    ctx.ts = PyEval_SaveThread();
    int st = what == TRAIN_INDEX       ? avq_index_build(data, n, dim, p, &ix)
             : what == TRAIN_QUANTIZER ? avq_quantizer_train(data, n, dim, p, &qz)
                                       : avq_index_retrain(source, p, &ix);
    PyEval_RestoreThread(ctx.ts);
    p->progress = NULL;
    p->progress_user = NULL;
    if (st == AVQ_OK && PyErr_Occurred()) { /* cancelled at the very end */
        free_index_nogil(ix);
        avq_quantizer_free(qz);
    } else if (st != AVQ_OK) {
        raise_status(st, NULL, 0);
    } else {
        made = what == TRAIN_QUANTIZER ? (void *)qz : (void *)ix;
    }
    Py_XDECREF(auto_bar);
    return made;
}

/* Tag the n vectors of a fresh build (ids 0..n-1). */
static int tag_built_index(avq_index *ix, size_t n, const tag_csr *csr) {
    int64_t *ids = PyMem_RawMalloc((n ? n : 1) * sizeof *ids);
    if (!ids) {
        PyErr_NoMemory();
        return -1;
    }
    int st;
    Py_BEGIN_ALLOW_THREADS
    for (size_t i = 0; i < n; i++) ids[i] = (int64_t)i;
    st = avq_index_set_tags(ix, ids, n, csr->offsets, csr->tags);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(ids);
    if (st != AVQ_OK) {
        raise_status(st, NULL, 0);
        return -1;
    }
    return 0;
}

static PyObject *Index_build(PyObject *cls, PyObject *args, PyObject *kwargs) {
    avq_build_params p;
    build_kw kw;
    PyArrayObject *arr;
    PyObject *tags_o = NULL, *rest = NULL;
    (void)cls;
    if (kwargs) { /* tags= is build's own: the other keywords are shared with train */
        tags_o = PyDict_GetItemString(kwargs, "tags");
        if (tags_o) {
            rest = PyDict_Copy(kwargs);
            if (!rest) return NULL;
            Py_INCREF(tags_o);
            if (PyDict_DelItemString(rest, "tags") < 0) {
                Py_DECREF(rest);
                Py_DECREF(tags_o);
                return NULL;
            }
            kwargs = rest;
        }
    }
    int r = parse_training_call(args, kwargs, "build", &p, &kw, &arr);
    Py_XDECREF(rest);
    if (r < 0) {
        Py_XDECREF(tags_o);
        return NULL;
    }
    tag_csr csr = {NULL, NULL};
    size_t n = (size_t)PyArray_DIM(arr, 0);
    /* checked before the (long) build */
    if (tags_o && tags_o != Py_None && tags_csr_of_object(tags_o, n, "tags", &csr) < 0) {
        Py_DECREF(arr);
        Py_DECREF(tags_o);
        return NULL;
    }
    Py_XDECREF(tags_o);
    avq_index *ix = run_training(TRAIN_INDEX, arr, NULL, &p, kw.progress);
    Py_DECREF(arr);
    if (ix && csr.offsets && tag_built_index(ix, n, &csr) < 0) {
        free_index_nogil(ix);
        ix = NULL;
    }
    tag_csr_free(&csr);
    return ix ? index_wrap(ix, 0) : NULL;
}

/* --- search -------------------------------------------------------------- */

PyDoc_STRVAR(Index_search_doc,
"search($self, /, q, k=10, leaves_to_search=None, pre_reorder=None, *,\n"
"       filter=None, deny=None, tags_any=None, tags_all=None,\n"
"       filter_min_scanned=None, filter_exact_below=None)\n"
"--\n"
"\n"
"The k best database vectors for one query `q`: a 1-D array-like of length\n"
"dim, or a 2-D one of shape (1, dim) -- one row, as q[None] or Q[i:i+1]\n"
"gives it.  Returns (ids, scores): ids an int64 array of shape (k,), scores\n"
"a float32 array of shape (k,) -- (1, k) each for a (1, dim) query, as\n"
"search_batched returns for one row -- best first.  For 'dot_product' and 'cosine'\n"
"the scores are similarities (larger is better); for 'squared_l2' they are\n"
"squared distances (smaller is better).  Ties go to the lower id.  When\n"
"fewer than k results exist the tail has id -1 and score NaN.\n"
"\n"
"leaves_to_search: leaves scanned (None = the index default, see\n"
"    default_search_params; more than num_leaves means all of them, as\n"
"    FAISS clamps nprobe); pre_reorder: candidates re-scored exactly before\n"
"    the final top-k (None = the index's default).\n"
"\n"
"The GIL is released during the search, so several Python threads can\n"
"search one index in parallel.  A C-contiguous float32 query is used\n"
"without a copy.\n"
"\n"
"Filtered search (at most one of the four; keyword-only):\n"
"  filter      an avq.Filter (built once, reused), a callable keep(id) ->\n"
"              bool (the slow, general path: called with the GIL for every\n"
"              vector the search looks at; an exception it raises stops the\n"
"              search and is re-raised), or ids (a sequence, set or 1-D array\n"
"              of ints): only those may be returned\n"
"  deny        ids that must not be returned\n"
"  tags_any    a sequence of tags: vectors carrying at least one of them\n"
"  tags_all    a sequence of tags: vectors carrying all of them\n"
"The filter works inside the scan: only allowed vectors enter the\n"
"candidates, and the search visits further leaves until enough allowed\n"
"vectors were seen (filter_min_scanned; None = 8 x pre_reorder).  When the\n"
"filter allows at most filter_exact_below vectors (None = 1500; known for\n"
"tags and allow sets) they are all scored exactly.  A filter that allows\n"
"nothing gives ids -1 and scores NaN.  ids / tags given here build a\n"
"filter on every call; for large id sets build an avq.Filter once.\n"
"\n"
"Raises ValueError (wrong length or shape, NaN/infinite values, k < 1,\n"
"closed index, two filters, a tag\n"
"out of [0, 2**32), a tag filter of 0 or more than 4096 tags), TypeError\n"
"(not an array of real numbers, a filter of the wrong type), whatever a\n"
"keep() callback raises.");

static PyObject *Index_search(IndexObject *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames) {
    PyObject *v[SEARCH_NAMES];
    if (parse_fast("search", args, nargs, kwnames, search_names, SEARCH_NAMES, F_BASE_SEARCH, 1,
                   v) < 0)
        return NULL;
    avq_search_params sp;
    avq_search_params_init(&sp);
    if (get_k(v[S_K], &sp.k) < 0 || check_search_k(sp.k) < 0 ||
        get_positive_or_none(v[S_LEAVES], "leaves_to_search", &sp.leaves_to_search) < 0 ||
        get_positive_or_none(v[S_PRE], "pre_reorder", &sp.pre_reorder) < 0)
        return NULL;
    keep_call call;
    keep_call_init(&call);
    query_filter qf = {NULL, NULL, {NULL, NULL}};
    int filtered = 0;
    for (int i = 0; i < F_COUNT && !filtered; i++) filtered = v[F_BASE_SEARCH + i] != NULL;
    if (filtered && parse_search_filter(v + F_BASE_SEARCH, &sp, &qf, &call) < 0) return NULL;
    sp.filter = qf.use;
    avq_index *ix = index_acquire(self);
    if (!ix) {
        query_filter_clear(&qf);
        return NULL;
    }
    PyObject *ids = NULL, *scores = NULL, *result = NULL;
    PyArrayObject *q = as_float32(v[S_Q], "q");
    if (!q) goto done;
    size_t dim = avq_index_dim(ix);
    /* one query as a (1, dim) row: results of shape (1, k), as search_batched */
    int row = PyArray_NDIM(q) == 2 && PyArray_DIM(q, 0) == 1 && (size_t)PyArray_DIM(q, 1) == dim;
    if (!row && (PyArray_NDIM(q) != 1 || (size_t)PyArray_DIM(q, 0) != dim)) {
        if (PyArray_NDIM(q) == 2 && PyArray_DIM(q, 0) == 1)
            PyErr_Format(PyExc_ValueError, "q has dimension %zd, the index has dimension %zu",
                         PyArray_DIM(q, 1), dim);
        else if (PyArray_NDIM(q) == 2)
            PyErr_Format(PyExc_ValueError,
                         "q must be one query of shape (%zu,) or (1, %zu), got %zd rows: use "
                         "search_batched",
                         dim, dim, PyArray_DIM(q, 0));
        else if (PyArray_NDIM(q) != 1)
            PyErr_Format(PyExc_ValueError, "q must be 1-D of length %zu, got %d dimensions", dim,
                         PyArray_NDIM(q));
        else
            PyErr_Format(PyExc_ValueError, "q has length %zd, the index has dimension %zu",
                         PyArray_DIM(q, 0), dim);
        goto done;
    }
    npy_intp shape[2] = {1, (npy_intp)sp.k};
    ids = PyArray_SimpleNew(row ? 2 : 1, shape + !row, NPY_INT64);
    scores = PyArray_SimpleNew(row ? 2 : 1, shape + !row, NPY_FLOAT32);
    if (!ids || !scores) goto done;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = avq_index_search(ix, (const float *)PyArray_DATA(q), &sp,
                          (int64_t *)PyArray_DATA((PyArrayObject *)ids),
                          (float *)PyArray_DATA((PyArrayObject *)scores));
    Py_END_ALLOW_THREADS
    if (keep_call_finish(&call)) goto done; /* a keep() raised: that exception */
    if (st != AVQ_OK) {
        raise_status(st, NULL, 0);
        goto done;
    }
    result = steal_pair(&ids, &scores);
done:
    Py_XDECREF(q);
    Py_XDECREF(ids);
    Py_XDECREF(scores);
    query_filter_clear(&qf);
    keep_call_discard(&call);
    index_release(self);
    return result;
}

PyDoc_STRVAR(Index_search_batched_doc,
"search_batched($self, /, queries, k=10, leaves_to_search=None, pre_reorder=None,\n"
"               threads=None, *, filter=None, deny=None, tags_any=None,\n"
"               tags_all=None, filter_min_scanned=None, filter_exact_below=None,\n"
"               filters=None)\n"
"--\n"
"\n"
"Search every row of `queries` (an (nq, dim) array-like) on `threads`\n"
"worker threads (None or 0 = one per CPU).  Returns (ids, scores) of shapes\n"
"(nq, k): int64 and float32, row i being exactly what search(queries[i], ...)\n"
"returns.  nq = 0 gives two empty (0, k) arrays.\n"
"\n"
"filter / deny / tags_any / tags_all: one filter for every query, as in\n"
"search().  filters: one filter per query instead -- a sequence of nq items,\n"
"each None (no filter), an avq.Filter, a callable keep(id) -> bool or ids to\n"
"allow (for per-query deny or tag filters use avq.Filter objects); it cannot\n"
"be combined with the four above.  A callable is called from the worker\n"
"threads, one at a time (it takes the GIL).\n"
"\n"
"The GIL is released; long batches are cut into pieces of 4096 queries\n"
"and Ctrl-C is honoured between pieces (KeyboardInterrupt).\n"
"\n"
"Raises as search(); ValueError if filters has not nq items.");

enum { BATCH_PIECE = 4096 };

/* The first NaN or infinity in rows x dim floats: its index, or rows * dim
 * (on the error path only). */
static size_t first_non_finite(const float *x, size_t rows, size_t dim) {
    for (size_t i = 0; i < rows * dim; i++)
        if (!isfinite(x[i])) return i;
    return rows * dim;
}

/* filters= of search_batched: nq query filters (PyMem arrays *qfs and
 * *ptrs, the latter what the library takes). */
static int parse_query_filters(PyObject *obj, size_t nq, keep_call *call, query_filter **qfs,
                               const avq_filter ***ptrs) {
    *qfs = NULL;
    *ptrs = NULL;
    if (PyUnicode_Check(obj) || PyBytes_Check(obj) || !PySequence_Check(obj)) {
        PyErr_Format(PyExc_TypeError,
                     "filters must be a sequence with one filter (or None) per query, got %.100s",
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    PyObject *seq = PySequence_Fast(obj, "filters");
    if (!seq) return -1;
    if ((size_t)PySequence_Fast_GET_SIZE(seq) != nq) {
        PyErr_Format(PyExc_ValueError, "filters has %zd items for %zu queries: give one per query",
                     PySequence_Fast_GET_SIZE(seq), nq);
        Py_DECREF(seq);
        return -1;
    }
    size_t alloc = nq ? nq : 1;
    query_filter *q = PyMem_Calloc(alloc, sizeof *q);
    const avq_filter **p = PyMem_Calloc(alloc, sizeof *p);
    if (!q || !p) {
        PyMem_Free(q);
        PyMem_Free(p);
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (size_t i = 0; i < nq; i++) {
        if (items[i] == Py_None) continue;
        char what[48];
        snprintf(what, sizeof what, "filters[%zu]", i);
        if (query_filter_make(&q[i], FK_ALLOW, items[i], what, call) < 0) {
            for (size_t j = 0; j < i; j++) query_filter_clear(&q[j]);
            PyMem_Free(q);
            PyMem_Free(p);
            Py_DECREF(seq);
            return -1;
        }
        p[i] = q[i].use;
    }
    Py_DECREF(seq);
    *qfs = q;
    *ptrs = p;
    return 0;
}

static PyObject *Index_search_batched(IndexObject *self, PyObject *const *args,
                                      Py_ssize_t nargs, PyObject *kwnames) {
    PyObject *v[BATCHED_NAMES];
    if (parse_fast("search_batched", args, nargs, kwnames, batched_names, BATCHED_NAMES,
                   F_BASE_BATCHED, 1, v) < 0)
        return NULL;
    avq_search_params sp;
    avq_search_params_init(&sp);
    int threads;
    if (get_k(v[S_K], &sp.k) < 0 || check_search_k(sp.k) < 0 ||
        get_positive_or_none(v[S_LEAVES], "leaves_to_search", &sp.leaves_to_search) < 0 ||
        get_positive_or_none(v[S_PRE], "pre_reorder", &sp.pre_reorder) < 0 ||
        get_threads(v[S_THREADS], &threads) < 0)
        return NULL;
    PyObject *filters_o = v[B_FILTERS] == Py_None ? NULL : v[B_FILTERS];
    keep_call call;
    keep_call_init(&call);
    query_filter qf = {NULL, NULL, {NULL, NULL}};
    query_filter *qfs = NULL;
    const avq_filter **per_query = NULL;
    size_t nqf = 0;
    int filtered = 0;
    for (int i = 0; i < F_COUNT && !filtered; i++) filtered = v[F_BASE_BATCHED + i] != NULL;
    if (filters_o) {
        for (int i = 0; i < 4; i++)
            if (v[F_BASE_BATCHED + i] && v[F_BASE_BATCHED + i] != Py_None) {
                PyErr_SetString(PyExc_ValueError,
                                "filters (one per query) cannot be combined with filter, deny, "
                                "tags_any or tags_all (one for all queries)");
                return NULL;
            }
    }
    if (filtered && parse_search_filter(v + F_BASE_BATCHED, &sp, &qf, &call) < 0) return NULL;
    sp.filter = qf.use;
    avq_index *ix = index_acquire(self);
    if (!ix) {
        query_filter_clear(&qf);
        return NULL;
    }
    PyObject *ids = NULL, *scores = NULL, *result = NULL;
    PyArrayObject *q = as_float32(v[S_Q], "queries");
    if (!q) goto done;
    size_t dim = avq_index_dim(ix);
    if (PyArray_NDIM(q) != 2 || (size_t)PyArray_DIM(q, 1) != dim) {
        if (PyArray_NDIM(q) != 2)
            PyErr_Format(PyExc_ValueError, "queries must be 2-D (nq, %zu), got %d dimension(s)",
                         dim, PyArray_NDIM(q));
        else
            PyErr_Format(PyExc_ValueError, "queries have dimension %zd, the index has %zu",
                         PyArray_DIM(q, 1), dim);
        goto done;
    }
    size_t nq = (size_t)PyArray_DIM(q, 0);
    if (filters_o) {
        if (parse_query_filters(filters_o, nq, &call, &qfs, &per_query) < 0) goto done;
        nqf = nq;
    }
    npy_intp shape[2] = {(npy_intp)nq, (npy_intp)sp.k};
    ids = PyArray_SimpleNew(2, shape, NPY_INT64);
    scores = PyArray_SimpleNew(2, shape, NPY_FLOAT32);
    if (!ids || !scores) goto done;
    const float *qd = PyArray_DATA(q);
    int64_t *id = PyArray_DATA((PyArrayObject *)ids);
    float *sc = PyArray_DATA((PyArrayObject *)scores);
    for (size_t first = 0; first < nq; first += BATCH_PIECE) {
        size_t count = nq - first < BATCH_PIECE ? nq - first : BATCH_PIECE;
        int st;
        Py_BEGIN_ALLOW_THREADS
        if (per_query)
            st = avq_index_search_batch_filtered(ix, qd + first * dim, count, &sp,
                                                 per_query + first, threads, id + first * sp.k,
                                                 sc + first * sp.k);
        else
            st = avq_index_search_batch(ix, qd + first * dim, count, &sp, threads,
                                        id + first * sp.k, sc + first * sp.k);
        Py_END_ALLOW_THREADS
        if (keep_call_finish(&call)) goto done; /* a keep() raised: that exception */
        if (st != AVQ_OK) {
            size_t bad = first_non_finite(qd + first * dim, count, dim);
            if (st == AVQ_ERR_INVALID && bad < count * dim) {
                /* our own words: the library numbers queries within the
                 * piece, and its message is lost when a worker failed */
                PyErr_Format(PyExc_ValueError,
                             "query %zu: search: query value %zu is not a finite number",
                             first + bad / dim, bad % dim);
            } else {
                raise_status(st, NULL, 0);
            }
            goto done;
        }
        if (first + count < nq && PyErr_CheckSignals() < 0) goto done;
    }
    result = steal_pair(&ids, &scores);
done:
    Py_XDECREF(q);
    Py_XDECREF(ids);
    Py_XDECREF(scores);
    for (size_t i = 0; i < nqf; i++) query_filter_clear(&qfs[i]);
    PyMem_Free(qfs);
    PyMem_Free(per_query);
    query_filter_clear(&qf);
    keep_call_discard(&call);
    index_release(self);
    return result;
}

/* --- the living index: add, upsert, remove, compact, get, stats ---------- */

/* vectors for a writer: an (n, dim) array-like, or one (dim,) vector. */
static PyArrayObject *as_rows(PyObject *obj, size_t dim, size_t *n) {
    PyArrayObject *a = as_float32(obj, "vectors");
    if (!a) return NULL;
    int nd = PyArray_NDIM(a);
    size_t last = nd >= 1 ? (size_t)PyArray_DIM(a, nd - 1) : 0;
    if ((nd != 1 && nd != 2) || last != dim) {
        if (nd != 1 && nd != 2)
            PyErr_Format(PyExc_ValueError,
                         "vectors must be of shape (n, %zu) or (%zu,), got %d dimension(s)", dim,
                         dim, nd);
        else
            PyErr_Format(PyExc_ValueError, "vectors have dimension %zu, the index has %zu", last,
                         dim);
        Py_DECREF(a);
        return NULL;
    }
    *n = nd == 1 ? 1 : (size_t)PyArray_DIM(a, 0);
    return a;
}

static int check_same_count(PyArrayObject *ids, size_t n) {
    if ((size_t)PyArray_SIZE(ids) != n) {
        PyErr_Format(PyExc_ValueError, "%zd ids for %zu vectors: give one id per row",
                     PyArray_SIZE(ids), n);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(Index_add_doc,
"add($self, /, vectors, ids=None, threads=0, *, tags=None)\n"
"--\n"
"\n"
"Add vectors (an (n, dim) array-like, or one (dim,) vector) under `ids`\n"
"(n distinct int64 ids not in the index: any integer array-like, or an int\n"
"for one vector), or under automatic ids when ids is None: the next free\n"
"ones, one more than the largest id the index ever held.  Returns the ids\n"
"used, an int64 array of shape (n,).\n"
"\n"
"The vectors are encoded with the index's quantizer (never retrained, see\n"
"stats() and retrain()) on `threads` workers (None or 0 = one per CPU).\n"
"All or nothing: on any error (a NaN/infinite row, a zero row with\n"
"cosine, an id repeated in the call, an id already present -- use upsert\n"
"-- or the id -1) nothing is added.  Searches in other threads go on\n"
"meanwhile and see every leaf before or after the change.  The GIL is\n"
"released.\n"
"\n"
"Raises ValueError (wrong shape or dimension, ids and vectors of\n"
"different lengths, the rows above: the message names the row), TypeError\n"
"(non-integer ids, vectors that are not real numbers).\n"
"\n"
"tags: the tags of the new vectors (ints in [0, 2**32), at most 1024 per\n"
"vector, duplicates merged), in one of three forms: a list with one list\n"
"of tags (or None) per row; a 2-D integer array of shape (n, t); or a\n"
"tuple (offsets, tags) -- CSR: offsets n + 1 non-decreasing ints from 0\n"
"to len(tags), row i's tags being tags[offsets[i]:offsets[i + 1]].  A\n"
"tuple of two is always read as CSR.  ValueError for a tag out of range,\n"
"too many tags on a row, or not one entry per row.");

static PyObject *Index_add(IndexObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"vectors", "ids", "threads", "tags", NULL};
    PyObject *vec_o, *ids_o = Py_None, *threads_o = NULL, *tags_o = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|OO$O:add", kwlist, &vec_o, &ids_o,
                                     &threads_o, &tags_o))
        return NULL;
    int threads;
    if (get_threads(threads_o, &threads) < 0) return NULL;
    avq_index *ix = index_acquire(self);
    if (!ix) return NULL;
    PyArrayObject *vec = NULL, *ids = NULL;
    PyObject *out = NULL, *result = NULL;
    tag_csr csr = {NULL, NULL};
    size_t n;
    int scalar;
    vec = as_rows(vec_o, avq_index_dim(ix), &n);
    if (!vec) goto done;
    if (ids_o != Py_None) {
        ids = as_ids(ids_o, "ids", &scalar);
        if (!ids || check_same_count(ids, n) < 0) goto done;
    }
    if (tags_o != Py_None && tags_csr_of_object(tags_o, n, "tags", &csr) < 0) goto done;
    npy_intp nn = (npy_intp)n;
    out = PyArray_SimpleNew(1, &nn, NPY_INT64);
    if (!out) goto done;
    int st;
    Py_BEGIN_ALLOW_THREADS
    /* no tags: csr is {NULL, NULL}, which the _tagged form takes as plain add */
    st = avq_index_add_tagged(ix, (const float *)PyArray_DATA(vec), n,
                              ids ? (const int64_t *)PyArray_DATA(ids) : NULL, csr.offsets,
                              csr.tags, threads, (int64_t *)PyArray_DATA((PyArrayObject *)out));
    Py_END_ALLOW_THREADS
    if (st != AVQ_OK) {
        raise_status(st, NULL, 0);
        goto done;
    }
    result = out;
    out = NULL;
done:
    Py_XDECREF(vec);
    Py_XDECREF(ids);
    Py_XDECREF(out);
    tag_csr_free(&csr);
    index_release(self);
    return result;
}

PyDoc_STRVAR(Index_upsert_doc,
"upsert($self, /, ids, vectors, threads=0, *, tags=None)\n"
"--\n"
"\n"
"Insert or replace: the vectors of ids already in the index are replaced,\n"
"the others are added.  `ids` and `vectors` as for add() (ids required).\n"
"Returns how many ids were present (replaced).  All or nothing, GIL\n"
"released, raises as add().\n"
"\n"
"tags (forms as for add()): every row gets exactly these tags.  Without\n"
"tags, a replaced vector keeps the tags it had and an added one has none.");

static PyObject *Index_upsert(IndexObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"ids", "vectors", "threads", "tags", NULL};
    PyObject *ids_o, *vec_o, *threads_o = NULL, *tags_o = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|O$O:upsert", kwlist, &ids_o, &vec_o,
                                     &threads_o, &tags_o))
        return NULL;
    int threads;
    if (get_threads(threads_o, &threads) < 0) return NULL;
    avq_index *ix = index_acquire(self);
    if (!ix) return NULL;
    PyArrayObject *vec = NULL, *ids = NULL;
    PyObject *result = NULL;
    tag_csr csr = {NULL, NULL};
    size_t n, replaced = 0;
    int scalar;
    ids = as_ids(ids_o, "ids", &scalar);
    if (!ids) goto done;
    vec = as_rows(vec_o, avq_index_dim(ix), &n);
    if (!vec || check_same_count(ids, n) < 0) goto done;
    if (tags_o != Py_None && tags_csr_of_object(tags_o, n, "tags", &csr) < 0) goto done;
    int st;
    Py_BEGIN_ALLOW_THREADS
    /* no tags: csr is {NULL, NULL}, a plain upsert (replaced vectors keep
     * their tags) */
    st = avq_index_upsert_tagged(ix, (const float *)PyArray_DATA(vec), n,
                                 (const int64_t *)PyArray_DATA(ids), csr.offsets, csr.tags,
                                 threads, &replaced);
    Py_END_ALLOW_THREADS
    if (st != AVQ_OK) {
        raise_status(st, NULL, 0);
        goto done;
    }
    result = PyLong_FromSize_t(replaced);
done:
    Py_XDECREF(vec);
    Py_XDECREF(ids);
    tag_csr_free(&csr);
    index_release(self);
    return result;
}

PyDoc_STRVAR(Index_remove_doc,
"remove($self, ids, /)\n"
"--\n"
"\n"
"Remove the vectors with these ids (an int or an array-like of ints).  Ids\n"
"not in the index are not an error.  Returns how many were present.  No\n"
"search started after this returns finds them.  A leaf whose share of\n"
"dead slots passes the compaction threshold (0.5 by default, see\n"
"set_compact_threshold) is compacted at once.  The GIL is released.");

static PyObject *Index_remove(IndexObject *self, PyObject *arg) {
    avq_index *ix = index_acquire(self);
    if (!ix) return NULL;
    PyObject *result = NULL;
    int scalar;
    size_t removed = 0;
    PyArrayObject *ids = as_ids(arg, "ids", &scalar);
    if (!ids) goto done;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = avq_index_remove(ix, (const int64_t *)PyArray_DATA(ids), (size_t)PyArray_SIZE(ids),
                          &removed);
    Py_END_ALLOW_THREADS
    if (st != AVQ_OK) {
        raise_status(st, NULL, 0);
        goto done;
    }
    result = PyLong_FromSize_t(removed);
done:
    Py_XDECREF(ids);
    index_release(self);
    return result;
}

static int get_fraction(PyObject *o, const char *name, double *out) {
    if (PyBool_Check(o) || !(PyFloat_Check(o) || PyIndex_Check(o) || PyNumber_Check(o))) {
        PyErr_Format(PyExc_TypeError, "%s must be a number, got %.100s", name,
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    double d = PyFloat_AsDouble(o);
    if (d == -1.0 && PyErr_Occurred()) return -1;
    *out = d;
    return 0;
}

PyDoc_STRVAR(Index_compact_doc,
"compact($self, /, min_dead_fraction=0.0)\n"
"--\n"
"\n"
"Rewrite every leaf whose share of dead (removed) slots is at least\n"
"min_dead_fraction (0 = every leaf with any) without them, reclaiming\n"
"their memory.  Returns the number of leaves rewritten.  The GIL is\n"
"released.  Raises ValueError for a fraction outside [0, 1].");

static PyObject *Index_compact(IndexObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"min_dead_fraction", NULL};
    PyObject *frac_o = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:compact", kwlist, &frac_o)) return NULL;
    double frac = 0.0;
    if (frac_o && get_fraction(frac_o, "min_dead_fraction", &frac) < 0) return NULL;
    avq_index *ix = index_acquire(self);
    if (!ix) return NULL;
    size_t compacted = 0;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = avq_index_compact(ix, frac, &compacted);
    Py_END_ALLOW_THREADS
    index_release(self);
    if (st != AVQ_OK) return raise_status(st, NULL, 0);
    return PyLong_FromSize_t(compacted);
}

PyDoc_STRVAR(Index_set_compact_threshold_doc,
"set_compact_threshold($self, fraction, /)\n"
"--\n"
"\n"
"The dead share at which remove() compacts a leaf by itself: in (0, 1], or\n"
"0 to turn automatic compaction off.  Default 0.5.");

static PyObject *Index_set_compact_threshold(IndexObject *self, PyObject *arg) {
    double frac;
    if (get_fraction(arg, "fraction", &frac) < 0) return NULL;
    avq_index *ix = index_acquire(self);
    if (!ix) return NULL;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = avq_index_set_compact_threshold(ix, frac);
    Py_END_ALLOW_THREADS
    index_release(self);
    if (st != AVQ_OK) return raise_status(st, NULL, 0);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(Index_get_doc,
"get($self, ids, /)\n"
"--\n"
"\n"
"The stored vectors of these ids: a float32 array of shape (n, dim), or\n"
"(dim,) for a single int id.  They are the vectors the index keeps for\n"
"re-ranking: exact with reorder='float' (normalised for cosine),\n"
"rounded with 'float16', dequantized with 'int8'.  Raises ValueError if an id is not in the index\n"
"(the message names it), avq.Error for an index built with\n"
"reorder='none' (it keeps no vectors).  The GIL is released.");

static PyObject *Index_get(IndexObject *self, PyObject *arg) {
    avq_index *ix = index_acquire(self);
    if (!ix) return NULL;
    PyObject *out = NULL, *result = NULL;
    int scalar;
    PyArrayObject *ids = as_ids(arg, "ids", &scalar);
    if (!ids) goto done;
    size_t n = (size_t)PyArray_SIZE(ids);
    npy_intp shape[2] = {(npy_intp)n, (npy_intp)avq_index_dim(ix)};
    out = scalar ? PyArray_SimpleNew(1, shape + 1, NPY_FLOAT32)
                 : PyArray_SimpleNew(2, shape, NPY_FLOAT32);
    if (!out) goto done;
    if (n > 0) {
        int st;
        Py_BEGIN_ALLOW_THREADS
        st = avq_index_get(ix, (const int64_t *)PyArray_DATA(ids), n,
                           (float *)PyArray_DATA((PyArrayObject *)out));
        Py_END_ALLOW_THREADS
        if (st != AVQ_OK) {
            raise_status(st, NULL, 0);
            goto done;
        }
    }
    result = out;
    out = NULL;
done:
    Py_XDECREF(ids);
    Py_XDECREF(out);
    index_release(self);
    return result;
}

PyDoc_STRVAR(Index_stats_doc,
"stats($self, /)\n"
"--\n"
"\n"
"What the index holds and how its leaves have drifted from training, as a\n"
"dict: live (searchable vectors, = len(index)), dead (removed slots not\n"
"yet compacted away), leaves, empty_leaves, min_leaf / max_leaf (live\n"
"vectors of the smallest / largest leaf), mean_leaf, leaf_cv (standard\n"
"deviation / mean of the leaf sizes: 0 = even; it grows as added data\n"
"drifts from the training sample -- retrain() is the remedy),\n"
"max_leaf_dead (largest dead share of a leaf), memory_bytes (= nbytes),\n"
"next_id (the id the next automatic add uses), tagged (live vectors with\n"
"at least one tag), tag_postings ((vector, tag) pairs over live vectors),\n"
"distinct_tags (tags carried by at least one live vector), spilled (live\n"
"second copies of an index built with spill=True: = live when every vector\n"
"has one; 0 otherwise.  The leaf sizes count every copy).");

static PyObject *Index_stats(IndexObject *self, PyObject *unused) {
    avq_index *ix = index_acquire(self);
    if (!ix) return NULL;
    avq_index_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = avq_index_get_stats(ix, &s);
    Py_END_ALLOW_THREADS
    index_release(self);
    if (st != AVQ_OK) return raise_status(st, NULL, 0);
    return Py_BuildValue("{s:n,s:n,s:n,s:n,s:n,s:n,s:d,s:d,s:d,s:n,s:L,s:n,s:n,s:n,s:n}", "live",
                         (Py_ssize_t)s.live, "dead", (Py_ssize_t)s.dead, "leaves",
                         (Py_ssize_t)s.leaves, "empty_leaves", (Py_ssize_t)s.empty_leaves,
                         "min_leaf", (Py_ssize_t)s.min_leaf, "max_leaf", (Py_ssize_t)s.max_leaf,
                         "mean_leaf", s.mean_leaf, "leaf_cv", s.leaf_cv, "max_leaf_dead",
                         s.max_leaf_dead, "memory_bytes", (Py_ssize_t)s.memory_bytes, "next_id",
                         (long long)s.next_id, "tagged", (Py_ssize_t)s.tagged, "tag_postings",
                         (Py_ssize_t)s.tag_postings, "distinct_tags",
                         (Py_ssize_t)s.distinct_tags, "spilled", (Py_ssize_t)s.spilled);
}

/* --- tags of stored vectors ---------------------------------------------- */

PyDoc_STRVAR(Index_set_tags_doc,
"set_tags($self, ids, tags, /)\n"
"--\n"
"\n"
"Replace the tags of vectors already in the index (their vectors stay):\n"
"`ids` an int or array-like of distinct ids, `tags` one entry per id in\n"
"any form add() takes (for a single int id: one list of tags).  This is how\n"
"to tag an index made by Index.build (ids 0..n-1; or pass tags= to build).\n"
"All or nothing; the GIL is released.  Raises ValueError (an id not\n"
"present -- named --, an id twice, a tag out of range, too many tags).");

static PyObject *Index_set_tags(IndexObject *self, PyObject *args) {
    PyObject *ids_o, *tags_o;
    if (!PyArg_ParseTuple(args, "OO:set_tags", &ids_o, &tags_o)) return NULL;
    avq_index *ix = index_acquire(self);
    if (!ix) return NULL;
    PyObject *result = NULL, *wrapped = NULL;
    tag_csr csr = {NULL, NULL};
    int scalar;
    PyArrayObject *ids = as_ids(ids_o, "ids", &scalar);
    if (!ids) goto done;
    size_t n = (size_t)PyArray_SIZE(ids);
    if (scalar) { /* one id: tags is its one list */
        wrapped = PyList_New(1);
        if (!wrapped) goto done;
        PyList_SET_ITEM(wrapped, 0, Py_NewRef(tags_o));
        tags_o = wrapped;
    }
    if (tags_csr_of_object(tags_o, n, "tags", &csr) < 0) goto done;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = avq_index_set_tags(ix, (const int64_t *)PyArray_DATA(ids), n, csr.offsets, csr.tags);
    Py_END_ALLOW_THREADS
    if (st != AVQ_OK) {
        raise_status(st, NULL, 0);
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(ids);
    Py_XDECREF(wrapped);
    tag_csr_free(&csr);
    index_release(self);
    return result;
}

PyDoc_STRVAR(Index_get_tags_doc,
"get_tags($self, id, /)\n"
"--\n"
"\n"
"The tags of vector `id` as a list of ints, ascending and distinct ([] for\n"
"none).  Raises ValueError if the id is not in the index.");

/* An id given as a Python int: 0 with *out set; 1 when it is beyond int64
 * (no vector can have it; nothing raised); -1 with TypeError for a
 * non-int (bool included). */
static int id_from_object(PyObject *o, int64_t *out) {
    if (PyBool_Check(o) || !PyIndex_Check(o)) {
        PyErr_Format(PyExc_TypeError, "an id must be an int, got %.100s", Py_TYPE(o)->tp_name);
        return -1;
    }
    PyObject *as_int = PyNumber_Index(o);
    if (!as_int) return -1;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(as_int, &overflow);
    Py_DECREF(as_int);
    if (v == -1 && !overflow && PyErr_Occurred()) return -1;
    if (overflow) return 1;
    *out = (int64_t)v;
    return 0;
}

/* The same, raising ValueError for an id beyond int64. */
static int get_one_id(PyObject *o, int64_t *out) {
    int r = id_from_object(o, out);
    if (r == 1) {
        PyErr_SetString(PyExc_ValueError, "id is out of range (ids are int64)");
        return -1;
    }
    return r;
}

static PyObject *Index_get_tags(IndexObject *self, PyObject *arg) {
    int64_t id;
    if (get_one_id(arg, &id) < 0) return NULL;
    avq_index *ix = index_acquire(self);
    if (!ix) return NULL;
    uint32_t small[64], *buf = small;
    size_t cap = sizeof small / sizeof small[0], count = 0;
    PyObject *result = NULL;
    for (;;) {
        int st;
        Py_BEGIN_ALLOW_THREADS
        st = avq_index_get_tags(ix, id, buf, cap, &count);
        Py_END_ALLOW_THREADS
        if (st != AVQ_OK) {
            raise_status(st, NULL, 0);
            goto done;
        }
        if (count <= cap) break;
        /* more than fit (or a writer added some meanwhile): grow and ask again */
        if (buf != small) PyMem_Free(buf);
        cap = count;
        buf = PyMem_Malloc(cap * sizeof *buf);
        if (!buf) {
            PyErr_NoMemory();
            goto done;
        }
    }
    result = PyList_New((Py_ssize_t)count);
    for (size_t i = 0; result && i < count; i++) {
        PyObject *t = PyLong_FromUnsignedLong(buf[i]);
        if (!t) Py_CLEAR(result);
        else PyList_SET_ITEM(result, (Py_ssize_t)i, t);
    }
done:
    if (buf != small) PyMem_Free(buf);
    index_release(self);
    return result;
}

PyDoc_STRVAR(Index_tag_count_doc,
"tag_count($self, tag, /)\n"
"--\n"
"\n"
"How many live vectors carry `tag` (an int in [0, 2**32)).");

static PyObject *Index_tag_count(IndexObject *self, PyObject *arg) {
    uint32_t tag;
    if (tag_of_object(arg, "tag_count", SIZE_MAX, &tag) < 0) return NULL;
    avq_index *ix = index_acquire(self);
    if (!ix) return NULL;
    size_t c;
    Py_BEGIN_ALLOW_THREADS
    c = avq_index_tag_count(ix, tag);
    Py_END_ALLOW_THREADS
    index_release(self);
    return PyLong_FromSize_t(c);
}

/* --- len(), `in` ---------------------------------------------------------- */

static Py_ssize_t Index_len(IndexObject *self) {
    avq_index *ix = index_acquire(self);
    if (!ix) return -1;
    size_t n = avq_index_size(ix);
    index_release(self);
    return (Py_ssize_t)n;
}

static int Index_contains(IndexObject *self, PyObject *key) {
    int64_t id;
    int r = id_from_object(key, &id);
    if (r != 0) return r < 0 ? -1 : 0; /* beyond int64: not in any index */
    avq_index *ix = index_acquire(self);
    if (!ix) return -1;
    int found = 0;
    /* the library takes the writers' lock (and builds its id map on first
     * use): never wait for a long add() with the GIL held */
    Py_BEGIN_ALLOW_THREADS
    found = avq_index_contains(ix, id);
    Py_END_ALLOW_THREADS
    index_release(self);
    return found ? 1 : 0;
}

static PySequenceMethods Index_as_sequence = {
    .sq_length = (lenfunc)Index_len,
    .sq_contains = (objobjproc)Index_contains,
};

/* --- bytes, pickling ------------------------------------------------------ */

PyDoc_STRVAR(Index_to_bytes_doc,
"to_bytes($self, /)\n"
"--\n"
"\n"
"The index as bytes: exactly what save() writes to a file (quantizer,\n"
"leaves with their dead slots, ids, the next automatic id), for a\n"
"database, a network or pickle.  Index.from_bytes restores it.  Waits for a\n"
"running writer; the GIL is released.");

static PyObject *Index_to_bytes(IndexObject *self, PyObject *unused) {
    avq_index *ix = index_acquire(self);
    if (!ix) return NULL;
    void *buf = NULL;
    size_t size = 0;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = avq_index_save_bytes(ix, &buf, &size);
    Py_END_ALLOW_THREADS
    index_release(self);
    if (st != AVQ_OK) return raise_status(st, NULL, 0);
    PyObject *r = size <= PY_SSIZE_T_MAX ? PyBytes_FromStringAndSize(buf, (Py_ssize_t)size)
                                         : PyErr_NoMemory();
    avq_free(buf);
    return r;
}

PyDoc_STRVAR(Index_from_bytes_doc,
"from_bytes($type, data, /)\n"
"--\n"
"\n"
"An index from bytes written by to_bytes() (or read from an index file):\n"
"any bytes-like object.  The data are copied and verified as by\n"
"avq.load(path): avq.FormatError for truncated, corrupt or foreign data.\n"
"The GIL is released.");

static PyObject *Index_from_bytes(PyObject *cls, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "from_bytes() needs a bytes-like object, got %.100s",
                         Py_TYPE(arg)->tp_name);
        }
        return NULL;
    }
    avq_index *ix = NULL;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = avq_index_load_bytes(view.buf, (size_t)view.len, &ix);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (st != AVQ_OK) return raise_status(st, NULL, 0);
    return index_wrap(ix, 0);
}

static PyObject *Index_reduce(IndexObject *self, PyObject *unused) {
    PyObject *data = Index_to_bytes(self, NULL);
    if (!data) return NULL;
    PyObject *ctor = PyObject_GetAttrString((PyObject *)&IndexType, "from_bytes");
    if (!ctor) {
        Py_DECREF(data);
        return NULL;
    }
    return Py_BuildValue("(N(N))", ctor, data);
}

/* --- the quantizer, creating and retraining ------------------------------ */

static PyObject *quantizer_wrap(avq_quantizer *owned, avq_index *holder);

PyDoc_STRVAR(Index_create_doc,
"create($type, quantizer, /)\n"
"--\n"
"\n"
"A new empty index that encodes with `quantizer` (an avq.Quantizer, from\n"
"Quantizer.train, Quantizer.load or another index's .quantizer).  Fill it\n"
"with add().  Indexes made from one quantizer score vectors the same way,\n"
"so their results merge exactly (shards).  Index(quantizer) is the same.");

static PyObject *index_create_from(PyObject *arg) {
    if (!PyObject_TypeCheck(arg, &QuantizerType)) {
        PyErr_Format(PyExc_TypeError, "quantizer must be an avq.Quantizer, got %.100s",
                     Py_TYPE(arg)->tp_name);
        return NULL;
    }
    QuantizerObject *qo = (QuantizerObject *)arg;
    avq_index *ix = NULL;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = avq_index_create(qo->q, &ix);
    Py_END_ALLOW_THREADS
    if (st != AVQ_OK) return raise_status(st, NULL, 0);
    return index_wrap(ix, 0);
}

static PyObject *Index_create(PyObject *cls, PyObject *arg) {
    return index_create_from(arg);
}

static PyObject *Index_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"quantizer", NULL};
    PyObject *q;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O:Index", kwlist, &q)) return NULL;
    return index_create_from(q);
}

static PyObject *Index_get_quantizer(IndexObject *self, void *c) {
    avq_index *ix = index_acquire(self);
    if (!ix) return NULL;
    avq_index *holder = NULL;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = avq_index_create(avq_index_quantizer(ix), &holder);
    Py_END_ALLOW_THREADS
    index_release(self);
    if (st != AVQ_OK) return raise_status(st, NULL, 0);
    return quantizer_wrap(NULL, holder);
}

PyDoc_STRVAR(Index_retrain_doc,
"retrain($self, /, *, num_leaves=..., training_sample=..., kmeans_iterations=...,\n"
"        spherical=..., avq_center_eta=..., dims_per_block=..., bits=...,\n"
"        threshold=..., eta=..., reorder=..., brute_force_below=..., threads=...,\n"
"        seed=..., progress=None, threshold_kind=..., leaf_spread_z=...,\n"
"        weight=..., int8_aware=..., spill=..., spill_lambda=...)\n"
"--\n"
"\n"
"A new index over the live vectors of this one (as get() returns them),\n"
"with a quantizer trained afresh and the same ids: the remedy for drift\n"
"(stats()['leaf_cv'] grown, a distribution that moved).  The keywords are\n"
"those of Index.build (not data or metric); a keyword left out keeps the\n"
"value this index was built with (build_params; so spill_lambda alone\n"
"re-weights a spilled index, spill=False stops spilling).  Its cost is a\n"
"full build; this index is not changed.  GIL released, progress and Ctrl-C as\n"
"for Index.build.  Raises as Index.build, avq.Error for reorder='none'.");

static PyObject *Index_retrain(IndexObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"num_leaves", "training_sample", "kmeans_iterations", "spherical",
                             "avq_center_eta", "dims_per_block", "bits", "threshold", "eta",
                             "reorder", "brute_force_below", "threads", "seed", "progress",
                             "threshold_kind", "leaf_spread_z", "weight", "int8_aware", "spill",
                             "spill_lambda", NULL};
    build_kw kw;
    memset(&kw, 0, sizeof kw);
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|$OOOOOOOOOOOOOOOOOOOO:retrain", kwlist,
                                     &kw.num_leaves, &kw.training_sample, &kw.kmeans_iterations,
                                     &kw.spherical, &kw.avq_center_eta, &kw.dims_per_block,
                                     &kw.bits, &kw.threshold, &kw.eta, &kw.reorder,
                                     &kw.brute_force_below, &kw.threads, &kw.seed, &kw.progress,
                                     &kw.threshold_kind, &kw.leaf_spread_z, &kw.weight, &kw.int8_aware,
                                     &kw.spill, &kw.spill_lambda))
        return NULL;
    avq_index *ix = index_acquire(self);
    if (!ix) return NULL;
    avq_build_params p;
    avq_build_params_init(&p, avq_index_metric(ix));
    avq_index_build_params(ix, &p);
    avq_index *out = NULL;
    if (apply_build_kw(&kw, &p) == 0)
        out = run_training(TRAIN_RETRAIN, NULL, ix, &p, kw.progress);
    index_release(self);
    return out ? index_wrap(out, 0) : NULL;
}

/* --- benchmarking aid ---------------------------------------------------- */

PyDoc_STRVAR(Index_c_search_loop_doc,
"_c_search_loop($self, queries, k, leaves_to_search, pre_reorder, cpu_time, /)\n"
"--\n"
"\n"
"Benchmarking aid (python/bench_overhead.py), not API: call the C function\n"
"avq_index_search once per row of `queries` (a C-contiguous float32 (nq,\n"
"dim) array), results into one reused buffer, GIL released, and return the\n"
"seconds per query -- thread CPU time if `cpu_time`, else wall time.  The\n"
"in-process C baseline the Python loop is compared with.");

static PyObject *Index_c_search_loop(IndexObject *self, PyObject *args) {
    PyArrayObject *q;
    Py_ssize_t k, leaves, pre;
    int cpu;
    if (!PyArg_ParseTuple(args, "O!nnnp:_c_search_loop", &PyArray_Type, &q, &k, &leaves, &pre,
                          &cpu))
        return NULL;
    if (PyArray_TYPE(q) != NPY_FLOAT32 || !PyArray_ISCARRAY_RO(q) || PyArray_NDIM(q) != 2 ||
        PyArray_DIM(q, 0) == 0 || k < 1 || k > MAX_SEARCH_K || leaves < 0 || pre < 0) {
        PyErr_SetString(PyExc_ValueError, "_c_search_loop: bad arguments");
        return NULL;
    }
    avq_index *ix = index_acquire(self);
    if (!ix) return NULL;
    size_t dim = avq_index_dim(ix), nq = (size_t)PyArray_DIM(q, 0);
    if ((size_t)PyArray_DIM(q, 1) != dim) {
        index_release(self);
        PyErr_SetString(PyExc_ValueError, "_c_search_loop: dimension mismatch");
        return NULL;
    }
    avq_search_params sp;
    avq_search_params_init(&sp);
    sp.k = (size_t)k;
    sp.leaves_to_search = (size_t)leaves;
    sp.pre_reorder = (size_t)pre;
    int64_t *ids = PyMem_RawMalloc((size_t)k * sizeof *ids);
    float *scores = PyMem_RawMalloc((size_t)k * sizeof *scores);
    int st = AVQ_ERR_NOMEM;
    double secs = 0.0;
    if (ids && scores) {
        const float *qd = PyArray_DATA(q);
        clockid_t clock = cpu ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC;
        Py_BEGIN_ALLOW_THREADS
        struct timespec t0, t1;
        clock_gettime(clock, &t0);
        st = AVQ_OK;
        for (size_t i = 0; i < nq && st == AVQ_OK; i++)
            st = avq_index_search(ix, qd + i * dim, &sp, ids, scores);
        clock_gettime(clock, &t1);
        secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        Py_END_ALLOW_THREADS
    }
    PyMem_RawFree(ids);
    PyMem_RawFree(scores);
    index_release(self);
    if (st != AVQ_OK) return st == AVQ_ERR_NOMEM && !(ids && scores) ? PyErr_NoMemory()
                                                                     : raise_status(st, NULL, 0);
    return PyFloat_FromDouble(secs / (double)nq);
}

/* --- save / close / context manager ------------------------------------- */

PyDoc_STRVAR(Index_save_doc,
"save($self, path, /)\n"
"--\n"
"\n"
"Write the index to one file (format: doc/FORMAT.md).  The file is written\n"
"beside `path`, flushed and renamed over it, so a crash never leaves a\n"
"half-written index at `path`.  The GIL is released.  Raises OSError (with\n"
"the errno subclass, e.g. FileNotFoundError for a missing directory).");

static PyObject *Index_save(IndexObject *self, PyObject *arg) {
    PyObject *path = NULL;
    if (get_path(arg, &path) < 0) return NULL;
    avq_index *ix = index_acquire(self);
    if (!ix) {
        Py_DECREF(path);
        return NULL;
    }
    const char *p = PyBytes_AS_STRING(path);
    int st, saved_errno;
    Py_BEGIN_ALLOW_THREADS
    st = avq_index_save(ix, p);
    saved_errno = errno;
    Py_END_ALLOW_THREADS
    index_release(self);
    PyObject *r = st == AVQ_OK ? Py_NewRef(Py_None) : raise_status(st, p, saved_errno);
    Py_DECREF(path);
    return r;
}

PyDoc_STRVAR(Index_close_doc,
"close($self, /)\n"
"--\n"
"\n"
"Release the index's memory (or unmap its file).  Afterwards every method\n"
"and property except `closed` raises ValueError.  Calling close() again is\n"
"a no-op.  close() never blocks: searches already running in other threads\n"
"finish normally, and the memory is released when the last of them\n"
"returns.");

static PyObject *Index_close(IndexObject *self, PyObject *unused) {
    if (!self->closed) {
        self->closed = 1;
        if (self->users == 0 && self->index) {
            avq_index *ix = self->index;
            self->index = NULL;
            free_index_nogil(ix);
        }
    }
    Py_RETURN_NONE;
}

static PyObject *Index_enter(IndexObject *self, PyObject *unused) {
    if (self->closed) {
        PyErr_SetString(PyExc_ValueError, "operation on a closed avq.Index");
        return NULL;
    }
    return Py_NewRef(self);
}

static PyObject *Index_exit(IndexObject *self, PyObject *args) {
    return Index_close(self, NULL);
}

/* --- properties ---------------------------------------------------------- */

static avq_index *live(IndexObject *self) {
    if (self->closed || !self->index) {
        PyErr_SetString(PyExc_ValueError, "operation on a closed avq.Index");
        return NULL;
    }
    return self->index;
}

static PyObject *Index_get_size(IndexObject *self, void *c) {
    avq_index *ix = live(self);
    return ix ? PyLong_FromSize_t(avq_index_size(ix)) : NULL;
}

static PyObject *Index_get_dim(IndexObject *self, void *c) {
    avq_index *ix = live(self);
    return ix ? PyLong_FromSize_t(avq_index_dim(ix)) : NULL;
}

static PyObject *Index_get_metric(IndexObject *self, void *c) {
    avq_index *ix = live(self);
    return ix ? PyUnicode_FromString(avq_metric_name(avq_index_metric(ix))) : NULL;
}

static PyObject *Index_get_nbytes(IndexObject *self, void *c) {
    avq_index *ix = index_acquire(self);
    if (!ix) return NULL;
    size_t bytes;
    Py_BEGIN_ALLOW_THREADS /* walks the leaves and briefly takes the writers' lock */
    bytes = avq_index_memory_bytes(ix);
    Py_END_ALLOW_THREADS
    index_release(self);
    return PyLong_FromSize_t(bytes);
}

static PyObject *Index_get_num_leaves(IndexObject *self, void *c) {
    avq_index *ix = live(self);
    return ix ? PyLong_FromSize_t(avq_index_num_leaves(ix)) : NULL;
}

static PyObject *Index_get_isa(IndexObject *self, void *c) {
    avq_index *ix = live(self);
    return ix ? PyUnicode_FromString(avq_isa()) : NULL;
}

static PyObject *Index_get_closed(IndexObject *self, void *c) {
    return PyBool_FromLong(self->closed);
}

static PyObject *Index_get_mmap(IndexObject *self, void *c) {
    avq_index *ix = live(self);
    return ix ? PyBool_FromLong(self->mapped) : NULL;
}

static PyObject *Index_get_default_search_params(IndexObject *self, void *c) {
    avq_index *ix = live(self);
    if (!ix) return NULL;
    avq_search_params sp;
    avq_search_params_init(&sp);
    avq_index_default_search_params(ix, &sp);
    return Py_BuildValue("{s:n,s:n,s:n}", "k", (Py_ssize_t)sp.k, "leaves_to_search",
                         (Py_ssize_t)sp.leaves_to_search, "pre_reorder",
                         (Py_ssize_t)sp.pre_reorder);
}

static PyObject *Index_get_build_params(IndexObject *self, void *c) {
    avq_index *ix = live(self);
    if (!ix) return NULL;
    avq_build_params p;
    avq_build_params_init(&p, AVQ_METRIC_DOT);
    avq_index_build_params(ix, &p);
    const char *reorder = p.reorder == AVQ_REORDER_FLOAT     ? "float"
                          : p.reorder == AVQ_REORDER_FLOAT16 ? "float16"
                          : p.reorder == AVQ_REORDER_INT8    ? "int8"
                                                             : "none";
    /* resolved: what the build really used, not 0 = "auto" */
    int spherical_on = p.spherical < 0 ? p.metric != AVQ_METRIC_L2 : p.spherical;
    PyObject *spherical = spherical_on ? Py_True : Py_False;
    p.num_leaves = avq_index_num_leaves(ix);
    if (p.training_sample == 0) p.training_sample = AVQ_DEFAULT_TRAINING_SAMPLE;
    if (p.threads == 0) p.threads = avq_default_threads();
    PyObject *threshold = isnan(p.threshold) || p.metric == AVQ_METRIC_L2
                              ? Py_NewRef(Py_None)
                              : PyFloat_FromDouble((double)p.threshold);
    if (!threshold) return NULL;
    /* the score weight as Index.build takes it: 'step' or 'pow:3' (issue 19) */
    static const char *const weight_kinds[] = {"step", "pow", "exp", "logistic"};
    char weight[48];
    if (p.weight == AVQ_WEIGHT_STEP || (unsigned)p.weight > AVQ_WEIGHT_LOGISTIC)
        snprintf(weight, sizeof weight, "step");
    else
        snprintf(weight, sizeof weight, "%s:%g", weight_kinds[p.weight], (double)p.weight_param);
    /* spill is resolved by the library (0 for an index of one leaf); its
     * lambda only means something when the index spills */
    PyObject *spill_lambda = p.spill ? PyFloat_FromDouble((double)p.spill_lambda)
                                     : Py_NewRef(Py_None);
    if (!spill_lambda) {
        Py_DECREF(threshold);
        return NULL;
    }
    PyObject *d = Py_BuildValue(
        "{s:s,s:n,s:n,s:i,s:O,s:d,s:i,s:i,s:N,s:d,s:s,s:n,s:i,s:K,s:d,s:s,s:O,s:i,s:N}", "metric",
        avq_metric_name(p.metric), "num_leaves", (Py_ssize_t)p.num_leaves, "training_sample",
        (Py_ssize_t)p.training_sample, "kmeans_iterations", p.kmeans_iterations, "spherical",
        spherical, "avq_center_eta", (double)p.avq_center_eta, "dims_per_block",
        p.dims_per_block, "bits", p.bits, "threshold", threshold, "eta", (double)p.eta,
        "reorder", reorder, "brute_force_below", (Py_ssize_t)p.brute_force_below, "threads",
        p.threads, "seed", (unsigned long long)p.seed, "leaf_spread_z", (double)p.leaf_spread_z, "weight", weight, "int8_aware",
        p.int8_aware ? Py_True : Py_False, "spill", p.spill, "spill_lambda", spill_lambda);
    return d;
}

static PyObject *Index_repr(IndexObject *self) {
    if (self->closed || !self->index) return PyUnicode_FromString("<avq.Index (closed)>");
    avq_index *ix = self->index;
    return PyUnicode_FromFormat("<avq.Index size=%zu dim=%zu metric=%s num_leaves=%zu%s>",
                                avq_index_size(ix), avq_index_dim(ix),
                                avq_metric_name(avq_index_metric(ix)), avq_index_num_leaves(ix),
                                self->mapped ? " mmap" : "");
}

PyDoc_STRVAR(Index_tune_doc,
"tune($self, /, queries, target_recall=0.9, gt=None, *, k=10, max_queries=2000,\n"
"     seed=None, runs=3, threads=None, progress=None)\n"
"--\n"
"\n"
"The fastest (leaves_to_search, pre_reorder) reaching recall@k >=\n"
"target_recall on `queries` (an (nq, dim) array-like like the queries the\n"
"index will serve), as `avq tune` finds it (avq_index_tune in include/avq.h).\n"
"\n"
"gt: the true neighbours' ids, (nq, >= k) ints, best first (exact_search\n"
"    gives them); None = computed exactly from the index's own vectors\n"
"    (needs reorder='float', the default).\n"
"max_queries: the sample size (None or 0 = all queries): rows spread evenly\n"
"    over the whole array -- not its first rows, since query sets are often\n"
"    sorted -- or drawn at random when `seed` is given; even sample members\n"
"    tune, odd ones check.\n"
"runs: timed passes per candidate (best kept); threads: workers of the\n"
"    recall searches (timing is one query at a time on this thread).\n"
"\n"
"Returns a dict: leaves_to_search, pre_reorder (pass them to search), recall\n"
"(on the tuning half), recall_held_out (on the other half: what to expect on\n"
"new queries), qps (one query at a time, one thread, CPU time), reached\n"
"(False: the target is out of reach; the choice is then every leaf with\n"
"the best pre_reorder tried), exact (an exact-tier index: nothing to tune),\n"
"tune_queries, held_out_queries, and candidates (a list of dicts\n"
"leaves_to_search, pre_reorder, recall, qps: one per pre_reorder tried;\n"
"leaves_to_search None where unreachable).\n"
"\n"
"The GIL is released; Ctrl-C cancels (KeyboardInterrupt).  Raises\n"
"ValueError (shapes, k, target, a closed index), TypeError, avq.Error\n"
"(gt=None on an index without float vectors).");

static PyObject *Index_tune(IndexObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"queries", "target_recall", "gt", "k", "max_queries", "seed",
                             "runs", "threads", "progress", NULL};
    PyObject *queries_o, *target_o = NULL, *gt_o = Py_None, *k_o = NULL, *maxq_o = NULL,
             *seed_o = Py_None, *runs_o = NULL, *threads_o = NULL, *progress = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|OO$OOOOOO:tune", kwlist, &queries_o,
                                     &target_o, &gt_o, &k_o, &maxq_o, &seed_o, &runs_o,
                                     &threads_o, &progress))
        return NULL;
    avq_tune_params tp;
    avq_tune_params_init(&tp);
    if (target_o) {
        double t = PyFloat_AsDouble(target_o);
        if (t == -1.0 && PyErr_Occurred()) return NULL;
        if (!(t > 0.0 && t <= 1.0)) {
            PyErr_Format(PyExc_ValueError, "target_recall must be in (0, 1], got %g", t);
            return NULL;
        }
        tp.target_recall = t;
    }
    if (get_k(k_o, &tp.k) < 0 || get_threads(threads_o, &tp.threads) < 0 ||
        check_callback(progress) < 0)
        return NULL;
    if (maxq_o && maxq_o != Py_None && get_size(maxq_o, "max_queries", &tp.max_queries) < 0)
        return NULL;
    if (maxq_o == Py_None) tp.max_queries = 0;
    if (runs_o && get_int_range(runs_o, "runs", 1, 100, &tp.runs) < 0) return NULL;
    if (seed_o != Py_None) {
        size_t seed;
        if (get_size(seed_o, "seed", &seed) < 0) return NULL;
        if (seed == 0) {
            PyErr_SetString(PyExc_ValueError, "seed must be >= 1 (None = evenly spaced rows)");
            return NULL;
        }
        tp.seed = seed;
    }
    avq_index *ix = index_acquire(self);
    if (!ix) return NULL;
    PyObject *result = NULL;
    PyArrayObject *q = NULL, *gt = NULL;
    size_t dim = avq_index_dim(ix), nq = 0, gt_cols = 0;
    q = as_float32(queries_o, "queries");
    if (!q) goto done;
    if (PyArray_NDIM(q) != 2 || (size_t)PyArray_DIM(q, 1) != dim) {
        PyErr_Format(PyExc_ValueError, "queries must be of shape (nq, %zu)", dim);
        goto done;
    }
    nq = (size_t)PyArray_DIM(q, 0);
    if (gt_o != Py_None) {
        PyArrayObject *g = (PyArrayObject *)PyArray_FROMANY(gt_o, NPY_NOTYPE, 0, 0, 0);
        if (!g) goto done;
        char kind = PyArray_DESCR(g)->kind;
        if (kind != 'i' && kind != 'u') {
            PyErr_Format(PyExc_TypeError, "gt must be integer ids, got dtype %S",
                         (PyObject *)PyArray_DESCR(g));
            Py_DECREF(g);
            goto done;
        }
        gt = (PyArrayObject *)PyArray_FROMANY((PyObject *)g, NPY_INT64, 2, 2,
                                              NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED |
                                                  NPY_ARRAY_FORCECAST);
        Py_DECREF(g);
        if (!gt) {
            if (PyErr_ExceptionMatches(PyExc_ValueError)) {
                PyErr_Clear();
                PyErr_SetString(PyExc_ValueError, "gt must be 2-D: (nq, >= k) ids");
            }
            goto done;
        }
        if ((size_t)PyArray_DIM(gt, 0) != nq) {
            PyErr_Format(PyExc_ValueError, "gt has %zd rows for %zu queries", PyArray_DIM(gt, 0),
                         nq);
            goto done;
        }
        gt_cols = (size_t)PyArray_DIM(gt, 1);
    }
    progress_ctx ctx = {NULL, progress == Py_None ? NULL : progress, 0, 0.0, {0}};
    ctx.last_time = monotonic_seconds();
    tp.progress = progress_trampoline;
    tp.progress_user = &ctx;
    avq_tune_result r;
    ctx.ts = PyEval_SaveThread();
    int st = avq_index_tune(ix, (const float *)PyArray_DATA(q), nq,
                            gt ? (const int64_t *)PyArray_DATA(gt) : NULL, gt_cols, &tp, &r);
    PyEval_RestoreThread(ctx.ts);
    if (st != AVQ_OK || PyErr_Occurred()) {
        raise_status(st, NULL, 0);
        goto done;
    }
    PyObject *cands = PyList_New(0);
    if (!cands) goto done;
    for (size_t i = 0; i < r.num_candidates; i++) {
        const avq_tune_candidate *c = &r.candidates[i];
        PyObject *leaves = c->leaves_to_search ? PyLong_FromSize_t(c->leaves_to_search)
                                               : Py_NewRef(Py_None);
        PyObject *item = leaves ? Py_BuildValue("{s:N,s:n,s:d,s:d}", "leaves_to_search", leaves,
                                                "pre_reorder", (Py_ssize_t)c->pre_reorder,
                                                "recall", c->recall, "qps", c->qps)
                                : NULL;
        if (!item || PyList_Append(cands, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(cands);
            goto done;
        }
        Py_DECREF(item);
    }
    result = Py_BuildValue("{s:n,s:n,s:d,s:d,s:d,s:O,s:O,s:n,s:n,s:N}", "leaves_to_search",
                           (Py_ssize_t)r.leaves_to_search, "pre_reorder",
                           (Py_ssize_t)r.pre_reorder, "recall", r.recall_tune,
                           "recall_held_out", r.recall_check, "qps", r.qps, "reached",
                           r.reached ? Py_True : Py_False, "exact", r.exact ? Py_True : Py_False,
                           "tune_queries", (Py_ssize_t)r.tune_queries, "held_out_queries",
                           (Py_ssize_t)r.check_queries, "candidates", cands);
done:
    Py_XDECREF(q);
    Py_XDECREF(gt);
    index_release(self);
    return result;
}

static PyMethodDef Index_methods[] = {
    {"build", (PyCFunction)(void (*)(void))Index_build, METH_CLASS | METH_VARARGS | METH_KEYWORDS,
     Index_build_doc},
    {"search", (PyCFunction)(void (*)(void))Index_search, METH_FASTCALL | METH_KEYWORDS,
     Index_search_doc},
    {"search_batched", (PyCFunction)(void (*)(void))Index_search_batched,
     METH_FASTCALL | METH_KEYWORDS, Index_search_batched_doc},
    {"save", (PyCFunction)Index_save, METH_O, Index_save_doc},
    {"add", (PyCFunction)(void (*)(void))Index_add, METH_VARARGS | METH_KEYWORDS, Index_add_doc},
    {"upsert", (PyCFunction)(void (*)(void))Index_upsert, METH_VARARGS | METH_KEYWORDS,
     Index_upsert_doc},
    {"remove", (PyCFunction)Index_remove, METH_O, Index_remove_doc},
    {"compact", (PyCFunction)(void (*)(void))Index_compact, METH_VARARGS | METH_KEYWORDS,
     Index_compact_doc},
    {"set_compact_threshold", (PyCFunction)Index_set_compact_threshold, METH_O,
     Index_set_compact_threshold_doc},
    {"get", (PyCFunction)Index_get, METH_O, Index_get_doc},
    {"stats", (PyCFunction)Index_stats, METH_NOARGS, Index_stats_doc},
    {"set_tags", (PyCFunction)Index_set_tags, METH_VARARGS, Index_set_tags_doc},
    {"get_tags", (PyCFunction)Index_get_tags, METH_O, Index_get_tags_doc},
    {"tag_count", (PyCFunction)Index_tag_count, METH_O, Index_tag_count_doc},
    {"to_bytes", (PyCFunction)Index_to_bytes, METH_NOARGS, Index_to_bytes_doc},
    {"from_bytes", (PyCFunction)Index_from_bytes, METH_CLASS | METH_O, Index_from_bytes_doc},
    {"__reduce__", (PyCFunction)Index_reduce, METH_NOARGS,
     "__reduce__($self, /)\n--\n\nPickle support: the index as to_bytes()."},
    {"create", (PyCFunction)Index_create, METH_CLASS | METH_O, Index_create_doc},
    {"retrain", (PyCFunction)(void (*)(void))Index_retrain, METH_VARARGS | METH_KEYWORDS,
     Index_retrain_doc},
    {"tune", (PyCFunction)(void (*)(void))Index_tune, METH_VARARGS | METH_KEYWORDS,
     Index_tune_doc},
    {"_c_search_loop", (PyCFunction)Index_c_search_loop, METH_VARARGS, Index_c_search_loop_doc},
    {"close", (PyCFunction)Index_close, METH_NOARGS, Index_close_doc},
    {"__enter__", (PyCFunction)Index_enter, METH_NOARGS,
     "__enter__($self, /)\n--\n\nReturn self (raises ValueError if closed)."},
    {"__exit__", (PyCFunction)Index_exit, METH_VARARGS,
     "__exit__($self, /, *exc_info)\n--\n\nclose() the index."},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef Index_getset[] = {
    {"size", (getter)Index_get_size, NULL,
     "Number of live (searchable) vectors, = len(index) (int).", NULL},
    {"quantizer", (getter)Index_get_quantizer, NULL,
     "The quantizer the index encodes with (avq.Quantizer): avq.Index(index.quantizer)\n"
     "makes an empty shard that scores exactly like this index.",
     NULL},
    {"dim", (getter)Index_get_dim, NULL, "Dimension of the vectors (int).", NULL},
    {"metric", (getter)Index_get_metric, NULL,
     "'dot_product', 'squared_l2' or 'cosine' (str).", NULL},
    {"nbytes", (getter)Index_get_nbytes, NULL,
     "Bytes of memory the index holds: codes, centers, codebooks, re-ranking data\n"
     "and ids, excluding allocator overhead (int; = stats()['memory_bytes']).",
     NULL},
    {"num_leaves", (getter)Index_get_num_leaves, NULL,
     "Number of leaves (k-means partitions) the index really has (int).", NULL},
    {"isa", (getter)Index_get_isa, NULL,
     "SIMD kernel set the searches use: 'avx512', 'avx2' or 'scalar' (str).", NULL},
    {"closed", (getter)Index_get_closed, NULL, "True after close() (bool).", NULL},
    {"mmap", (getter)Index_get_mmap, NULL,
     "True when the index was loaded with mmap=True (bool).", NULL},
    {"default_search_params", (getter)Index_get_default_search_params, NULL,
     "The search settings used when an argument is None: dict with k,\n"
     "leaves_to_search, pre_reorder.",
     NULL},
    {"build_params", (getter)Index_get_build_params, NULL,
     "The parameters the index was built with (dict; keys as Index.build's),\n"
     "resolved: num_leaves is the number of leaves it has, training_sample the\n"
     "most rows sampled to train (all rows when there were fewer), threads the\n"
     "workers used (what threads=0 meant: avq.default_threads()), spherical a\n"
     "bool; threshold is None where it does not apply (squared_l2, or plain\n"
     "reconstruction loss); spill is the int 0 or 1 the index really has (0\n"
     "for one leaf or the exact tier, whatever was asked) and spill_lambda\n"
     "its loss weight, None when it does not spill.",
     NULL},
    {NULL, NULL, NULL, NULL, NULL}};

PyDoc_STRVAR(Index_doc,
"Index(quantizer)\n"
"--\n"
"\n"
"An avq index: a k-means partition, an anisotropic 4-bit product quantizer\n"
"with a SIMD fast scan, and exact re-ranking (include/avq.h).\n"
"\n"
"Create one with Index.build(data, metric, ...), avq.load(path),\n"
"Index.from_bytes(b) or pickle, or empty with Index(quantizer) /\n"
"Index.create(quantizer).  It is living: add(), upsert(), remove() and\n"
"compact() change it while any number of threads search it (the GIL is\n"
"released; concurrent writers are serialised inside the library).\n"
"len(index) is the number of live vectors, `id in index` tells whether\n"
"an id is present.  Release it with close() or a `with` block (it is also\n"
"released when garbage collected).");

static PyTypeObject IndexType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "avq.Index",
    .tp_basicsize = sizeof(IndexObject),
    .tp_dealloc = (destructor)Index_dealloc,
    .tp_repr = (reprfunc)Index_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = Index_doc,
    .tp_weaklistoffset = offsetof(IndexObject, weakrefs),
    .tp_methods = Index_methods,
    .tp_getset = Index_getset,
    .tp_as_sequence = &Index_as_sequence,
    .tp_new = Index_new,
};

/* ------------------------------------------------------------------------- */
/* The Quantizer type                                                        */
/* ------------------------------------------------------------------------- */

static PyObject *quantizer_wrap(avq_quantizer *owned, avq_index *holder) {
    QuantizerObject *self = PyObject_New(QuantizerObject, &QuantizerType);
    if (!self) {
        avq_quantizer_free(owned);
        free_index_nogil(holder);
        return NULL;
    }
    self->owned = owned;
    self->holder = holder;
    self->q = owned ? owned : avq_index_quantizer(holder);
    return (PyObject *)self;
}

static void Quantizer_dealloc(QuantizerObject *self) {
    avq_quantizer_free(self->owned);
    if (self->holder) free_index_nogil(self->holder);
    PyObject_Free(self);
}

PyDoc_STRVAR(Quantizer_train_doc,
"train($type, /, data, metric='dot_product', *, num_leaves=0,\n"
"      training_sample=0, kmeans_iterations=12, spherical=None,\n"
"      avq_center_eta=..., dims_per_block=2, bits=4, threshold=...,\n"
"      eta=0.0, reorder='float', brute_force_below=20000, threads=None,\n"
"      seed=42, progress=None, threshold_kind='auto', leaf_spread_z='auto',\n"
"      weight='step', int8_aware=False, spill=False, spill_lambda=1.0)\n"
"--\n"
"\n"
"Train a quantizer on the sample rows of `data` (not kept): the k-means\n"
"leaves, the PQ codebook and the int8 scales, exactly as Index.build\n"
"trains them, with the same keyword parameters and the same tiers (below\n"
"brute_force_below rows the quantizer is the exact tier: no codes).  Then\n"
"avq.Index(quantizer) makes empty indexes to add() vectors to.\n"
"\n"
"GIL released, progress and Ctrl-C as for Index.build; raises as\n"
"Index.build.");

static PyObject *Quantizer_train(PyObject *cls, PyObject *args, PyObject *kwargs) {
    avq_build_params p;
    build_kw kw;
    PyArrayObject *arr;
    if (parse_training_call(args, kwargs, "train", &p, &kw, &arr) < 0) return NULL;
    avq_quantizer *q = run_training(TRAIN_QUANTIZER, arr, NULL, &p, kw.progress);
    Py_DECREF(arr);
    return q ? quantizer_wrap(q, NULL) : NULL;
}

PyDoc_STRVAR(Quantizer_save_doc,
"save($self, path, /)\n"
"--\n"
"\n"
"Write the quantizer alone to a file (an index file with no vectors;\n"
"atomic like Index.save).  The GIL is released.  Raises OSError.");

static PyObject *Quantizer_save(QuantizerObject *self, PyObject *arg) {
    PyObject *path = NULL;
    if (get_path(arg, &path) < 0) return NULL;
    const char *p = PyBytes_AS_STRING(path);
    int st, saved_errno;
    Py_BEGIN_ALLOW_THREADS
    st = avq_quantizer_save(self->q, p);
    saved_errno = errno;
    Py_END_ALLOW_THREADS
    PyObject *r = st == AVQ_OK ? Py_NewRef(Py_None) : raise_status(st, p, saved_errno);
    Py_DECREF(path);
    return r;
}

PyDoc_STRVAR(Quantizer_load_doc,
"load($type, path, /)\n"
"--\n"
"\n"
"Load a quantizer written by Quantizer.save -- or the quantizer of any\n"
"index file (its vectors are ignored).  Checked like avq.load: raises\n"
"FileNotFoundError / OSError, avq.FormatError.  The GIL is released.");

static PyObject *Quantizer_load(PyObject *cls, PyObject *arg) {
    PyObject *path = NULL;
    if (get_path(arg, &path) < 0) return NULL;
    const char *p = PyBytes_AS_STRING(path);
    avq_quantizer *q = NULL;
    int st, saved_errno;
    Py_BEGIN_ALLOW_THREADS
    st = avq_quantizer_load(p, &q);
    saved_errno = errno;
    Py_END_ALLOW_THREADS
    PyObject *r = st == AVQ_OK ? quantizer_wrap(q, NULL) : raise_status(st, p, saved_errno);
    Py_DECREF(path);
    return r;
}

static PyObject *Quantizer_get_dim(QuantizerObject *self, void *c) {
    return PyLong_FromSize_t(avq_quantizer_dim(self->q));
}

static PyObject *Quantizer_get_metric(QuantizerObject *self, void *c) {
    return PyUnicode_FromString(avq_metric_name(avq_quantizer_metric(self->q)));
}

static PyObject *Quantizer_get_num_leaves(QuantizerObject *self, void *c) {
    return PyLong_FromSize_t(avq_quantizer_num_leaves(self->q));
}

static PyObject *Quantizer_repr(QuantizerObject *self) {
    return PyUnicode_FromFormat("<avq.Quantizer dim=%zu metric=%s num_leaves=%zu>",
                                avq_quantizer_dim(self->q),
                                avq_metric_name(avq_quantizer_metric(self->q)),
                                avq_quantizer_num_leaves(self->q));
}

static PyMethodDef Quantizer_methods[] = {
    {"train", (PyCFunction)(void (*)(void))Quantizer_train,
     METH_CLASS | METH_VARARGS | METH_KEYWORDS, Quantizer_train_doc},
    {"load", (PyCFunction)Quantizer_load, METH_CLASS | METH_O, Quantizer_load_doc},
    {"save", (PyCFunction)Quantizer_save, METH_O, Quantizer_save_doc},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef Quantizer_getset[] = {
    {"dim", (getter)Quantizer_get_dim, NULL, "Dimension of the vectors (int).", NULL},
    {"metric", (getter)Quantizer_get_metric, NULL,
     "'dot_product', 'squared_l2' or 'cosine' (str).", NULL},
    {"num_leaves", (getter)Quantizer_get_num_leaves, NULL,
     "Number of leaves (k-means partitions) of the indexes it makes (int).", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

PyDoc_STRVAR(Quantizer_doc,
"A trained quantizer: the metric, the k-means leaf centers, the anisotropic\n"
"PQ codebook and the default search settings -- no vectors.  Make one with\n"
"Quantizer.train(sample, metric, ...) or Quantizer.load(path), or take an\n"
"index's (index.quantizer); then avq.Index(quantizer) creates empty indexes\n"
"that encode with it.  Immutable: share it between threads and indexes.");

static PyTypeObject QuantizerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "avq.Quantizer",
    .tp_basicsize = sizeof(QuantizerObject),
    .tp_dealloc = (destructor)Quantizer_dealloc,
    .tp_repr = (reprfunc)Quantizer_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = Quantizer_doc,
    .tp_methods = Quantizer_methods,
    .tp_getset = Quantizer_getset,
};

/* ------------------------------------------------------------------------- */
/* Module functions                                                          */
/* ------------------------------------------------------------------------- */

PyDoc_STRVAR(load_doc,
"load(path, mmap=False, verify_checksums=True)\n"
"--\n"
"\n"
"Load an index written by Index.save (or by `avq build`).\n"
"\n"
"mmap=False reads the file into memory owned by the index.  mmap=True maps\n"
"it read-only: near-instant, pages come from the page cache on first use,\n"
"several processes share them; the file must not be modified in place\n"
"while mapped (Index.save replaces files by renaming, which is safe).\n"
"verify_checksums=False skips the data sections' CRC32C (sizes and headers\n"
"are still validated) for files you wrote yourself.\n"
"\n"
"Raises FileNotFoundError / PermissionError / OSError, avq.FormatError for\n"
"a truncated, corrupt or newer-version file (message names the section and\n"
"the reason).  The GIL is released while loading.");

static PyObject *avq_py_load(PyObject *module, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"path", "mmap", "verify_checksums", NULL};
    PyObject *path_o, *path = NULL;
    int use_mmap = 0, verify = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|pp:load", kwlist, &path_o, &use_mmap,
                                     &verify))
        return NULL;
    if (get_path(path_o, &path) < 0) return NULL;
    unsigned flags = (use_mmap ? AVQ_LOAD_MMAP : AVQ_LOAD_COPY) |
                     (verify ? 0u : AVQ_LOAD_SKIP_CHECKSUMS);
    const char *p = PyBytes_AS_STRING(path);
    avq_index *ix = NULL;
    int st, saved_errno;
    Py_BEGIN_ALLOW_THREADS
    st = avq_index_load(p, flags, &ix);
    saved_errno = errno;
    Py_END_ALLOW_THREADS
    PyObject *r = st == AVQ_OK ? index_wrap(ix, use_mmap) : raise_status(st, p, saved_errno);
    Py_DECREF(path);
    return r;
}

PyDoc_STRVAR(exact_search_doc,
"exact_search(base, queries, k=10, metric='dot_product', threads=None, progress=None)\n"
"--\n"
"\n"
"Brute-force k nearest neighbours of `queries` among the rows of `base`:\n"
"the ground truth to check an index against, and the right tool below\n"
"~20k vectors.  Returns (ids, scores), int64 and float32 of shape (nq, k)\n"
"-- or (k,) when `queries` is 1-D.  Scores and order follow the same\n"
"conventions as Index.search; ties go to the lower id; k > len(base) pads\n"
"with id -1 / score NaN (up to k = 2**20; a larger k must not exceed\n"
"len(base)).  The result does not depend on `threads`.\n"
"\n"
"The GIL is released; Ctrl-C cancels (KeyboardInterrupt); `progress` is\n"
"called as for Index.build.  Raises ValueError, TypeError, MemoryError.");

static PyObject *avq_py_exact_search(PyObject *module, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"base", "queries", "k", "metric", "threads", "progress", NULL};
    PyObject *base_o, *queries_o, *k_o = NULL, *metric_o = NULL, *threads_o = NULL,
             *progress = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|OOOO:exact_search", kwlist, &base_o,
                                     &queries_o, &k_o, &metric_o, &threads_o, &progress))
        return NULL;
    size_t k;
    int threads;
    avq_metric metric = AVQ_METRIC_DOT;
    if (get_k(k_o, &k) < 0 || get_threads(threads_o, &threads) < 0 ||
        (metric_o && get_metric(metric_o, &metric) < 0) || check_callback(progress) < 0)
        return NULL;
    PyArrayObject *base = NULL, *queries = NULL;
    PyObject *ids = NULL, *scores = NULL, *result = NULL;
    base = as_float32(base_o, "base");
    if (!base) goto done;
    queries = as_float32(queries_o, "queries");
    if (!queries) goto done;
    if (PyArray_NDIM(base) != 2 || PyArray_DIM(base, 0) == 0 || PyArray_DIM(base, 1) == 0) {
        PyErr_SetString(PyExc_ValueError, "base must be a non-empty 2-D array (n, dim)");
        goto done;
    }
    size_t n = (size_t)PyArray_DIM(base, 0), dim = (size_t)PyArray_DIM(base, 1);
    int one = PyArray_NDIM(queries) == 1;
    if ((PyArray_NDIM(queries) != 1 && PyArray_NDIM(queries) != 2) ||
        (size_t)PyArray_DIM(queries, PyArray_NDIM(queries) - 1) != dim) {
        PyErr_Format(PyExc_ValueError,
                     "queries must be of shape (nq, %zu) or (%zu,) to match base", dim, dim);
        goto done;
    }
    size_t nq = one ? 1 : (size_t)PyArray_DIM(queries, 0);
    if (k > n && k > MAX_SEARCH_K) {
        PyErr_Format(PyExc_ValueError,
                     "k = %zu exceeds both the %zu rows of base and the limit of %d results "
                     "per query", k, n, MAX_SEARCH_K);
        goto done;
    }
    npy_intp shape[2] = {(npy_intp)nq, (npy_intp)k};
    ids = one ? PyArray_SimpleNew(1, shape + 1, NPY_INT64) : PyArray_SimpleNew(2, shape, NPY_INT64);
    scores = one ? PyArray_SimpleNew(1, shape + 1, NPY_FLOAT32)
                 : PyArray_SimpleNew(2, shape, NPY_FLOAT32);
    if (!ids || !scores) goto done;
    if (nq > 0) {
        progress_ctx ctx = {NULL, progress == Py_None ? NULL : progress, 0, 0.0, {0}};
        ctx.last_time = monotonic_seconds();
        ctx.ts = PyEval_SaveThread();
        int st = avq_exact_search(PyArray_DATA(base), n, dim, PyArray_DATA(queries), nq, metric,
                                  k, threads, PyArray_DATA((PyArrayObject *)ids),
                                  PyArray_DATA((PyArrayObject *)scores), progress_trampoline,
                                  &ctx);
        PyEval_RestoreThread(ctx.ts);
        if (st != AVQ_OK || PyErr_Occurred()) {
            raise_status(st, NULL, 0);
            goto done;
        }
    }
    result = steal_pair(&ids, &scores);
done:
    Py_XDECREF(base);
    Py_XDECREF(queries);
    Py_XDECREF(ids);
    Py_XDECREF(scores);
    return result;
}

PyDoc_STRVAR(isa_doc,
"isa()\n--\n\n"
"The SIMD kernel set this process uses: 'avx512', 'avx2' or 'scalar'.  Chosen\n"
"from the CPU at first use; the environment variable AVQ_ISA forces one.");

static PyObject *avq_py_isa(PyObject *module, PyObject *unused) {
    return PyUnicode_FromString(avq_isa());
}

PyDoc_STRVAR(default_threads_doc,
"default_threads()\n--\n\n"
"The number of worker threads threads=None/0 means, now: the CPUs this\n"
"process may run on (its affinity mask: taskset, docker --cpuset-cpus),\n"
"limited by its cgroup's CPU quota (docker --cpus, Kubernetes limits).");

static PyObject *avq_py_default_threads(PyObject *module, PyObject *unused) {
    return PyLong_FromLong(avq_default_threads());
}

PyDoc_STRVAR(parse_metric_doc,
"parse_metric(name)\n--\n\n"
"The canonical name ('dot_product', 'squared_l2' or 'cosine') of a metric\n"
"name or alias, in any case (the C library's one table: avq.METRIC_ALIASES).\n"
"Raises ValueError listing the choices, TypeError for a non-str.");

static PyObject *avq_py_parse_metric(PyObject *module, PyObject *name) {
    avq_metric m;
    if (get_metric(name, &m) < 0) return NULL;
    return PyUnicode_FromString(avq_metric_name(m));
}

/* {alias: canonical name} of every name avq_metric_parse accepts. */
static PyObject *metric_aliases(void) {
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    avq_metric m;
    const char *name;
    for (size_t i = 0; (name = avq_metric_alias(i, &m)) != NULL; i++) {
        PyObject *v = PyUnicode_FromString(avq_metric_name(m));
        if (!v || PyDict_SetItemString(d, name, v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(v);
    }
    return d;
}

static PyMethodDef module_methods[] = {
    {"default_threads", avq_py_default_threads, METH_NOARGS, default_threads_doc},
    {"parse_metric", avq_py_parse_metric, METH_O, parse_metric_doc},
    {"load", (PyCFunction)(void (*)(void))avq_py_load, METH_VARARGS | METH_KEYWORDS, load_doc},
    {"exact_search", (PyCFunction)(void (*)(void))avq_py_exact_search,
     METH_VARARGS | METH_KEYWORDS, exact_search_doc},
    {"isa", avq_py_isa, METH_NOARGS, isa_doc},
    {NULL, NULL, 0, NULL}};

PyDoc_STRVAR(module_doc,
"avq._avq -- the compiled core of the avq package (use `import avq`).");

static struct PyModuleDef avq_module = {
    PyModuleDef_HEAD_INIT, "avq._avq", module_doc, -1, module_methods, NULL, NULL, NULL, NULL};

static int intern_names(PyObject **slots, const char *const *names, int count) {
    for (int i = 0; i < count; i++) {
        slots[i] = PyUnicode_InternFromString(names[i]);
        if (!slots[i]) return -1;
    }
    return 0;
}

PyMODINIT_FUNC PyInit__avq(void) {
    import_array();
    if (avq_version_number() != AVQ_VERSION_NUMBER) {
        PyErr_Format(PyExc_ImportError, "avq: compiled against avq.h %d but linked with %s",
                     AVQ_VERSION_NUMBER, avq_version());
        return NULL;
    }
    static const char *const sn[SEARCH_NAMES] = {
        "q", "k", "leaves_to_search", "pre_reorder", "filter", "deny", "tags_any", "tags_all",
        "filter_min_scanned", "filter_exact_below"};
    static const char *const bn[BATCHED_NAMES] = {
        "queries", "k", "leaves_to_search", "pre_reorder", "threads", "filter", "deny",
        "tags_any", "tags_all", "filter_min_scanned", "filter_exact_below", "filters"};
    if (intern_names(search_names, sn, SEARCH_NAMES) < 0 ||
        intern_names(batched_names, bn, BATCHED_NAMES) < 0)
        return NULL;
    if (PyType_Ready(&IndexType) < 0 || PyType_Ready(&QuantizerType) < 0 ||
        PyType_Ready(&FilterType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&avq_module);
    if (!m) return NULL;
    AvqError = PyErr_NewExceptionWithDoc(
        "avq.Error",
        "Base class of avq's own errors: corrupt files (FormatError), an\n"
        "operation this build or CPU cannot serve, an internal error.  Bad\n"
        "arguments raise ValueError / TypeError, files OSError, memory\n"
        "MemoryError; the message is the C library's (avq_last_error()).",
        NULL, NULL);
    if (!AvqError) goto fail;
    AvqFormatError = PyErr_NewExceptionWithDoc(
        "avq.FormatError",
        "A file is not an avq index, is truncated or corrupt (checksum mismatch),\n"
        "or was written by a newer format version.  Subclass of avq.Error.",
        AvqError, NULL);
    if (!AvqFormatError) goto fail;
    if (PyModule_AddObjectRef(m, "Error", AvqError) < 0 ||
        PyModule_AddObjectRef(m, "FormatError", AvqFormatError) < 0 ||
        PyModule_AddObjectRef(m, "Index", (PyObject *)&IndexType) < 0 ||
        PyModule_AddObjectRef(m, "Quantizer", (PyObject *)&QuantizerType) < 0 ||
        PyModule_AddObjectRef(m, "Filter", (PyObject *)&FilterType) < 0 ||
        PyModule_AddIntConstant(m, "MAX_TAGS_PER_VECTOR", AVQ_MAX_TAGS_PER_VECTOR) < 0 ||
        PyModule_AddIntConstant(m, "MAX_FILTER_TAGS", AVQ_MAX_FILTER_TAGS) < 0 ||
        PyModule_AddStringConstant(m, "__version__", avq_version()) < 0 ||
        PyModule_AddIntConstant(m, "VERSION_NUMBER", (long)avq_version_number()) < 0)
        goto fail;
    PyObject *aliases = metric_aliases();
    if (!aliases || PyModule_AddObjectRef(m, "METRIC_ALIASES", aliases) < 0) {
        Py_XDECREF(aliases);
        goto fail;
    }
    Py_DECREF(aliases);
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
