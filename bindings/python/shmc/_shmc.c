/*
 * _shmc.c - shmc._shmc, the CPython extension over libshmc (shmc.h).
 *
 * One type, Client, that owns a libshmc handle and turns the library's
 * calls into Python's terms: keys are str (UTF-8) or bytes-like, values
 * bytes-like in (read through the buffer protocol, not copied first) and
 * bytes out, misses are None or False, errors are exceptions under
 * shmc.Error.  Beside it Lease, the opaque value of a fill lease
 * (Client.get_lease(), Client.fill()).  The pure-Python parts (the
 * package, the Django backend, the Redis near cache) are beside this
 * file; docs/PYTHON.md is the user's manual.
 *
 * Not for: the zero-copy reservations of shmc.h (shmc_reserve() holds a
 * segment lock while the caller writes, which Python code cannot promise
 * to do briefly), nor the daemon's administration (cachectl does it).
 *
 * Processes and threads
 *   - fork().  A handle is only usable in the process that opened it
 *     (shmc.h, Caveats).  The module registers an os.register_at_fork()
 *     hook that, in the child, closes what the child inherited of every
 *     Client's handle; the Client then opens a handle of its own at its
 *     next call.  A fork the hook does not see (one made from C) shows as
 *     -ECHILD from the library: the handle is then replaced the same way
 *     and the call made again.
 *   - Threads.  libshmc handles are thread-safe.  The data calls run with
 *     the GIL held (they take nanoseconds; releasing the GIL would cost
 *     more); the calls that can wait - opening, control requests over the
 *     socket, get_or_load() waiting for another process's loader, stores
 *     and reads of large values - release it.  The handle pointer changes
 *     only under the GIL; a handle that a call without the GIL may still
 *     use is kept ("retired") until no such call runs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "shmc.h"

/* ------------------------------------------------------------------------
 * Types and module state
 * ------------------------------------------------------------------------ */

/* Values read into the stack first: one copy less than asking the size. */
#define SMALL_VALUE 4096
/* Values from this size on are copied with the GIL released. */
#define NOGIL_BYTES (64 * 1024)
/* Client.get_many(): keys per shmc_mget() batch, and each key's first buffer. */
#define MGET_BATCH 64
#define MGET_CAP 512
/* A result that means "a Python exception is set". */
#define ERR_PYTHON INT_MIN

typedef struct ClientObject {
    PyObject_HEAD
    shmc *c;        /* this process's handle; NULL: open at next use */
    shmc **retired; /* replaced handles a call may still be using */
    Py_ssize_t nretired;
    Py_ssize_t busy;      /* calls on a handle now, with the GIL released */
    int closed;           /* close() was called */
    char *socket;         /* the path asked for (PyMem); NULL: the default */
    PyObject *socket_obj; /* as given, for the attribute; None: default */
    struct ClientObject *prev, *next; /* every live Client, for fork */
    PyObject *weakreflist;
} ClientObject;

static PyTypeObject ClientType;
static PyTypeObject ItemType;
static ClientObject *all_clients;

static PyObject *Error;
static PyObject *DaemonUnavailable;
static PyObject *AccessDenied;
static PyObject *VersionMismatch;
static PyObject *ValueTooLarge;
static PyObject *LockTimeout;
static PyObject *NotANumber;
static PyObject *BufferTooSmall;

/* ------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------ */

/* A new exc_type(msg) with the attribute `code` (the library's negative
 * return value, 0 when none), or NULL with an exception set. */
static PyObject *
make_coded_v(PyObject *exc_type, int code, const char *fmt, va_list ap)
{
    PyObject *msg, *exc, *val;

    msg = PyUnicode_FromFormatV(fmt, ap);
    if (msg == NULL) {
        return NULL;
    }
    exc = PyObject_CallOneArg(exc_type, msg);
    Py_DECREF(msg);
    if (exc == NULL) {
        return NULL;
    }
    val = PyLong_FromLong(code);
    if (val == NULL || PyObject_SetAttrString(exc, "code", val) < 0) {
        Py_XDECREF(val);
        Py_DECREF(exc);
        return NULL;
    }
    Py_DECREF(val);
    return exc;
}

static PyObject *
make_coded(PyObject *exc_type, int code, const char *fmt, ...)
{
    va_list ap;
    PyObject *exc;

    va_start(ap, fmt);
    exc = make_coded_v(exc_type, code, fmt, ap);
    va_end(ap);
    return exc;
}

/* Raises exc_type(msg) with the attribute `code`.  Returns NULL. */
static PyObject *
raise_coded(PyObject *exc_type, int code, const char *fmt, ...)
{
    va_list ap;
    PyObject *exc;

    va_start(ap, fmt);
    exc = make_coded_v(exc_type, code, fmt, ap);
    va_end(ap);
    if (exc != NULL) {
        PyErr_SetObject(exc_type, exc);
        Py_DECREF(exc);
    }
    return NULL;
}

/* Raises BufferTooSmall with .size, the bytes needed.  Returns NULL. */
static PyObject *
raise_buffer_too_small(size_t need, Py_ssize_t have)
{
    PyObject *exc, *size;

    exc =
        make_coded(BufferTooSmall, -ENOBUFS,
                   "the value is %zu bytes; the buffer holds %zd", need, have);
    if (exc == NULL) {
        return NULL;
    }
    size = PyLong_FromSize_t(need);
    if (size == NULL || PyObject_SetAttrString(exc, "size", size) < 0) {
        Py_XDECREF(size);
        Py_DECREF(exc);
        return NULL;
    }
    Py_DECREF(size);
    PyErr_SetObject(BufferTooSmall, exc);
    Py_DECREF(exc);
    return NULL;
}

/* Raises the exception for a library error rc of the call `what`.  The
 * message is the library's (shmc_strerror(), which for the errors of
 * reaching the daemon names the socket and says what to do), with advice
 * where the library's words stop.  Returns NULL. */
static PyObject *
raise_rc(int rc, const char *what)
{
    const char *s = shmc_strerror(rc);

    if (rc == ERR_PYTHON) {
        return NULL;
    }
    switch (rc) {
    case -ENOMEM:
        return PyErr_NoMemory();
    case SHMC_ENODAEMON:
    case -ECONNREFUSED:
    case -ECONNRESET:
    case -EPIPE:
        return raise_coded(DaemonUnavailable, rc, "%s: %s", what, s);
    case SHMC_EUNTRUSTED:
    case -EACCES:
    case -EPERM:
        return raise_coded(AccessDenied, rc, "%s: %s", what, s);
    case -EPROTO:
        return raise_coded(VersionMismatch, rc,
                           "%s: %s (libshmc %s; close this Client and "
                           "open a new one, and if that fails too, "
                           "install the shmc module of the daemon's "
                           "version)",
                           what, s, shmc_version(NULL, NULL, NULL));
    case -ETIMEDOUT:
        return raise_coded(LockTimeout, rc,
                           "%s: %s (another process held the key's "
                           "segment lock longer than the daemon's "
                           "--lock-timeout; the call can be retried)",
                           what, s);
    case -EDOM:
        return raise_coded(NotANumber, rc,
                           "%s: the stored value is not a decimal number "
                           "below 2**64, so it cannot be counted (it is "
                           "left unchanged)",
                           what);
    case -EUCLEAN:
        return raise_coded(Error, rc,
                           "%s: %s (the segment was reset and its "
                           "entries dropped; the call can be retried)",
                           what, s);
    default:
        return raise_coded(Error, rc, "%s: %s", what, s);
    }
}

/* ValueTooLarge for a key + value of klen + vlen bytes. */
static PyObject *
raise_too_large(ClientObject *self, size_t klen, size_t vlen)
{
    size_t max = self->c ? shmc_max_item(self->c) : 0;

    return raise_coded(ValueTooLarge, -E2BIG,
                       "key + value are %zu bytes; the largest item this "
                       "cache holds is %zu bytes (Client.max_item, half a "
                       "segment: store less, or run shmcached with more "
                       "--memory or fewer --segments)",
                       klen + vlen, max);
}

/* ------------------------------------------------------------------------
 * Arguments
 * ------------------------------------------------------------------------ */

/* Matches the arguments of a METH_FASTCALL | METH_KEYWORDS method to the
 * parameter names (a NULL-terminated list): out[i] is parameter i, or
 * NULL when it was not given.  The first npos parameters may be given by
 * position; the first nreq must be given.  Returns 0, or -1 with
 * TypeError set. */
static int
parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames, const char *const *names, int npos, int nreq,
           PyObject **out)
{
    int nparams = 0;

    while (names[nparams] != NULL) {
        out[nparams++] = NULL;
    }
    if (nargs > npos) {
        PyErr_Format(PyExc_TypeError,
                     "%s() takes at most %d positional arguments "
                     "(%zd given)",
                     fname, npos, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        out[i] = args[i];
    }
    if (kwnames != NULL) {
        Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);

        for (Py_ssize_t k = 0; k < nkw; k++) {
            PyObject *name = PyTuple_GET_ITEM(kwnames, k);
            int i = 0;

            while (i < nparams &&
                   PyUnicode_CompareWithASCIIString(name, names[i]) != 0) {
                i++;
            }
            if (i == nparams) {
                PyErr_Format(PyExc_TypeError,
                             "%s() got an unexpected keyword argument '%U'",
                             fname, name);
                return -1;
            }
            if (out[i] != NULL) {
                PyErr_Format(PyExc_TypeError,
                             "%s() got multiple values for argument '%s'",
                             fname, names[i]);
                return -1;
            }
            out[i] = args[nargs + k];
        }
    }
    for (int i = 0; i < nreq; i++) {
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError,
                         "%s() missing required argument '%s'", fname,
                         names[i]);
            return -1;
        }
    }
    return 0;
}

/* A key: str as UTF-8, bytes, or any other bytes-like object. */
typedef struct {
    const char *p;
    Py_ssize_t n;
    Py_buffer view; /* view.obj != NULL: a buffer to release */
} Key;

static void
key_release(Key *k)
{
    if (k->view.obj != NULL) {
        PyBuffer_Release(&k->view);
    }
}

/* Reads key o into k, checking its length against max (SHMC_KEY_MAX, or
 * SHMC_NS_PREFIX_MAX for a namespace); what names it in errors.  0, or
 * -1 with TypeError / ValueError set. */
static int
key_get_max(PyObject *o, Key *k, Py_ssize_t max, const char *what)
{
    k->view.obj = NULL;
    if (PyUnicode_Check(o)) {
        k->p = PyUnicode_AsUTF8AndSize(o, &k->n);
        if (k->p == NULL) {
            return -1;
        }
    }
    else if (PyBytes_Check(o)) {
        k->p = PyBytes_AS_STRING(o);
        k->n = PyBytes_GET_SIZE(o);
    }
    else if (PyObject_CheckBuffer(o)) {
        if (PyObject_GetBuffer(o, &k->view, PyBUF_SIMPLE) < 0) {
            return -1;
        }
        k->p = k->view.buf;
        k->n = k->view.len;
    }
    else {
        PyErr_Format(PyExc_TypeError,
                     "%s must be str or bytes-like, not %.100s", what,
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    if (k->n == 0 || k->n > max) {
        PyErr_Format(PyExc_ValueError,
                     "%s is %zd bytes long (UTF-8 for a str); it must be "
                     "1 to %zd bytes",
                     what, k->n, max);
        key_release(k);
        return -1;
    }
    return 0;
}

static int
key_get(PyObject *o, Key *k)
{
    return key_get_max(o, k, SHMC_KEY_MAX, "the key");
}

/* A value: any C-contiguous bytes-like object, not copied.  0, or -1 with
 * TypeError / BufferError set. */
static int
value_get(PyObject *o, Py_buffer *v)
{
    if (PyUnicode_Check(o)) {
        PyErr_SetString(PyExc_TypeError,
                        "the value must be bytes-like, not str: encode it "
                        "(value.encode()) or pickle it");
        return -1;
    }
    return PyObject_GetBuffer(o, v, PyBUF_SIMPLE);
}

/* An integer argument in [0, max], default dflt when o is NULL.  0, or -1
 * with TypeError / ValueError set. */
static int
uint_arg(PyObject *o, const char *name, unsigned long long max,
         unsigned long long dflt, unsigned long long *out)
{
    unsigned long long v;
    long long s;
    int overflow;
    PyObject *i;

    if (o == NULL) {
        *out = dflt;
        return 0;
    }
    i = PyNumber_Index(o);
    if (i == NULL) {
        return -1;
    }
    s = PyLong_AsLongLongAndOverflow(i, &overflow);
    if (s == -1 && PyErr_Occurred()) {
        goto fail;
    }
    if (overflow < 0 || (overflow == 0 && s < 0)) {
        goto range;
    }
    v = PyLong_AsUnsignedLongLong(i);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
            goto fail;
        }
        PyErr_Clear();
        goto range;
    }
    if (v > max) {
        goto range;
    }
    Py_DECREF(i);
    *out = v;
    return 0;
range:
    PyErr_Format(PyExc_ValueError, "%s must be 0 to %llu, not %R", name, max,
                 i);
fail:
    Py_DECREF(i);
    return -1;
}

static int
u32_arg(PyObject *o, const char *name, uint32_t *out)
{
    unsigned long long v;

    if (uint_arg(o, name, UINT32_MAX, 0, &v) < 0) {
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

/* ------------------------------------------------------------------------
 * The handle: opening, forks, closing
 * ------------------------------------------------------------------------ */

/* Closes handle c now if no call without the GIL may be using it, or
 * keeps it until the last such call ends. */
static void
client_retire(ClientObject *self, shmc *c)
{
    shmc **r;

    if (c == NULL) {
        return;
    }
    if (self->busy == 0) {
        shmc_close(c);
        return;
    }
    r = PyMem_Realloc(self->retired,
                      (self->nretired + 1) * sizeof(*self->retired));
    if (r == NULL) {
        return; /* leaked rather than unmapped under a running call */
    }
    self->retired = r;
    self->retired[self->nretired++] = c;
}

static void
client_close_retired(ClientObject *self)
{
    for (Py_ssize_t i = 0; i < self->nretired; i++) {
        shmc_close(self->retired[i]);
    }
    PyMem_Free(self->retired);
    self->retired = NULL;
    self->nretired = 0;
}

/* Ends a call that ran without the GIL (self->busy was raised for it). */
static void
client_unbusy(ClientObject *self)
{
    if (--self->busy == 0 && self->nretired > 0) {
        client_close_retired(self);
    }
}

/* Opens this process's handle.  Returns it, or NULL with an exception. */
static shmc *
client_open(ClientObject *self)
{
    shmc *c = NULL;
    int rc;

    Py_BEGIN_ALLOW_THREADS
    rc = shmc_open(&c, self->socket);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        raise_rc(rc, "shmc.Client: cannot open the cache");
        return NULL;
    }
    if (self->closed) { /* by another thread, meanwhile */
        shmc_close(c);
        raise_coded(Error, 0, "the Client is closed");
        return NULL;
    }
    if (self->c != NULL) { /* another thread opened one meanwhile */
        shmc_close(c);
        return self->c;
    }
    self->c = c;
    return c;
}

/* This process's handle, opened if need be; NULL with an exception. */
static inline shmc *
client_handle(ClientObject *self)
{
    if (self->c != NULL) {
        return self->c;
    }
    if (self->closed) {
        raise_coded(Error, 0, "the Client is closed");
        return NULL;
    }
    return client_open(self);
}

/* Drops handle stale, which the library refused with -ECHILD (it is a
 * parent's): the next call opens a new one. */
static void
client_forget(ClientObject *self, shmc *stale)
{
    if (self->c == stale) {
        self->c = NULL;
        client_retire(self, stale);
    }
}

/* rc = CALL, with the identifier c bound to the Client's handle; on
 * -ECHILD (a fork the at-fork hook did not see) the handle is replaced
 * and CALL made once more.  rc is ERR_PYTHON when an exception is set. */
#define WITH_HANDLE(self, c, rc, CALL)                                        \
    for (int try_ = 0;; try_++) {                                             \
        shmc *c = client_handle(self);                                        \
        if (c == NULL) {                                                      \
            (rc) = ERR_PYTHON;                                                \
            break;                                                            \
        }                                                                     \
        (rc) = (CALL);                                                        \
        if ((rc) != -ECHILD || try_ > 0) {                                    \
            break;                                                            \
        }                                                                     \
        client_forget(self, c);                                               \
    }

/* WITH_HANDLE() with the GIL released during CALL. */
#define WITH_HANDLE_NOGIL(self, c, rc, CALL)                                  \
    for (int try_ = 0;; try_++) {                                             \
        shmc *c = client_handle(self);                                        \
        if (c == NULL) {                                                      \
            (rc) = ERR_PYTHON;                                                \
            break;                                                            \
        }                                                                     \
        (self)->busy++;                                                       \
        PyThreadState *ts_ = PyEval_SaveThread();                             \
        (rc) = (CALL);                                                        \
        PyEval_RestoreThread(ts_);                                            \
        client_unbusy(self);                                                  \
        if ((rc) != -ECHILD || try_ > 0) {                                    \
            break;                                                            \
        }                                                                     \
        client_forget(self, c);                                               \
    }

/* os.register_at_fork(after_in_child=...): in the child, every Client
 * lets go of what it inherited (shmc_close() in a child sends the daemon
 * nothing) and opens its own handle at its next call.  A handle that a
 * call without the GIL was using at the fork stays mapped (that call
 * might be this thread's, under a loader that forked). */
static PyObject *
after_fork_child(PyObject *module, PyObject *unused)
{
    for (ClientObject *cl = all_clients; cl != NULL; cl = cl->next) {
        shmc *c = cl->c;

        cl->c = NULL;
        if (cl->busy == 0) {
            client_close_retired(cl);
        }
        client_retire(cl, c);
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------
 * Client: life cycle
 * ------------------------------------------------------------------------ */

static PyObject *
Client_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    ClientObject *self = (ClientObject *)type->tp_alloc(type, 0);

    if (self == NULL) {
        return NULL;
    }
    self->socket_obj = Py_NewRef(Py_None);
    self->next = all_clients;
    if (all_clients != NULL) {
        all_clients->prev = self;
    }
    all_clients = self;
    return (PyObject *)self;
}

static int
Client_init(ClientObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"socket", NULL};
    PyObject *sock = Py_None, *bytes = NULL;
    char *path = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:Client", kwlist, &sock)) {
        return -1;
    }
    if (self->c != NULL || self->closed) {
        PyErr_SetString(PyExc_RuntimeError, "Client.__init__ called twice");
        return -1;
    }
    if (sock != Py_None) {
        Py_ssize_t n;

        if (!PyUnicode_FSConverter(sock, &bytes)) {
            return -1;
        }
        n = PyBytes_GET_SIZE(bytes);
        path = PyMem_Malloc(n + 1);
        if (path == NULL) {
            Py_DECREF(bytes);
            PyErr_NoMemory();
            return -1;
        }
        memcpy(path, PyBytes_AS_STRING(bytes), n + 1);
        Py_DECREF(bytes);
    }
    PyMem_Free(self->socket);
    self->socket = path;
    Py_SETREF(self->socket_obj, Py_NewRef(sock));
    return client_open(self) == NULL ? -1 : 0;
}

static void
Client_dealloc(ClientObject *self)
{
    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    if (self->prev != NULL) {
        self->prev->next = self->next;
    }
    else {
        all_clients = self->next;
    }
    if (self->next != NULL) {
        self->next->prev = self->prev;
    }
    /* No call runs: each holds a reference to self. */
    shmc_close(self->c);
    client_close_retired(self);
    PyMem_Free(self->socket);
    Py_CLEAR(self->socket_obj);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
Client_traverse(ClientObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->socket_obj);
    return 0;
}

PyDoc_STRVAR(
    Client_close_doc,
    "close() -> None\n\n"
    "Closes the Client: unmaps the cache and tells the daemon this client\n"
    "is done.  Calls after it raise shmc.Error; closing again does nothing.");

static PyObject *
Client_close(ClientObject *self, PyObject *unused)
{
    shmc *c = self->c;

    self->c = NULL;
    self->closed = 1;
    client_retire(self, c);
    Py_RETURN_NONE;
}

static PyObject *
Client_enter(ClientObject *self, PyObject *unused)
{
    if (client_handle(self) == NULL) {
        return NULL;
    }
    return Py_NewRef(self);
}

static PyObject *
Client_exit(ClientObject *self, PyObject *args)
{
    return Client_close(self, NULL);
}

PyDoc_STRVAR(
    Client_reduce_doc,
    "Pickles as the socket path: unpickling opens a new Client (a handle\n"
    "belongs to one process).");

static PyObject *
Client_reduce(ClientObject *self, PyObject *unused)
{
    return Py_BuildValue("O(O)", Py_TYPE(self), self->socket_obj);
}

static PyObject *
Client_repr(ClientObject *self)
{
    return PyUnicode_FromFormat("<shmc.Client socket=%R%s>", self->socket_obj,
                                self->closed ? " closed" : "");
}

/* ------------------------------------------------------------------------
 * Client: reads
 * ------------------------------------------------------------------------ */

/* shmc_get_item(), or shmc_get_lease() when l is not NULL. */
static int
get_call(shmc *c, const Key *k, void *buf, size_t cap, struct shmc_item *it,
         struct shmc_lease *l)
{
    if (l != NULL) {
        return shmc_get_lease(c, k->p, k->n, buf, cap, it, l);
    }
    return shmc_get_item(c, k->p, k->n, buf, cap, it);
}

/* Reads key's value into a new bytes object, its metadata into *it.
 * Returns the bytes, or NULL with *rcp set: -ENOENT for a miss (no
 * exception; with l not NULL, a fill lease is begun in *l), or
 * ERR_PYTHON with an exception set. */
static PyObject *
read_item(ClientObject *self, const Key *k, struct shmc_item *it, int *rcp,
          struct shmc_lease *l)
{
    char small[SMALL_VALUE];
    PyObject *b;
    int rc;

    WITH_HANDLE(self, c, rc, get_call(c, k, small, sizeof(small), it, l));
    if (rc == 0) {
        b = PyBytes_FromStringAndSize(small, it->vlen);
        *rcp = b ? 0 : ERR_PYTHON;
        return b;
    }
    while (rc == -ENOBUFS) { /* large: read again into the bytes itself */
        size_t need = it->vlen;

        b = PyBytes_FromStringAndSize(NULL, need);
        if (b == NULL) {
            *rcp = ERR_PYTHON;
            return NULL;
        }
        if (need >= NOGIL_BYTES) {
            WITH_HANDLE_NOGIL(
                self, c, rc,
                get_call(c, k, PyBytes_AS_STRING(b), need, it, l));
        }
        else {
            WITH_HANDLE(self, c, rc,
                        get_call(c, k, PyBytes_AS_STRING(b), need, it, l));
        }
        if (rc == 0) {
            if (it->vlen < need &&
                _PyBytes_Resize(&b, (Py_ssize_t)it->vlen) < 0) {
                *rcp = ERR_PYTHON;
                return NULL;
            }
            *rcp = 0;
            return b;
        }
        Py_DECREF(b); /* grew meanwhile (-ENOBUFS again), or gone */
    }
    *rcp = rc;
    if (rc != -ENOENT) {
        raise_rc(rc, "get");
        *rcp = ERR_PYTHON;
    }
    return NULL;
}

PyDoc_STRVAR(Client_get_doc,
             "get(key, default=None) -> bytes\n\n"
             "The value of key, or default when it is missing or expired.");

static PyObject *
Client_get(ClientObject *self, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames)
{
    static const char *const names[] = {"key", "default", NULL};
    PyObject *a[2];
    struct shmc_item it;
    PyObject *v;
    Key k;
    int rc;

    if (kwnames == NULL && (nargs == 1 || nargs == 2)) {
        a[0] = args[0];
        a[1] = nargs == 2 ? args[1] : NULL;
    }
    else if (parse_args("get", args, nargs, kwnames, names, 2, 1, a) < 0) {
        return NULL;
    }
    if (key_get(a[0], &k) < 0) {
        return NULL;
    }
    v = read_item(self, &k, &it, &rc, NULL);
    key_release(&k);
    if (v == NULL && rc == -ENOENT) {
        return Py_NewRef(a[1] ? a[1] : Py_None);
    }
    return v;
}

/* The METH_FASTCALL method Client_##name, that calls fn(self, args, nargs,
 * kwnames, ...) with the extra arguments that follow. */
#define METHOD_VIA(name, fn, ...)                                             \
    static PyObject *Client_##name(ClientObject *self, PyObject *const *args, \
                                   Py_ssize_t nargs, PyObject *kwnames)       \
    {                                                                         \
        return fn(self, args, nargs, kwnames, __VA_ARGS__);                   \
    }

/* Client.get_item() and Client.gets(): as Client.get(), with metadata. */
static PyObject *
get_meta(ClientObject *self, PyObject *const *args, Py_ssize_t nargs,
         PyObject *kwnames, const char *fname, bool full)
{
    static const char *const names[] = {"key", NULL};
    PyObject *a[1], *v, *r;
    struct shmc_item it;
    Key k;
    int rc;

    if (parse_args(fname, args, nargs, kwnames, names, 1, 1, a) < 0 ||
        key_get(a[0], &k) < 0) {
        return NULL;
    }
    v = read_item(self, &k, &it, &rc, NULL);
    key_release(&k);
    if (v == NULL) {
        return rc == -ENOENT ? Py_NewRef(Py_None) : NULL;
    }
    if (!full) {
        return Py_BuildValue("(NK)", v, (unsigned long long)it.cas);
    }
    r = PyStructSequence_New(&ItemType);
    if (r == NULL) {
        Py_DECREF(v);
        return NULL;
    }
    PyStructSequence_SET_ITEM(r, 0, v);
    PyStructSequence_SET_ITEM(r, 1, PyLong_FromUnsignedLong(it.flags));
    PyStructSequence_SET_ITEM(r, 2, PyLong_FromUnsignedLongLong(it.cas));
    PyStructSequence_SET_ITEM(r, 3, PyLong_FromUnsignedLong(it.expire_at));
    if (PyErr_Occurred()) {
        Py_DECREF(r);
        return NULL;
    }
    return r;
}

PyDoc_STRVAR(
    Client_gets_doc,
    "gets(key) -> (bytes, int) | None\n\n"
    "The value of key and its version (for cas()), or None when it is\n"
    "missing or expired.");

METHOD_VIA(gets, get_meta, "gets", false)

PyDoc_STRVAR(
    Client_get_item_doc,
    "get_item(key) -> shmc.Item | None\n\n"
    "The value of key with its metadata, an Item (value, flags, cas,\n"
    "expire_at: absolute unix seconds, 0 for never), or None when it is\n"
    "missing or expired.");

METHOD_VIA(get_item, get_meta, "get_item", true)

PyDoc_STRVAR(
    Client_get_into_doc,
    "get_into(key, buffer) -> int | None\n\n"
    "Copies the value of key into buffer (any writable bytes-like object:\n"
    "bytearray, memoryview, array, mmap) without making a bytes object,\n"
    "and returns its length; None when the key is missing or expired.\n"
    "Raises shmc.BufferTooSmall (its .size is the length needed) when the\n"
    "value does not fit; the buffer's contents are then unspecified.");

static PyObject *
Client_get_into(ClientObject *self, PyObject *const *args, Py_ssize_t nargs,
                PyObject *kwnames)
{
    static const char *const names[] = {"key", "buffer", NULL};
    PyObject *a[2];
    struct shmc_item it;
    Py_ssize_t have;
    Py_buffer b;
    Key k;
    int rc;

    if (parse_args("get_into", args, nargs, kwnames, names, 2, 2, a) < 0 ||
        key_get(a[0], &k) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(a[1], &b, PyBUF_WRITABLE) < 0) {
        if (PyErr_ExceptionMatches(PyExc_BufferError) ||
            PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Format(PyExc_TypeError,
                         "get_into() needs a writable bytes-like buffer "
                         "(bytearray, memoryview, ...), not %.100s",
                         Py_TYPE(a[1])->tp_name);
        }
        key_release(&k);
        return NULL;
    }
    if (b.len >= NOGIL_BYTES) {
        WITH_HANDLE_NOGIL(self, c, rc,
                          shmc_get_item(c, k.p, k.n, b.buf, b.len, &it));
    }
    else {
        WITH_HANDLE(self, c, rc,
                    shmc_get_item(c, k.p, k.n, b.buf, b.len, &it));
    }
    have = b.len;
    PyBuffer_Release(&b);
    key_release(&k);
    switch (rc) {
    case 0:
        return PyLong_FromSize_t(it.vlen);
    case -ENOENT:
        Py_RETURN_NONE;
    case -ENOBUFS:
        return raise_buffer_too_small(it.vlen, have);
    default:
        return raise_rc(rc, "get_into");
    }
}

/* ------------------------------------------------------------------------
 * Client: writes
 * ------------------------------------------------------------------------ */

enum store_op { OP_SET, OP_ADD, OP_REPLACE, OP_CAS, OP_APPEND, OP_PREPEND };

static const char *const store_names[] = {"set", "add",    "replace",
                                          "cas", "append", "prepend"};

static int
store_call(shmc *c, enum store_op op, const Key *k, const Py_buffer *v,
           uint64_t version, const struct shmc_store_opts *o)
{
    switch (op) {
    case OP_SET:
        return shmc_set_ex(c, k->p, k->n, v->buf, v->len, o, NULL);
    case OP_ADD:
        return shmc_add(c, k->p, k->n, v->buf, v->len, o, NULL);
    case OP_REPLACE:
        return shmc_replace(c, k->p, k->n, v->buf, v->len, o, NULL);
    case OP_CAS:
        return shmc_cas(c, k->p, k->n, v->buf, v->len, version, o, NULL);
    case OP_APPEND:
        return shmc_append(c, k->p, k->n, v->buf, v->len, NULL);
    case OP_PREPEND:
        return shmc_prepend(c, k->p, k->n, v->buf, v->len, NULL);
    }
    return -EINVAL;
}

/* The stores: set() returns None, the conditional ones True, or False
 * when their condition failed. */
static PyObject *
store(ClientObject *self, PyObject *const *args, Py_ssize_t nargs,
      PyObject *kwnames, enum store_op op)
{
    static const char *const plain[] = {"key", "value", "ttl", "flags", NULL};
    static const char *const cas[] = {"key", "value", "cas",
                                      "ttl", "flags", NULL};
    static const char *const joins[] = {"key", "value", NULL};
    const char *fname = store_names[op];
    const char *const *names;
    PyObject *a[5], **rest;
    struct shmc_store_opts o;
    unsigned long long version = 0;
    Py_buffer v;
    Key k;
    int rc, npos;

    if (op == OP_CAS) {
        names = cas, npos = 5, rest = a + 3;
    }
    else if (op == OP_APPEND || op == OP_PREPEND) {
        names = joins, npos = 2, rest = NULL;
    }
    else {
        names = plain, npos = 4, rest = a + 2;
    }
    if (parse_args(fname, args, nargs, kwnames, names, npos,
                   op == OP_CAS ? 3 : 2, a) < 0) {
        return NULL;
    }
    if (op == OP_CAS && uint_arg(a[2], "cas", UINT64_MAX, 0, &version) < 0) {
        return NULL;
    }
    o.ttl_s = o.flags = 0;
    if (rest != NULL && (u32_arg(rest[0], "ttl", &o.ttl_s) < 0 ||
                         u32_arg(rest[1], "flags", &o.flags) < 0)) {
        return NULL;
    }
    if (key_get(a[0], &k) < 0) {
        return NULL;
    }
    if (value_get(a[1], &v) < 0) {
        key_release(&k);
        return NULL;
    }
    if (v.len >= NOGIL_BYTES) {
        WITH_HANDLE_NOGIL(self, c, rc, store_call(c, op, &k, &v, version, &o));
    }
    else {
        WITH_HANDLE(self, c, rc, store_call(c, op, &k, &v, version, &o));
    }
    PyBuffer_Release(&v);
    key_release(&k);
    if (rc == 0) {
        return op == OP_SET ? Py_NewRef(Py_None) : Py_NewRef(Py_True);
    }
    if ((rc == -EEXIST && (op == OP_ADD || op == OP_CAS)) ||
        (rc == -ENOENT && op != OP_SET && op != OP_ADD)) {
        Py_RETURN_FALSE;
    }
    if (rc == -E2BIG) {
        return raise_too_large(self, k.n, v.len);
    }
    return raise_rc(rc, fname);
}

PyDoc_STRVAR(
    Client_set_doc,
    "set(key, value, ttl=0, flags=0) -> None\n\n"
    "Stores key -> value (any bytes-like object, read in place) for ttl\n"
    "seconds (0: no expiry), with 32 bits of flags that get_item() returns.\n"
    "Raises shmc.ValueTooLarge when key + value exceed max_item.");

METHOD_VIA(set, store, OP_SET)

PyDoc_STRVAR(
    Client_add_doc,
    "add(key, value, ttl=0, flags=0) -> bool\n\n"
    "Stores key -> value only if key is missing or expired; False (nothing\n"
    "stored) if it is present.  Of processes adding one key at once,\n"
    "exactly one gets True.");

METHOD_VIA(add, store, OP_ADD)

PyDoc_STRVAR(
    Client_replace_doc,
    "replace(key, value, ttl=0, flags=0) -> bool\n\n"
    "Stores key -> value only if key is present; False (nothing stored) if\n"
    "it is missing or expired.");

METHOD_VIA(replace, store, OP_REPLACE)

PyDoc_STRVAR(
    Client_cas_doc,
    "cas(key, value, cas, ttl=0, flags=0) -> bool\n\n"
    "Stores key -> value only if the item's version is still cas (from\n"
    "gets() or get_item()); False (nothing stored) if it was written since\n"
    "or is gone: read it again and retry.");

METHOD_VIA(cas, store, OP_CAS)

PyDoc_STRVAR(
    Client_append_doc,
    "append(key, value) -> bool\n\n"
    "Appends value to the value of key (keeping its flags and expiry);\n"
    "False if key is missing (nothing is created).");

METHOD_VIA(append, store, OP_APPEND)

PyDoc_STRVAR(Client_prepend_doc,
             "prepend(key, value) -> bool\n\n"
             "Puts value before the value of key; False if key is missing.");

METHOD_VIA(prepend, store, OP_PREPEND)

PyDoc_STRVAR(Client_delete_doc,
             "delete(key) -> bool\n\n"
             "Removes key; False if it was missing or expired.");

static PyObject *
Client_delete(ClientObject *self, PyObject *const *args, Py_ssize_t nargs,
              PyObject *kwnames)
{
    static const char *const names[] = {"key", NULL};
    PyObject *a[1];
    Key k;
    int rc;

    if (parse_args("delete", args, nargs, kwnames, names, 1, 1, a) < 0 ||
        key_get(a[0], &k) < 0) {
        return NULL;
    }
    WITH_HANDLE(self, c, rc, shmc_del(c, k.p, k.n));
    key_release(&k);
    if (rc == 0 || rc == -ENOENT) {
        return PyBool_FromLong(rc == 0);
    }
    return raise_rc(rc, "delete");
}

PyDoc_STRVAR(
    Client_touch_doc,
    "touch(key, ttl) -> bool\n\n"
    "Gives key a new TTL in seconds (0: never expires); False if it is\n"
    "missing or expired.");

static PyObject *
Client_touch(ClientObject *self, PyObject *const *args, Py_ssize_t nargs,
             PyObject *kwnames)
{
    static const char *const names[] = {"key", "ttl", NULL};
    PyObject *a[2];
    uint32_t ttl;
    Key k;
    int rc;

    if (parse_args("touch", args, nargs, kwnames, names, 2, 2, a) < 0 ||
        u32_arg(a[1], "ttl", &ttl) < 0 || key_get(a[0], &k) < 0) {
        return NULL;
    }
    WITH_HANDLE(self, c, rc, shmc_touch(c, k.p, k.n, ttl));
    key_release(&k);
    if (rc == 0 || rc == -ENOENT) {
        return PyBool_FromLong(rc == 0);
    }
    return raise_rc(rc, "touch");
}

PyDoc_STRVAR(Client_ttl_doc,
             "ttl(key) -> int | None\n\n"
             "The seconds key has left, 0 if it never expires, None if it is\n"
             "missing or expired.");

static PyObject *
Client_ttl(ClientObject *self, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames)
{
    static const char *const names[] = {"key", NULL};
    PyObject *a[1];
    uint32_t ttl = 0;
    Key k;
    int rc;

    if (parse_args("ttl", args, nargs, kwnames, names, 1, 1, a) < 0 ||
        key_get(a[0], &k) < 0) {
        return NULL;
    }
    WITH_HANDLE(self, c, rc, shmc_ttl(c, k.p, k.n, &ttl));
    key_release(&k);
    if (rc == 0) {
        return PyLong_FromUnsignedLong(ttl);
    }
    if (rc == -ENOENT) {
        Py_RETURN_NONE;
    }
    return raise_rc(rc, "ttl");
}

/* ------------------------------------------------------------------------
 * Client: counters
 * ------------------------------------------------------------------------ */

static PyObject *
arith(ClientObject *self, PyObject *const *args, Py_ssize_t nargs,
      PyObject *kwnames, bool decr)
{
    static const char *const names[] = {"key", "delta", "initial", "ttl",
                                        NULL};
    const char *fname = decr ? "decr" : "incr";
    unsigned long long delta, init = 0;
    PyObject *a[4];
    bool with_init;
    uint64_t out = 0;
    uint32_t ttl;
    Key k;
    int rc;

    if (parse_args(fname, args, nargs, kwnames, names, 4, 1, a) < 0 ||
        uint_arg(a[1], "delta", UINT64_MAX, 1, &delta) < 0 ||
        u32_arg(a[3], "ttl", &ttl) < 0) {
        return NULL;
    }
    with_init = a[2] != NULL && a[2] != Py_None;
    if (with_init && uint_arg(a[2], "initial", UINT64_MAX, 0, &init) < 0) {
        return NULL;
    }
    if (key_get(a[0], &k) < 0) {
        return NULL;
    }
    if (with_init) {
        WITH_HANDLE(self, c, rc,
                    (decr ? shmc_decr_init : shmc_incr_init)(
                        c, k.p, k.n, delta, init, ttl, &out));
    }
    else {
        WITH_HANDLE(self, c, rc,
                    (decr ? shmc_decr : shmc_incr)(c, k.p, k.n, delta, &out));
    }
    key_release(&k);
    if (rc == 0) {
        return PyLong_FromUnsignedLongLong(out);
    }
    if (rc == -ENOENT) {
        PyErr_SetObject(PyExc_KeyError, a[0]);
        return NULL;
    }
    if (rc == -E2BIG) {
        return raise_coded(ValueTooLarge, rc,
                           "%s: the key is too long to hold a 20-digit "
                           "number beside it in one item",
                           fname);
    }
    return raise_rc(rc, fname);
}

PyDoc_STRVAR(
    Client_incr_doc,
    "incr(key, delta=1, initial=None, ttl=0) -> int\n\n"
    "Adds delta to the decimal number stored at key, atomically across\n"
    "processes, and returns the result (wrapping at 2**64).  A missing key\n"
    "raises KeyError; with initial it is created as initial (with ttl)\n"
    "and then counted, in one step: incr(k, 1, initial=0) gives 1.  A value\n"
    "that is not a number raises shmc.NotANumber.");

METHOD_VIA(incr, arith, false)

PyDoc_STRVAR(Client_decr_doc,
             "decr(key, delta=1, initial=None, ttl=0) -> int\n\n"
             "As incr(), subtracting; the result stops at 0.");

METHOD_VIA(decr, arith, true)

/* ------------------------------------------------------------------------
 * Client: many keys
 * ------------------------------------------------------------------------ */

/* One batch of Client.get_many(): the n keys items[] into dict d. */
static int
get_batch(ClientObject *self, PyObject **items, Py_ssize_t n, char *arena,
          bool with_flags, PyObject *d)
{
    struct shmc_mkey mk[MGET_BATCH];
    struct shmc_mres res[MGET_BATCH];
    Key ks[MGET_BATCH];
    Py_ssize_t got = 0;
    int rc = 0;

    for (; got < n; got++) {
        if (key_get(items[got], &ks[got]) < 0) {
            rc = ERR_PYTHON;
            goto out;
        }
        mk[got].key = ks[got].p;
        mk[got].klen = ks[got].n;
        mk[got].buf = arena + got * MGET_CAP;
        mk[got].cap = MGET_CAP;
    }
    WITH_HANDLE(self, c, rc, shmc_mget(c, n, mk, res, 0));
    if (rc < 0) {
        raise_rc(rc, "get_many");
        rc = ERR_PYTHON;
        goto out;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        struct shmc_item it = {.flags = res[i].flags};
        PyObject *v = NULL;
        int r = res[i].rc;

        if (r == 0) {
            v = PyBytes_FromStringAndSize(mk[i].buf, res[i].vlen);
            r = v ? 0 : ERR_PYTHON;
        }
        else if (r == -ENOBUFS) {
            v = read_item(self, &ks[i], &it, &r, NULL);
        }
        if (r == -ENOENT) {
            continue;
        }
        if (r < 0) {
            if (r != ERR_PYTHON) {
                raise_rc(r, "get_many");
            }
            rc = ERR_PYTHON;
            goto out;
        }
        if (with_flags) {
            v = Py_BuildValue("(Nk)", v, (unsigned long)it.flags);
        }
        if (v == NULL || PyDict_SetItem(d, items[i], v) < 0) {
            Py_XDECREF(v);
            rc = ERR_PYTHON;
            goto out;
        }
        Py_DECREF(v);
    }
out:
    for (Py_ssize_t i = 0; i < got; i++) {
        key_release(&ks[i]);
    }
    return rc;
}

PyDoc_STRVAR(
    Client_get_many_doc,
    "get_many(keys, *, with_flags=False) -> dict\n\n"
    "The values of keys (an iterable), in one pass of the library's\n"
    "multi-get: a dict of each key found to its value, or to (value, flags)\n"
    "with with_flags; missing keys are left out.");

static PyObject *
Client_get_many(ClientObject *self, PyObject *const *args, Py_ssize_t nargs,
                PyObject *kwnames)
{
    static const char *const names[] = {"keys", "with_flags", NULL};
    PyObject *a[2], *seq, *d;
    Py_ssize_t n;
    char *arena;
    int with_flags = 0;

    if (parse_args("get_many", args, nargs, kwnames, names, 1, 1, a) < 0) {
        return NULL;
    }
    if (a[1] != NULL && (with_flags = PyObject_IsTrue(a[1])) < 0) {
        return NULL;
    }
    if (PyUnicode_Check(a[0]) || PyBytes_Check(a[0])) {
        PyErr_SetString(PyExc_TypeError,
                        "get_many() takes an iterable of keys, not one key");
        return NULL;
    }
    seq = PySequence_Fast(a[0], "get_many() takes an iterable of keys");
    if (seq == NULL) {
        return NULL;
    }
    n = PySequence_Fast_GET_SIZE(seq);
    d = PyDict_New();
    arena = PyMem_Malloc(MGET_BATCH * MGET_CAP);
    if (d == NULL || arena == NULL) {
        if (arena == NULL) {
            PyErr_NoMemory();
        }
        Py_XDECREF(d);
        PyMem_Free(arena);
        Py_DECREF(seq);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i += MGET_BATCH) {
        /* The keys were read from seq, which holds them. */
        if (get_batch(self, PySequence_Fast_ITEMS(seq) + i,
                      Py_MIN(MGET_BATCH, n - i), arena, with_flags, d) < 0) {
            Py_CLEAR(d);
            break;
        }
    }
    PyMem_Free(arena);
    Py_DECREF(seq);
    return d;
}

PyDoc_STRVAR(
    Client_set_many_doc,
    "set_many(mapping, ttl=0, flags=0) -> list\n\n"
    "set() of every key -> value of mapping (a dict or an iterable of\n"
    "pairs), not atomically.  Returns the keys that were not stored because\n"
    "they were too large (as pymemcache does) or under a prefix the\n"
    "daemon's near cache blocks; other errors raise.");

static PyObject *
Client_set_many(ClientObject *self, PyObject *const *args, Py_ssize_t nargs,
                PyObject *kwnames)
{
    static const char *const names[] = {"mapping", "ttl", "flags", NULL};
    struct shmc_store_opts o;
    PyObject *a[3], *pairs, *it, *pair, *failed;

    if (parse_args("set_many", args, nargs, kwnames, names, 3, 1, a) < 0 ||
        u32_arg(a[1], "ttl", &o.ttl_s) < 0 ||
        u32_arg(a[2], "flags", &o.flags) < 0) {
        return NULL;
    }
    pairs = PyDict_Check(a[0]) ? PyDict_Items(a[0]) : Py_NewRef(a[0]);
    if (pairs == NULL) {
        return NULL;
    }
    it = PyObject_GetIter(pairs);
    Py_DECREF(pairs);
    failed = it ? PyList_New(0) : NULL;
    if (failed == NULL) {
        Py_XDECREF(it);
        return NULL;
    }
    while ((pair = PyIter_Next(it)) != NULL) {
        PyObject *key, *value;
        Py_buffer v;
        Key k;
        int rc;

        if (!PyArg_ParseTuple(pair,
                              "OO;set_many() takes a mapping or "
                              "(key, value) pairs",
                              &key, &value) ||
            key_get(key, &k) < 0) {
            Py_DECREF(pair);
            goto fail;
        }
        if (value_get(value, &v) < 0) {
            key_release(&k);
            Py_DECREF(pair);
            goto fail;
        }
        WITH_HANDLE(self, c, rc,
                    shmc_set_ex(c, k.p, k.n, v.buf, v.len, &o, NULL));
        PyBuffer_Release(&v);
        key_release(&k);
        if (rc == -E2BIG || rc == -ESTALE) {
            rc = PyList_Append(failed, key);
        }
        else if (rc < 0) {
            raise_rc(rc, "set_many");
        }
        Py_DECREF(pair);
        if (rc < 0) {
            goto fail;
        }
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) {
        Py_DECREF(failed);
        return NULL;
    }
    return failed;
fail:
    Py_DECREF(it);
    Py_DECREF(failed);
    return NULL;
}

PyDoc_STRVAR(
    Client_delete_many_doc,
    "delete_many(keys) -> int\n\n"
    "delete() of every key of keys (an iterable); returns how many were\n"
    "present.");

static PyObject *
Client_delete_many(ClientObject *self, PyObject *const *args, Py_ssize_t nargs,
                   PyObject *kwnames)
{
    static const char *const names[] = {"keys", NULL};
    PyObject *a[1], *it, *key;
    Py_ssize_t deleted = 0;

    if (parse_args("delete_many", args, nargs, kwnames, names, 1, 1, a) < 0) {
        return NULL;
    }
    if (PyUnicode_Check(a[0]) || PyBytes_Check(a[0])) {
        PyErr_SetString(PyExc_TypeError,
                        "delete_many() takes an iterable of keys, not one "
                        "key");
        return NULL;
    }
    it = PyObject_GetIter(a[0]);
    if (it == NULL) {
        return NULL;
    }
    while ((key = PyIter_Next(it)) != NULL) {
        Key k;
        int rc;

        if (key_get(key, &k) < 0) {
            Py_DECREF(key);
            Py_DECREF(it);
            return NULL;
        }
        WITH_HANDLE(self, c, rc, shmc_del(c, k.p, k.n));
        key_release(&k);
        Py_DECREF(key);
        if (rc == 0) {
            deleted++;
        }
        else if (rc != -ENOENT) {
            Py_DECREF(it);
            return raise_rc(rc, "delete_many");
        }
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) {
        return NULL;
    }
    return PyLong_FromSsize_t(deleted);
}

/* ------------------------------------------------------------------------
 * Client: get_or_load
 * ------------------------------------------------------------------------ */

/* What load_cb() needs: the Python loader and the thread state to take
 * the GIL back with. */
struct load_ctx {
    PyObject *loader;
    PyThreadState *ts;
    uint32_t ttl;            /* for a loader that returns no TTL */
    PyObject *et, *ev, *etb; /* the loader's exception */
};

/* Reads the loader's result r (bytes-like, or (bytes-like, ttl)) into
 * buf.  0, or -1 with an exception set. */
static int
load_result(PyObject *r, void *buf, size_t cap, size_t *vlen, uint32_t *ttl_s,
            uint32_t dflt_ttl)
{
    PyObject *value = r;
    Py_buffer v;

    *ttl_s = dflt_ttl;
    if (PyTuple_Check(r)) {
        if (PyTuple_GET_SIZE(r) != 2) {
            PyErr_SetString(PyExc_TypeError, "the loader must return bytes or "
                                             "(bytes, ttl)");
            return -1;
        }
        value = PyTuple_GET_ITEM(r, 0);
        if (u32_arg(PyTuple_GET_ITEM(r, 1), "the loader's ttl", ttl_s) < 0) {
            return -1;
        }
    }
    if (!PyObject_CheckBuffer(value) || PyUnicode_Check(value)) {
        PyErr_Format(PyExc_TypeError,
                     "the loader must return bytes or (bytes, ttl), not "
                     "%.100s",
                     Py_TYPE(value)->tp_name);
        return -1;
    }
    if (value_get(value, &v) < 0) {
        return -1;
    }
    *vlen = v.len;
    if ((size_t)v.len <= cap) {
        memcpy(buf, v.buf, v.len);
    } /* else the library answers -ENOBUFS */
    PyBuffer_Release(&v);
    return 0;
}

/* The shmc_loader: runs the Python loader with the GIL taken back. */
static int
load_cb(const void *key, size_t klen, void *buf, size_t cap, size_t *vlen,
        uint32_t *ttl_s, void *arg)
{
    struct load_ctx *x = arg;
    PyObject *r;
    int rc = 0;

    PyEval_RestoreThread(x->ts);
    r = PyObject_CallNoArgs(x->loader);
    if (r == NULL || load_result(r, buf, cap, vlen, ttl_s, x->ttl) < 0) {
        /* Kept for the caller; the library ends the load without a
         * value, and another waiter loads. */
        PyErr_Fetch(&x->et, &x->ev, &x->etb);
        rc = -ECANCELED;
    }
    Py_XDECREF(r);
    x->ts = PyEval_SaveThread();
    return rc;
}

PyDoc_STRVAR(
    Client_get_or_load_doc,
    "get_or_load(key, loader, ttl=0, *, grace=0) -> bytes\n\n"
    "The value of key; on a miss, loader() is called to produce it (bytes,\n"
    "or (bytes, ttl); ttl is the default TTL), and the value is stored and\n"
    "returned.  Across all processes of the host only one loader runs for\n"
    "a key at a time: the other callers wait (without the GIL) and read\n"
    "the stored value.  An exception in the loader propagates to its caller\n"
    "(nothing is stored) and one of the waiters loads instead.  With grace\n"
    "> 0, a value past its TTL is served stale for up to grace seconds\n"
    "while one caller refreshes it (stale-while-revalidate).  The value is\n"
    "stored with flags 0, under a fill lease (see fill()): when key is\n"
    "deleted or invalidated while the loader runs, its value is returned\n"
    "but not cached.");

static PyObject *
Client_get_or_load(ClientObject *self, PyObject *const *args, Py_ssize_t nargs,
                   PyObject *kwnames)
{
    static const char *const names[] = {"key", "loader", "ttl", "grace", NULL};
    struct load_ctx x = {0};
    PyObject *a[4], *v = NULL;
    uint32_t grace;
    size_t vlen = 0, cap;
    char *buf;
    Key k;
    int rc = ERR_PYTHON;

    if (parse_args("get_or_load", args, nargs, kwnames, names, 3, 2, a) < 0 ||
        u32_arg(a[2], "ttl", &x.ttl) < 0 ||
        u32_arg(a[3], "grace", &grace) < 0) {
        return NULL;
    }
    if (!PyCallable_Check(a[1])) {
        PyErr_Format(PyExc_TypeError, "loader must be callable, not %.100s",
                     Py_TYPE(a[1])->tp_name);
        return NULL;
    }
    x.loader = a[1];
    if (key_get(a[0], &k) < 0) {
        return NULL;
    }
    for (int try = 0; try < 2; try++) {
        shmc *c = client_handle(self);

        if (c == NULL) {
            rc = ERR_PYTHON;
            break;
        }
        /* Room for the largest value: the loader's result must fit. */
        cap = shmc_max_item(c);
        buf = PyMem_RawMalloc(cap);
        if (buf == NULL) {
            PyErr_NoMemory();
            rc = ERR_PYTHON;
            break;
        }
        self->busy++;
        x.ts = PyEval_SaveThread();
        if (grace > 0) {
            rc = shmc_get_or_load_swr(c, k.p, k.n, buf, cap, &vlen, grace,
                                      load_cb, &x);
        }
        else {
            rc = shmc_get_or_load(c, k.p, k.n, buf, cap, &vlen, load_cb, &x);
        }
        PyEval_RestoreThread(x.ts);
        client_unbusy(self);
        if (rc == 0) {
            v = PyBytes_FromStringAndSize(buf, vlen);
        }
        PyMem_RawFree(buf);
        if (rc != -ECHILD) {
            break;
        }
        client_forget(self, c);
    }
    key_release(&k);
    if (x.et != NULL) {
        Py_XDECREF(v);
        PyErr_Restore(x.et, x.ev, x.etb);
        return NULL;
    }
    if (rc == 0 || rc == ERR_PYTHON) {
        return v;
    }
    if (rc == -ENOBUFS || rc == -E2BIG) {
        return raise_too_large(self, k.n, vlen);
    }
    return raise_rc(rc, "get_or_load");
}

/* ------------------------------------------------------------------------
 * Client: fill leases (no stale fill)
 * ------------------------------------------------------------------------ */

/* A fill lease (shmc.h "Fill leases"): a plain value, made only by
 * Client.get_lease() and Client.lease_begin(), read only by
 * Client.fill(). */
typedef struct {
    PyObject_HEAD
    struct shmc_lease l;
} LeaseObject;

static PyTypeObject LeaseType;

static PyObject *
lease_new(const struct shmc_lease *l)
{
    LeaseObject *o = PyObject_New(LeaseObject, &LeaseType);

    if (o != NULL) {
        o->l = *l;
    }
    return (PyObject *)o;
}

static PyObject *
Lease_repr(PyObject *self)
{
    return PyUnicode_FromString("<shmc.Lease>");
}

PyDoc_STRVAR(
    Lease_doc,
    "A fill lease, from Client.get_lease() or Client.lease_begin(), for\n"
    "Client.fill().  Taken at a miss, before the store of record (Redis, a\n"
    "database) is read, it is voided by every deletion or invalidation in\n"
    "the key's segment, a flush of a namespace over the key, or the\n"
    "namespace being blocked (the daemon's Redis tracking is down); a fill\n"
    "under a void lease stores nothing.  Opaque and immutable; it holds\n"
    "nothing and needs no release.");

static PyTypeObject LeaseType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmc.Lease",
    .tp_basicsize = sizeof(LeaseObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = Lease_doc,
    .tp_repr = Lease_repr,
};

PyDoc_STRVAR(
    Client_get_lease_doc,
    "get_lease(key) -> (bytes, None) | (None, shmc.Lease)\n\n"
    "The value of key as get() reads it, with a fill lease on a miss: a\n"
    "hit returns (value, None), a miss (None, lease).  After a miss, read\n"
    "the value from the store of record and cache it with\n"
    "fill(lease, key, value): an invalidation of key that comes between\n"
    "this call and the fill voids the lease, and the old value is not\n"
    "cached.");

static PyObject *
Client_get_lease(ClientObject *self, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames)
{
    static const char *const names[] = {"key", NULL};
    struct shmc_lease l;
    struct shmc_item it;
    PyObject *a[1], *v;
    Key k;
    int rc;

    if (parse_args("get_lease", args, nargs, kwnames, names, 1, 1, a) < 0 ||
        key_get(a[0], &k) < 0) {
        return NULL;
    }
    v = read_item(self, &k, &it, &rc, &l);
    key_release(&k);
    if (v != NULL) {
        return Py_BuildValue("(NO)", v, Py_None);
    }
    if (rc != -ENOENT) {
        return NULL;
    }
    return Py_BuildValue("(ON)", Py_None, lease_new(&l));
}

PyDoc_STRVAR(
    Client_lease_begin_doc,
    "lease_begin(key) -> shmc.Lease\n\n"
    "A fill lease on key, as a miss of get_lease() takes it: for a caller\n"
    "that found key missing otherwise (get_many()).  Take it before\n"
    "reading the store of record.  Reads and writes nothing in the cache.");

static PyObject *
Client_lease_begin(ClientObject *self, PyObject *const *args, Py_ssize_t nargs,
                   PyObject *kwnames)
{
    static const char *const names[] = {"key", NULL};
    struct shmc_lease l;
    PyObject *a[1];
    Key k;
    int rc;

    if (parse_args("lease_begin", args, nargs, kwnames, names, 1, 1, a) < 0 ||
        key_get(a[0], &k) < 0) {
        return NULL;
    }
    WITH_HANDLE(self, c, rc, shmc_lease_begin(c, k.p, k.n, &l));
    key_release(&k);
    return rc == 0 ? lease_new(&l) : raise_rc(rc, "lease_begin");
}

PyDoc_STRVAR(
    Client_fill_doc,
    "fill(lease, key, value, ttl=0, flags=0) -> bool\n\n"
    "Caches key -> value, read from the store of record after the miss\n"
    "that began lease, if key is still missing and lease still valid.\n"
    "True when cached; False when not: the lease was voided (key, or\n"
    "another key of its segment, was deleted or invalidated since, or a\n"
    "namespace over it flushed or blocked: serve the value read for this\n"
    "request, but it may be stale for the next) or a value was stored\n"
    "meanwhile (it stays).  A lease begun on a key of another segment\n"
    "raises ValueError; a value too large shmc.ValueTooLarge.");

static PyObject *
Client_fill(ClientObject *self, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    static const char *const names[] = {"lease", "key",   "value",
                                        "ttl",   "flags", NULL};
    struct shmc_store_opts o;
    const struct shmc_lease *l;
    PyObject *a[5];
    Py_buffer v;
    Key k;
    int rc;

    if (parse_args("fill", args, nargs, kwnames, names, 5, 3, a) < 0 ||
        u32_arg(a[3], "ttl", &o.ttl_s) < 0 ||
        u32_arg(a[4], "flags", &o.flags) < 0) {
        return NULL;
    }
    if (!PyObject_TypeCheck(a[0], &LeaseType)) {
        PyErr_Format(PyExc_TypeError,
                     "fill() takes a shmc.Lease (from get_lease() or "
                     "lease_begin()), not %.100s",
                     Py_TYPE(a[0])->tp_name);
        return NULL;
    }
    l = &((LeaseObject *)a[0])->l;
    if (key_get(a[1], &k) < 0) {
        return NULL;
    }
    if (value_get(a[2], &v) < 0) {
        key_release(&k);
        return NULL;
    }
    if (v.len >= NOGIL_BYTES) {
        WITH_HANDLE_NOGIL(self, c, rc,
                          shmc_fill(c, l, k.p, k.n, v.buf, v.len, &o, NULL));
    }
    else {
        WITH_HANDLE(self, c, rc,
                    shmc_fill(c, l, k.p, k.n, v.buf, v.len, &o, NULL));
    }
    PyBuffer_Release(&v);
    key_release(&k);
    switch (rc) {
    case 0:
        Py_RETURN_TRUE;
    case -ESTALE:
    case -EEXIST:
        Py_RETURN_FALSE;
    case -EINVAL:
        PyErr_SetString(PyExc_ValueError,
                        "fill(): the lease was begun on a key of another "
                        "segment; take it with get_lease(key) or "
                        "lease_begin(key) of the key you fill");
        return NULL;
    case -E2BIG:
        return raise_too_large(self, k.n, v.len);
    default:
        return raise_rc(rc, "fill");
    }
}

/* ------------------------------------------------------------------------
 * Client: the whole cache, statistics, namespaces
 * ------------------------------------------------------------------------ */

PyDoc_STRVAR(Client_clear_doc,
             "clear() -> None\n\n"
             "Removes every entry of the cache (for every process).");

static PyObject *
Client_clear(ClientObject *self, PyObject *unused)
{
    int rc;

    WITH_HANDLE_NOGIL(self, c, rc, shmc_clear(c));
    return rc == 0 ? Py_NewRef(Py_None) : raise_rc(rc, "clear");
}

PyDoc_STRVAR(
    Client_ping_doc,
    "ping() -> None\n\n"
    "A round trip to the daemon; raises shmc.DaemonUnavailable when it is\n"
    "not running.  (Data calls work on the mapping without it.)");

static PyObject *
Client_ping(ClientObject *self, PyObject *unused)
{
    int rc;

    WITH_HANDLE_NOGIL(self, c, rc, shmc_ping(c));
    return rc == 0 ? Py_NewRef(Py_None) : raise_rc(rc, "ping");
}

/* The fields of struct shmc_stats, in order. */
#define STATS_FIELDS(X)                                                       \
    X(hits)                                                                   \
    X(misses)                                                                 \
    X(sets)                                                                   \
    X(overwrites)                                                             \
    X(deletes)                                                                \
    X(evictions)                                                              \
    X(moves)                                                                  \
    X(expirations)                                                            \
    X(repairs)                                                                \
    X(entries)                                                                \
    X(bytes_used)                                                             \
    X(bytes_total)                                                            \
    X(segments)

PyDoc_STRVAR(
    Client_stats_doc,
    "stats() -> dict\n\n"
    "The cache's totals, read from the mapping: hits, misses, sets,\n"
    "overwrites, deletes, evictions, moves, expirations, repairs, entries,\n"
    "bytes_used, bytes_total, segments.");

static PyObject *
Client_stats(ClientObject *self, PyObject *unused)
{
    struct shmc_stats st;
    PyObject *d;
    int rc;

    WITH_HANDLE(self, c, rc, shmc_stat(c, &st));
    if (rc < 0) {
        return raise_rc(rc, "stats");
    }
#define STAT_ITEM(f) #f, (unsigned long long)st.f,
#define STAT_FMT(f) "sK"
    d = Py_BuildValue("{" STATS_FIELDS(STAT_FMT) "}",
                      STATS_FIELDS(STAT_ITEM) NULL);
#undef STAT_FMT
#undef STAT_ITEM
    return d;
}

/* A namespace call: prefix in, 0 or the library's error out. */
static int
ns_call(ClientObject *self, PyObject *prefix, const char *fname,
        int (*fn)(shmc *, const void *, size_t))
{
    Key k;
    int rc;

    if (key_get_max(prefix, &k, SHMC_NS_PREFIX_MAX, "the prefix") < 0) {
        return ERR_PYTHON;
    }
    WITH_HANDLE_NOGIL(self, c, rc, fn(c, k.p, k.n));
    key_release(&k);
    return rc;
}

/* The errors of the namespace calls, -ENOENT but for add. */
static PyObject *
ns_error(int rc, PyObject *prefix, const char *fname)
{
    switch (rc) {
    case -ENOENT:
        return raise_coded(PyExc_KeyError, rc,
                           "%s: %R is not a namespace (register it with "
                           "add_namespace() first)",
                           fname, prefix);
    case -ENOSPC:
        return raise_coded(Error, rc,
                           "%s: the region holds %d namespaces already "
                           "(delete_namespace() one)",
                           fname, SHMC_NS_MAX);
    default:
        return raise_rc(rc, fname);
    }
}

PyDoc_STRVAR(
    Client_add_namespace_doc,
    "add_namespace(prefix) -> bool\n\n"
    "Registers prefix (str or bytes, 1 to 52 bytes) as a namespace with the\n"
    "daemon, so that flush_namespace() can drop its keys; False if it was\n"
    "registered already.  It covers the keys written before too.");

static PyObject *
Client_add_namespace(ClientObject *self, PyObject *prefix)
{
    int rc = ns_call(self, prefix, "add_namespace", shmc_ns_add);

    if (rc == 0 || rc == -EEXIST) {
        return PyBool_FromLong(rc == 0);
    }
    return ns_error(rc, prefix, "add_namespace");
}

PyDoc_STRVAR(
    Client_flush_namespace_doc,
    "flush_namespace(prefix) -> None\n\n"
    "Drops every key that starts with the registered namespace prefix, in\n"
    "constant time, for every process; keys written after live.  KeyError\n"
    "if prefix is not registered (add_namespace()).");

static PyObject *
Client_flush_namespace(ClientObject *self, PyObject *prefix)
{
    int rc = ns_call(self, prefix, "flush_namespace", shmc_ns_flush);

    return rc == 0 ? Py_NewRef(Py_None)
                   : ns_error(rc, prefix, "flush_namespace");
}

PyDoc_STRVAR(
    Client_delete_namespace_doc,
    "delete_namespace(prefix) -> None\n\n"
    "Unregisters the namespace prefix and drops its keys.  KeyError if it\n"
    "is not registered.");

static PyObject *
Client_delete_namespace(ClientObject *self, PyObject *prefix)
{
    int rc = ns_call(self, prefix, "delete_namespace", shmc_ns_del);

    return rc == 0 ? Py_NewRef(Py_None)
                   : ns_error(rc, prefix, "delete_namespace");
}

PyDoc_STRVAR(Client_namespaces_doc, "namespaces() -> list[bytes]\n\n"
                                    "The registered namespace prefixes.");

static PyObject *
Client_namespaces(ClientObject *self, PyObject *unused)
{
    struct shmc_ns_info *ns;
    PyObject *list;
    size_t n = 0;
    int rc;

    ns = PyMem_Malloc(SHMC_NS_MAX * sizeof(*ns));
    if (ns == NULL) {
        return PyErr_NoMemory();
    }
    WITH_HANDLE_NOGIL(self, c, rc, shmc_ns_list(c, ns, SHMC_NS_MAX, &n));
    if (rc < 0) {
        PyMem_Free(ns);
        return raise_rc(rc, "namespaces");
    }
    list = PyList_New(0);
    for (size_t i = 0; list != NULL && i < n && i < SHMC_NS_MAX; i++) {
        PyObject *p =
            PyBytes_FromStringAndSize((const char *)ns[i].prefix, ns[i].len);

        if (p == NULL || PyList_Append(list, p) < 0) {
            Py_CLEAR(list);
        }
        Py_XDECREF(p);
    }
    PyMem_Free(ns);
    return list;
}

PyDoc_STRVAR(Client_near_info_doc,
             "near_info() -> dict\n\n"
             "The daemon's near cache (shmcached --redis): {'state': 'off' "
             "(no --redis), 'connecting', 'up' or 'down', 'prefixes': the "
             "key prefixes whose copies it drops when Redis writes them, a "
             "list of bytes}.");

static PyObject *
Client_near_info(ClientObject *self, PyObject *unused)
{
    struct shmc_near_info *ni;
    PyObject *list, *d = NULL;
    int rc;

    ni = PyMem_Malloc(sizeof(*ni));
    if (ni == NULL) {
        return PyErr_NoMemory();
    }
    WITH_HANDLE_NOGIL(self, c, rc, shmc_near_query(c, ni));
    if (rc < 0) {
        PyMem_Free(ni);
        return raise_rc(rc, "near_info");
    }
    list = PyList_New(0);
    for (uint32_t i = 0; list != NULL && i < ni->nprefix; i++) {
        PyObject *p = PyBytes_FromStringAndSize(
            (const char *)ni->prefix[i].bytes, ni->prefix[i].len);

        if (p == NULL || PyList_Append(list, p) < 0) {
            Py_CLEAR(list);
        }
        Py_XDECREF(p);
    }
    if (list != NULL) {
        d = Py_BuildValue("{s:s,s:O}", "state", ni->state, "prefixes", list);
        Py_DECREF(list);
    }
    PyMem_Free(ni);
    return d;
}

/* ------------------------------------------------------------------------
 * Client: attributes
 * ------------------------------------------------------------------------ */

static PyObject *
Client_get_max_item(ClientObject *self, void *closure)
{
    shmc *c = client_handle(self);

    return c ? PyLong_FromSize_t(shmc_max_item(c)) : NULL;
}

static PyObject *
Client_get_segments(ClientObject *self, void *closure)
{
    shmc *c = client_handle(self);

    return c ? PyLong_FromUnsignedLong(shmc_segments(c)) : NULL;
}

static PyObject *
Client_get_client_id(ClientObject *self, void *closure)
{
    shmc *c = client_handle(self);

    return c ? PyLong_FromUnsignedLong(shmc_client_id(c)) : NULL;
}

static PyObject *
Client_get_closed(ClientObject *self, void *closure)
{
    return PyBool_FromLong(self->closed);
}

static PyObject *
Client_get_socket(ClientObject *self, void *closure)
{
    return Py_NewRef(self->socket_obj);
}

static PyGetSetDef Client_getset[] = {
    {"max_item", (getter)Client_get_max_item, NULL,
     "The largest key + value in bytes (half a segment).", NULL},
    {"segments", (getter)Client_get_segments, NULL,
     "The number of segments of the cache.", NULL},
    {"client_id", (getter)Client_get_client_id, NULL,
     "This process's client id with the daemon (it changes after a fork).",
     NULL},
    {"closed", (getter)Client_get_closed, NULL, "True after close().", NULL},
    {"socket", (getter)Client_get_socket, NULL,
     "The socket path given to the constructor (None: the default).", NULL},
    {NULL},
};

#define FAST(name)                                                            \
    {                                                                         \
#name, (PyCFunction)(void (*)(void))Client_##name,                    \
            METH_FASTCALL | METH_KEYWORDS, Client_##name##_doc                \
    }

static PyMethodDef Client_methods[] = {
    FAST(get),
    FAST(gets),
    FAST(get_item),
    FAST(get_into),
    FAST(set),
    FAST(add),
    FAST(replace),
    FAST(cas),
    FAST(append),
    FAST(prepend),
    FAST(delete),
    FAST(touch),
    FAST(ttl),
    FAST(incr),
    FAST(decr),
    FAST(get_many),
    FAST(set_many),
    FAST(delete_many),
    FAST(get_or_load),
    FAST(get_lease),
    FAST(lease_begin),
    FAST(fill),
    {"clear", (PyCFunction)Client_clear, METH_NOARGS, Client_clear_doc},
    {"ping", (PyCFunction)Client_ping, METH_NOARGS, Client_ping_doc},
    {"stats", (PyCFunction)Client_stats, METH_NOARGS, Client_stats_doc},
    {"add_namespace", (PyCFunction)Client_add_namespace, METH_O,
     Client_add_namespace_doc},
    {"flush_namespace", (PyCFunction)Client_flush_namespace, METH_O,
     Client_flush_namespace_doc},
    {"delete_namespace", (PyCFunction)Client_delete_namespace, METH_O,
     Client_delete_namespace_doc},
    {"namespaces", (PyCFunction)Client_namespaces, METH_NOARGS,
     Client_namespaces_doc},
    {"near_info", (PyCFunction)Client_near_info, METH_NOARGS,
     Client_near_info_doc},
    {"close", (PyCFunction)Client_close, METH_NOARGS, Client_close_doc},
    {"__enter__", (PyCFunction)Client_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)Client_exit, METH_VARARGS, NULL},
    {"__reduce__", (PyCFunction)Client_reduce, METH_NOARGS, Client_reduce_doc},
    {NULL},
};

PyDoc_STRVAR(
    Client_doc,
    "Client(socket=None)\n\n"
    "A handle on the host's shmcached cache: connects to the daemon's Unix\n"
    "socket (None: $SHMC_SOCKET, else the default paths) and maps the cache.\n"
    "Keys are str (UTF-8) or bytes-like, 1 to 8191 bytes; values bytes-like;\n"
    "reads return bytes.  Safe to share between threads, and usable in a\n"
    "child after fork() (it reopens itself there).  A context manager that\n"
    "closes it.  Raises shmc.DaemonUnavailable, shmc.AccessDenied or\n"
    "shmc.VersionMismatch when the cache cannot be opened.");

static PyTypeObject ClientType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmc.Client",
    .tp_basicsize = sizeof(ClientObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = Client_doc,
    .tp_new = Client_new,
    .tp_init = (initproc)Client_init,
    .tp_dealloc = (destructor)Client_dealloc,
    .tp_traverse = (traverseproc)Client_traverse,
    .tp_repr = (reprfunc)Client_repr,
    .tp_methods = Client_methods,
    .tp_getset = Client_getset,
    .tp_weaklistoffset = offsetof(ClientObject, weakreflist),
};

/* ------------------------------------------------------------------------
 * The module
 * ------------------------------------------------------------------------ */

static PyStructSequence_Field Item_fields[] = {
    {"value", "the value (bytes)"},
    {"flags", "the 32 bits of flags stored with it"},
    {"cas", "its version, for Client.cas()"},
    {"expire_at", "absolute expiry in unix seconds; 0: never"},
    {NULL},
};

static PyStructSequence_Desc Item_desc = {
    "shmc.Item",
    "An item as Client.get_item() returns it.",
    Item_fields,
    4,
};

PyDoc_STRVAR(
    libshmc_version_doc,
    "libshmc_version() -> str\n\n"
    "The version of the libshmc this module runs with, \"MAJOR.MINOR.PATCH\".");

static PyObject *
libshmc_version(PyObject *module, PyObject *unused)
{
    return PyUnicode_FromString(shmc_version(NULL, NULL, NULL));
}

static PyMethodDef module_methods[] = {
    {"libshmc_version", libshmc_version, METH_NOARGS, libshmc_version_doc},
    {"_after_fork_child", after_fork_child, METH_NOARGS,
     "The os.register_at_fork() hook (registered on import)."},
    {NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "shmc._shmc",
    .m_doc = "The C part of the shmc package: use shmc, not shmc._shmc.",
    .m_size = -1,
    .m_methods = module_methods,
};

/* Adds exception class name (bases: base, and extra when not NULL). */
static PyObject *
add_exception(PyObject *m, const char *name, PyObject *base, PyObject *extra,
              const char *doc)
{
    char qual[64];
    PyObject *bases, *e;

    snprintf(qual, sizeof(qual), "shmc.%s", name);
    bases = extra ? PyTuple_Pack(2, base, extra) : PyTuple_Pack(1, base);
    if (bases == NULL) {
        return NULL;
    }
    e = PyErr_NewExceptionWithDoc(qual, doc, bases, NULL);
    Py_DECREF(bases);
    if (e == NULL || PyModule_AddObjectRef(m, name, e) < 0) {
        Py_XDECREF(e);
        return NULL;
    }
    return e;
}

/* Registers after_fork_child() with os.register_at_fork(). */
static int
register_fork_hook(PyObject *m)
{
    PyObject *os, *reg, *hook, *kw, *none, *r = NULL;

    hook = PyObject_GetAttrString(m, "_after_fork_child");
    os = PyImport_ImportModule("os");
    reg = os ? PyObject_GetAttrString(os, "register_at_fork") : NULL;
    kw = hook ? Py_BuildValue("{sO}", "after_in_child", hook) : NULL;
    none = PyTuple_New(0);
    if (reg != NULL && kw != NULL && none != NULL) {
        r = PyObject_Call(reg, none, kw);
    }
    Py_XDECREF(none);
    Py_XDECREF(os);
    Py_XDECREF(reg);
    Py_XDECREF(hook);
    Py_XDECREF(kw);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

PyMODINIT_FUNC PyInit__shmc(void);

PyMODINIT_FUNC
PyInit__shmc(void)
{
    PyObject *m;

    if (PyType_Ready(&ClientType) < 0 || PyType_Ready(&LeaseType) < 0) {
        return NULL;
    }
    if (ItemType.tp_name == NULL &&
        PyStructSequence_InitType2(&ItemType, &Item_desc) < 0) {
        return NULL;
    }
    m = PyModule_Create(&module_def);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddType(m, &ClientType) < 0 ||
        PyModule_AddType(m, &LeaseType) < 0 ||
        PyModule_AddType(m, &ItemType) < 0) {
        goto fail;
    }
    Error = add_exception(
        m, "Error", PyExc_Exception, NULL,
        "The base of every error of the shmc module; .code is the "
        "library's negative error number (0 for none).");
    if (Error == NULL ||
        !(DaemonUnavailable = add_exception(
              m, "DaemonUnavailable", Error, PyExc_ConnectionError,
              "No shmcached answers at the socket: start it, or give "
              "Client the socket it listens on.")) ||
        !(AccessDenied = add_exception(
              m, "AccessDenied", Error, PyExc_PermissionError,
              "The daemon refuses this user, or serves the socket as an "
              "untrusted user ($SHMC_TRUST_UID), or the request needs "
              "the daemon's user.")) ||
        !(VersionMismatch = add_exception(
              m, "VersionMismatch", Error, NULL,
              "The daemon or its region is of another version than this "
              "module's libshmc, or the region was replaced.")) ||
        !(ValueTooLarge = add_exception(
              m, "ValueTooLarge", Error, PyExc_ValueError,
              "Key + value exceed the largest item (Client.max_item).")) ||
        !(LockTimeout = add_exception(
              m, "LockTimeout", Error, PyExc_TimeoutError,
              "Another process held a segment lock past the daemon's "
              "--lock-timeout.")) ||
        !(NotANumber = add_exception(
              m, "NotANumber", Error, PyExc_ValueError,
              "incr()/decr() of a value that is not a decimal number.")) ||
        !(BufferTooSmall = add_exception(
              m, "BufferTooSmall", Error, PyExc_ValueError,
              "get_into(): the value does not fit the buffer (.size is "
              "the length needed)."))) {
        goto fail;
    }
    if (PyModule_AddIntConstant(m, "KEY_MAX", SHMC_KEY_MAX) < 0 ||
        PyModule_AddIntConstant(m, "NS_PREFIX_MAX", SHMC_NS_PREFIX_MAX) < 0 ||
        PyModule_AddIntConstant(m, "NS_MAX", SHMC_NS_MAX) < 0 ||
        PyModule_AddIntConstant(m, "LOAD_WAIT_MS", SHMC_LOAD_WAIT_MS) < 0 ||
        register_fork_hook(m) < 0) {
        goto fail;
    }
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
