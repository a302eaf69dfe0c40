/*
 * Change-detection hashes of whole batches, computed without the GIL.
 *
 * The ship hashes every 64 KiB block it reads (XXH3-128) and fingerprints every 4 KiB piece of
 * each block it stores (XXH3-64). Called once per value from Python, each call holds the GIL:
 * 0.3 s per GiB of a seed that no second thread can overlap. Here one call covers a whole batch
 * and lets the other threads run while it hashes.
 *
 * The digests are the ones python-xxhash returns (xxh3_128_digest, xxh3_64_digest): the canonical
 * big-endian form, so tables written by either path are the same bytes. XXH3 has been stable since
 * xxHash 0.8.0; Debian's libxxhash0 (a dependency of apt itself) provides it, declared below
 * because Debian ships no header for it (the _dispatch functions are Debian's x86 build's).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    uint64_t low64;
    uint64_t high64;
} XXH128_hash_t;

/* The _dispatch entry points pick the widest vector unit at run time (AVX2 / AVX-512 here); the
 * plain ones are built for baseline x86-64 and hash a 64 KiB block 3-4x slower. */
extern XXH128_hash_t XXH3_128bits_withSeed_dispatch(const void *data, size_t len, uint64_t seed);
extern uint64_t XXH3_64bits_withSeed_dispatch(const void *data, size_t len, uint64_t seed);

/* Below this many bytes a call keeps the GIL: giving it away costs more than the hashing. */
#define RELEASE_AT (256 * 1024)

static void put_be64(unsigned char *out, uint64_t v) {
    for (int i = 7; i >= 0; i--) {
        out[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

static int parse_size(PyObject *obj, const char *what, Py_ssize_t *out) {
    Py_ssize_t v = PyLong_AsSsize_t(obj);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v <= 0) {
        PyErr_Format(PyExc_ValueError, "%s must be positive, not %zd", what, v);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_seed(PyObject *obj, uint64_t *out) {
    unsigned long long v = PyLong_AsUnsignedLongLong(obj);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    *out = (uint64_t)v;
    return 0;
}

static void hash128_run(const unsigned char *p, Py_ssize_t len, Py_ssize_t block, uint64_t seed,
                        unsigned char *out) {
    for (Py_ssize_t off = 0; off < len; off += block, out += 16) {
        Py_ssize_t n = len - off < block ? len - off : block;
        XXH128_hash_t h = XXH3_128bits_withSeed_dispatch(p + off, (size_t)n, seed);
        put_be64(out, h.high64);
        put_be64(out + 8, h.low64);
    }
}

static void hash64_run(const unsigned char *p, Py_ssize_t len, Py_ssize_t piece, uint64_t seed,
                       unsigned char *out) {
    for (Py_ssize_t off = 0; off < len; off += piece, out += 8) {
        Py_ssize_t n = len - off < piece ? len - off : piece;
        put_be64(out, XXH3_64bits_withSeed_dispatch(p + off, (size_t)n, seed));
    }
}

/* block_hashes(data, block, seed) -> list[bytes]: XXH3-128 of each `block` bytes of data (the last
 * one may be shorter). */
static PyObject *block_hashes(PyObject *self, PyObject *args) {
    PyObject *data, *block_obj, *seed_obj;
    Py_ssize_t block;
    uint64_t seed;
    if (!PyArg_ParseTuple(args, "OOO:block_hashes", &data, &block_obj, &seed_obj)) return NULL;
    if (parse_size(block_obj, "block", &block) < 0 || parse_seed(seed_obj, &seed) < 0) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return NULL;
    Py_ssize_t count = view.len == 0 ? 0 : (view.len - 1) / block + 1;
    unsigned char *out = PyMem_RawMalloc(count > 0 ? (size_t)count * 16 : 1);
    if (out == NULL) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    if (view.len >= RELEASE_AT) {
        Py_BEGIN_ALLOW_THREADS
        hash128_run(view.buf, view.len, block, seed, out);
        Py_END_ALLOW_THREADS
    } else {
        hash128_run(view.buf, view.len, block, seed, out);
    }
    PyBuffer_Release(&view);
    PyObject *list = PyList_New(count);
    for (Py_ssize_t i = 0; list != NULL && i < count; i++) {
        PyObject *b = PyBytes_FromStringAndSize((const char *)out + 16 * i, 16);
        if (b == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, b);
    }
    PyMem_RawFree(out);
    return list;
}

/* piece_fingerprints(items, piece, seed) -> list[bytes]: for each buffer of `items`, its pieces'
 * XXH3-64 digests concatenated (8 bytes per `piece` bytes, the last piece may be shorter). */
static PyObject *piece_fingerprints(PyObject *self, PyObject *args) {
    PyObject *items, *piece_obj, *seed_obj;
    Py_ssize_t piece;
    uint64_t seed;
    if (!PyArg_ParseTuple(args, "OOO:piece_fingerprints", &items, &piece_obj, &seed_obj)) return NULL;
    if (parse_size(piece_obj, "piece", &piece) < 0 || parse_seed(seed_obj, &seed) < 0) return NULL;
    PyObject *seq = PySequence_Fast(items, "piece_fingerprints() wants a sequence of buffers");
    if (seq == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *result = NULL;
    Py_buffer *views = PyMem_Calloc(n > 0 ? (size_t)n : 1, sizeof(Py_buffer));
    PyObject **outs = PyMem_Calloc(n > 0 ? (size_t)n : 1, sizeof(PyObject *));
    Py_ssize_t got = 0, total = 0;
    if (views == NULL || outs == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (; got < n; got++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, got), &views[got], PyBUF_SIMPLE) < 0) goto done;
        Py_ssize_t count = views[got].len == 0 ? 0 : (views[got].len - 1) / piece + 1;
        outs[got] = PyBytes_FromStringAndSize(NULL, count * 8);
        if (outs[got] == NULL) {
            PyBuffer_Release(&views[got]);
            goto done;
        }
        total += views[got].len;
    }
    /* The output bytes objects are new and referenced only here: filling them without the GIL is
     * safe, and the exported buffers cannot be resized until released. */
    if (total >= RELEASE_AT) {
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++)
            hash64_run(views[i].buf, views[i].len, piece, seed, (unsigned char *)PyBytes_AS_STRING(outs[i]));
        Py_END_ALLOW_THREADS
    } else {
        for (Py_ssize_t i = 0; i < n; i++)
            hash64_run(views[i].buf, views[i].len, piece, seed, (unsigned char *)PyBytes_AS_STRING(outs[i]));
    }
    result = PyList_New(n);
    if (result != NULL) {
        for (Py_ssize_t i = 0; i < n; i++) {
            PyList_SET_ITEM(result, i, outs[i]);
            outs[i] = NULL;
        }
    }
done:
    for (Py_ssize_t i = 0; i < got; i++) {
        PyBuffer_Release(&views[i]);
        Py_XDECREF(outs[i]);
    }
    PyMem_Free(views);
    PyMem_Free(outs);
    Py_DECREF(seq);
    return result;
}

static PyMethodDef methods[] = {
    {"block_hashes", block_hashes, METH_VARARGS,
     "block_hashes(data, block, seed) -> list of XXH3-128 digests, one per block"},
    {"piece_fingerprints", piece_fingerprints, METH_VARARGS,
     "piece_fingerprints(items, piece, seed) -> per item, its pieces' XXH3-64 digests joined"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_hashes", "Batch XXH3 hashing without the GIL.", -1, methods,
};

PyMODINIT_FUNC PyInit__hashes(void) { return PyModule_Create(&module); }
