/* pymodule.c: the `filprofiler._filpreload` extension module, the Python layer's only door into
 * the core. The same shared object is the LD_PRELOAD library; imported in a process where it was
 * not preloaded, it can still render reports but refuses to track.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "fil_internal.h"
#include "oom.h"
#include "prim.h"
#include "pystack.h"
#include "render.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

/* Our malloc is the process's malloc only when this library was preloaded. `&malloc` cannot
   tell: malloc is exported, so the reference goes through the GOT and is libc's malloc whenever
   libc's wins. Instead: does the process's malloc live in the object this function is in? */
static int is_preloaded(void) {
    Dl_info process_malloc, self;
    void *m = dlsym(RTLD_DEFAULT, "malloc");
    if (!m || !dladdr(m, &process_malloc) || !dladdr((void *)&is_preloaded, &self)) return 0;
    return process_malloc.dli_fbase == self.dli_fbase;
}

static PyObject *py_preloaded(PyObject *self, PyObject *unused) {
    (void)self; (void)unused;
    return PyBool_FromLong(is_preloaded());
}

/* start(hidden_files: list[str], cut_at_caller: bool): forget earlier allocations and record
   from now on. */
static PyObject *py_start(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *hidden;
    int cut;
    if (!PyArg_ParseTuple(args, "Op", &hidden, &cut)) return NULL;
    if (!is_preloaded()) {
        PyErr_SetString(PyExc_RuntimeError,
                        "the Fil preload library is not loaded: run the program with "
                        "`fil-profile run` or `fil-profile python`");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(hidden, "hidden files must be a sequence of str");
    if (!seq) return NULL;
    const char *files[FIL_MAX_HIDDEN];
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > FIL_MAX_HIDDEN) n = FIL_MAX_HIDDEN;
    for (Py_ssize_t i = 0; i < n; i++) {
        files[i] = PyUnicode_AsUTF8(PySequence_Fast_GET_ITEM(seq, i));
        if (!files[i]) { Py_DECREF(seq); return NULL; }
    }
    _fil_tl_guard++;
    if (_fil_callsite_init() < 0) {
        _fil_tl_guard--;
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    _fil_pystack_set_hidden(files, (int)n);
    _fil_tl_guard--;
    Py_DECREF(seq);
    _fil_pyalloc_install();
    _fil_tl_guard++;
    _fil_pystack_install(cut);
    _fil_lock_enable_bias();
    _fil_track_reset();
    _fil_oom_start();
    _fil_tracking = 1;
    _fil_tl_guard--;
    Py_RETURN_NONE;
}

static PyObject *py_stop(PyObject *self, PyObject *unused) {
    (void)self; (void)unused;
    _fil_tracking = 0;
    _fil_tl_guard++;
    _fil_pystack_forget_cut();
    _fil_tl_guard--;
    Py_RETURN_NONE;
}

static PyObject *py_tracking(PyObject *self, PyObject *unused) {
    (void)self; (void)unused;
    return PyBool_FromLong(_fil_tracking != 0);
}

/* dump(path, current=False) -> bytes: write the peak's (or the current) allocations. */
static PyObject *py_dump(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *path_obj;
    int current = 0;
    if (!PyArg_ParseTuple(args, "O&|p", PyUnicode_FSConverter, &path_obj, &current)) return NULL;
    uint64_t total = 0;
    int r;
    _fil_tl_guard++;
    r = _fil_track_dump(PyBytes_AS_STRING(path_obj), current, &total);
    _fil_tl_guard--;
    if (r < 0) {
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path_obj);
        Py_DECREF(path_obj);
        return NULL;
    }
    Py_DECREF(path_obj);
    return PyLong_FromUnsignedLongLong(total);
}

/* stats() -> (live bytes, peak bytes, the profiler's own bytes) */
static PyObject *py_stats(PyObject *self, PyObject *unused) {
    (void)self; (void)unused;
    uint64_t live, peak;
    _fil_tl_guard++;
    _fil_track_stats(&live, &peak);
    uint64_t own = _fil_track_own_bytes();
    _fil_tl_guard--;
    return Py_BuildValue("KKK", (unsigned long long)live, (unsigned long long)peak,
                         (unsigned long long)own);
}

/* oom_configure(out_dir, command_line=None): where an out-of-memory report goes (oom.c). */
static PyObject *py_oom_configure(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *dir;
    const char *cmdline = NULL;
    if (!PyArg_ParseTuple(args, "O&|z", PyUnicode_FSConverter, &dir, &cmdline)) return NULL;
    _fil_tl_guard++;
    _fil_oom_configure(PyBytes_AS_STRING(dir), cmdline);
    _fil_tl_guard--;
    Py_DECREF(dir);
    Py_RETURN_NONE;
}

/* The call sites the renderer reports (render.h, on_site), collected while the GIL is released:
   records of (bytes, order, length, text) one after the other in pages of our own. */
typedef struct {
    char *buf;
    size_t len, cap;
    int failed;
} site_list_t;

typedef struct { uint64_t bytes, order, len; } site_head_t;

static void collect_site(void *ctx, const char *text, size_t len, uint64_t bytes, uint64_t order) {
    site_list_t *l = ctx;
    size_t need = sizeof(site_head_t) + len;
    if (l->failed) return;
    if (l->cap - l->len < need) {
        size_t ncap = l->cap ? l->cap : 16384;
        while (ncap - l->len < need) ncap *= 2;
        char *p = prim_pages_resize(l->buf, l->cap, ncap);
        if (!p) { l->failed = 1; return; }
        l->buf = p;
        l->cap = ncap;
    }
    site_head_t h = {bytes, order, len};
    memcpy(l->buf + l->len, &h, sizeof h);
    memcpy(l->buf + l->len + sizeof h, text, len);
    l->len += need;
}

/* [(text bytes, bytes, order)] from the collected records. */
static PyObject *site_list_to_python(const site_list_t *l) {
    PyObject *out = PyList_New(0);
    for (size_t at = 0; out && at < l->len;) {
        site_head_t h;
        memcpy(&h, l->buf + at, sizeof h);
        PyObject *item = Py_BuildValue("y#KK", l->buf + at + sizeof h, (Py_ssize_t)h.len,
                                       (unsigned long long)h.bytes, (unsigned long long)h.order);
        if (!item || PyList_Append(out, item) < 0) Py_CLEAR(out);
        Py_XDECREF(item);
        at += sizeof h + h.len;
    }
    return out;
}

/* render(prof_path, out_dir, prefix, kind ("peak"|"oom"), command_line, note, sites=0):
   None, or with sites > 0 the call sites for a summary as [(text bytes, bytes, order)]
   (render.h: on_site says what they are and how to rank them). */
static PyObject *py_render(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *prof, *dir;
    const char *prefix, *kind, *cmdline = NULL, *note = NULL;
    unsigned int sites = 0;
    if (!PyArg_ParseTuple(args, "O&O&ss|zzI", PyUnicode_FSConverter, &prof, PyUnicode_FSConverter,
                          &dir, &prefix, &kind, &cmdline, &note, &sites))
        return NULL;
    fil_render_opts_t opts = {0};
    opts.prof_path = PyBytes_AS_STRING(prof);
    opts.out_dir = PyBytes_AS_STRING(dir);
    opts.file_prefix = prefix;
    opts.kind = kind[0] == 'o' ? FIL_REPORT_OOM : FIL_REPORT_PEAK;
    opts.command_line = cmdline;
    opts.extra_note = note;
    site_list_t found = {0};
    if (sites > 0) {
        opts.on_site = collect_site;
        opts.site_ctx = &found;
        opts.sites = sites;
    }
    int r;
    Py_BEGIN_ALLOW_THREADS
    _fil_tl_guard++;
    r = fil_render_report(&opts);
    _fil_tl_guard--;
    Py_END_ALLOW_THREADS
    PyObject *result = NULL;
    if (r < 0) {
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, dir);
    } else if (sites == 0) {
        result = Py_NewRef(Py_None);
    } else if (found.failed) {
        PyErr_NoMemory();
    } else {
        result = site_list_to_python(&found);
    }
    if (found.buf) prim_pages_free(found.buf, found.cap);
    Py_DECREF(prof);
    Py_DECREF(dir);
    return result;
}

static PyMethodDef methods[] = {
    {"preloaded", py_preloaded, METH_NOARGS, "True if this library is the process's allocator."},
    {"start", py_start, METH_VARARGS, "start(hidden_files, cut_at_caller): begin tracking afresh."},
    {"stop", py_stop, METH_NOARGS, "Stop tracking."},
    {"tracking", py_tracking, METH_NOARGS, "True while allocations are being recorded."},
    {"dump", py_dump, METH_VARARGS, "dump(path, current=False) -> total bytes written."},
    {"stats", py_stats, METH_NOARGS, "(live bytes, peak bytes, profiler's own bytes)"},
    {"oom_configure", py_oom_configure, METH_VARARGS,
     "oom_configure(out_dir, command_line=None): where out-of-memory reports go."},
    {"render", py_render, METH_VARARGS,
     "render(prof, out_dir, prefix, kind, cmdline, note, sites=0) -> None or call sites"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_filpreload", NULL, -1, methods,
                                    NULL, NULL, NULL, NULL};

__attribute__((visibility("default"))) PyMODINIT_FUNC PyInit__filpreload(void) {
    return PyModule_Create(&module);
}
