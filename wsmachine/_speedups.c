/* Optional compiled speed-up for wsmachine: XOR masking (RFC 6455 §5.3).
 *
 * wsmachine.frames falls back to its pure-Python apply_mask when this module is absent;
 * both produce identical bytes (tests/test_speedups.py runs them side by side).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* out[i] = in[i] ^ key[i % 4] for i < n. */
static void
xor_key(unsigned char *out, const unsigned char *in, Py_ssize_t n, const unsigned char *key)
{
    unsigned char key8[8];
    uint64_t word_key, word;
    Py_ssize_t i = 0;

    memcpy(key8, key, 4);
    memcpy(key8 + 4, key, 4);
    memcpy(&word_key, key8, 8);
    /* Eight bytes at a time; memcpy keeps unaligned access legal and compiles to loads. */
    for (; i + 8 <= n; i += 8) {
        memcpy(&word, in + i, 8);
        word ^= word_key;
        memcpy(out + i, &word, 8);
    }
    for (; i < n; i++) {
        out[i] = in[i] ^ key[i & 3];
    }
}

static PyObject *
apply_mask(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, key;
    PyObject *result = NULL;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "apply_mask() takes exactly 2 arguments (data, key)");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &key, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (key.len != 4) {
        PyErr_SetString(PyExc_ValueError, "the masking key must be 4 bytes (RFC 6455 §5.3)");
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, data.len);
    if (result != NULL) {
        xor_key((unsigned char *)PyBytes_AS_STRING(result), (const unsigned char *)data.buf,
                data.len, (const unsigned char *)key.buf);
    }
done:
    PyBuffer_Release(&key);
    PyBuffer_Release(&data);
    return result;
}

/* unmask(buffer, start, end) -> bytes: the payload buffer[start:end] unmasked with the four
 * bytes just before it, where a client frame carries its masking key (RFC 6455 §5.2). Reading
 * the receive buffer in place saves two slices per frame. */
static PyObject *
unmask(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t start, end;
    PyObject *result = NULL;

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "unmask() takes exactly 3 arguments (buffer, start, end)");
        return NULL;
    }
    start = PyLong_AsSsize_t(args[1]);
    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
    end = PyLong_AsSsize_t(args[2]);
    if (end == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (start < 4 || end < start || end > view.len) {
        PyErr_SetString(PyExc_ValueError, "unmask(): need 4 <= start <= end <= len(buffer)");
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, end - start);
    if (result != NULL) {
        const unsigned char *base = (const unsigned char *)view.buf;
        xor_key((unsigned char *)PyBytes_AS_STRING(result), base + start, end - start,
                base + start - 4);
    }
done:
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef speedups_methods[] = {
    {"unmask", (PyCFunction)(void (*)(void))unmask, METH_FASTCALL,
     "unmask(buffer, start, end) -> bytes: buffer[start:end] XOR the 4 bytes before start."},
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL,
     "apply_mask(data, key) -> bytes: XOR data with the 4-byte key repeated."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "wsmachine._speedups", "Compiled speed-ups for wsmachine.", -1,
    speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&speedups_module);
}
