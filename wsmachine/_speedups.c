/* Optional compiled speed-ups for wsmachine: XOR masking (RFC 6455 §5.3), in place too, and the
 * frame parsing loop (§5.2).
 *
 * wsmachine.frames falls back to its pure-Python twins when this module is absent. The twins
 * give the same result or raise the same exception for every argument, valid or not:
 * tests/test_speedups_parity.py checks that over the whole argument domain. Buffers are taken
 * with PyBUF_SIMPLE (any C-contiguous buffer, as bytes), integers with __index__.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

/* 0xFF as a Python int, made once: parse_frames masks rsv_forbidden with it. */
static PyObject *byte_mask;

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

/* out[i] = in[i] ^ key[(i + phase) % 4] for i < n: masking that starts `phase` bytes into the
 * key, as for a payload resumed part-way through. */
static void
xor_key_phase(unsigned char *out, const unsigned char *in, Py_ssize_t n, const unsigned char *key,
              Py_ssize_t phase)
{
    unsigned char rotated[4];
    int i;

    for (i = 0; i < 4; i++) {
        rotated[i] = key[(i + phase) & 3];
    }
    xor_key(out, in, n, rotated);
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
    /* Any int, as in the Python twin: one past the Py_ssize_t range is clamped, so it fails
     * the range check below with ValueError rather than OverflowError. */
    start = PyNumber_AsSsize_t(args[1], NULL);
    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
    end = PyNumber_AsSsize_t(args[2], NULL);
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

/* Fault kinds of parse_frames, the one table for both sides: the enum here and the
 * FAULT_KINDS dict this module exports come from it, and tests/test_speedups_parity.py checks
 * that wsmachine.frames.FaultKind equals FAULT_KINDS (wsmachine/frames.py turns a fault into
 * a RemoteProtocolError). */
#define FAULT_TABLE(X)                                                                          \
    X(NONMINIMAL_16, 1)                                                                         \
    X(TOP_BIT, 2)                                                                               \
    X(NONMINIMAL_64, 3)                                                                         \
    X(MASK, 4)                                                                                  \
    X(RSV, 5)                                                                                   \
    X(OPCODE, 6)                                                                                \
    X(CONTROL_LONG, 7)                                                                          \
    X(CONTROL_FRAGMENTED, 8)                                                                    \
    X(TOO_BIG, 9)

#define FAULT_ENUM(name, value) FAULT_##name = value,
enum { FAULT_TABLE(FAULT_ENUM) };
#undef FAULT_ENUM

/* The arguments parse_frames and parse_span share, read in the Python twins' order: the truth
 * of expect_masked, then max_size and rsv_forbidden as any int. Returns -1 with an exception. */
static int
frame_rules(PyObject *const *args, int *expect_masked, long long *max_size, int *rsv_forbidden)
{
    int overflow;
    PyObject *index, *low;

    *expect_masked = PyObject_IsTrue(args[0]);
    if (*expect_masked < 0) {
        return -1;
    }
    /* Any int, as in the Python twin: one too large for 64 bits limits nothing (no frame
     * declares more than 2**63 - 1, RFC 6455 §5.2), one below -2**63 refuses every data frame. */
    *max_size = PyLong_AsLongLongAndOverflow(args[1], &overflow);
    if (overflow) {
        *max_size = overflow > 0 ? LLONG_MAX : -1;
    }
    else if (*max_size == -1 && PyErr_Occurred()) {
        return -1;
    }
    /* Any int, as in the Python twin, where `b0 & rsv_forbidden` sees only its low 8 bits. */
    index = PyNumber_Index(args[2]);
    if (index == NULL) {
        return -1;
    }
    low = PyNumber_And(index, byte_mask);
    Py_DECREF(index);
    if (low == NULL) {
        return -1;
    }
    *rsv_forbidden = (int)PyLong_AsLong(low); /* 0..255: cannot fail */
    Py_DECREF(low);
    return 0;
}

/* The frame loop over buf[pos:n]: the complete frames as (opcode, fin, rsv, payload) tuples,
 * unmasked, and the result tuple (frames, end, fault). Payload bytes at offsets below
 * `unmasked` are already unmasked in place (parse_span's receive-into path): copied as they
 * are, the rest unmasked while copied, so every payload byte is unmasked once. */
static PyObject *
parse_loop(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t n, Py_ssize_t unmasked,
           int expect_masked, long long max_size, int rsv_forbidden)
{
    PyObject *frames, *result = NULL, *fault = NULL;

    frames = PyList_New(0);
    if (frames == NULL) {
        return NULL;
    }
    while (n - pos >= 2) {
        unsigned char b0 = buf[pos], b1 = buf[pos + 1];
        int opcode = b0 & 0x0F;
        unsigned long long length = b1 & 0x7F;
        Py_ssize_t header = 2, start, end;
        int kind = 0;
        unsigned long long value = 0;
        PyObject *payload, *frame;

        if (length == 126) {
            if (n - pos < 4) {
                break;
            }
            length = ((unsigned long long)buf[pos + 2] << 8) | buf[pos + 3];
            header = 4;
            if (length < 126) {
                kind = FAULT_NONMINIMAL_16;
                value = length;
            }
        }
        else if (length == 127) {
            int i;
            if (n - pos < 10) {
                break;
            }
            length = 0;
            for (i = 2; i < 10; i++) {
                length = (length << 8) | buf[pos + i];
            }
            header = 10;
            if (length >> 63) {
                kind = FAULT_TOP_BIT;
            }
            else if (length < 0x10000) {
                kind = FAULT_NONMINIMAL_64;
                value = length;
            }
        }
        if (!kind) {
            if ((b1 & 0x80) != (expect_masked ? 0x80 : 0)) {
                kind = FAULT_MASK;
            }
            else if (b0 & rsv_forbidden) {
                kind = FAULT_RSV;
                value = b0 & 0x70;
            }
            else if (!((0x0707 >> opcode) & 1)) { /* known: 0, 1, 2, 8, 9, 10 */
                kind = FAULT_OPCODE;
                value = (unsigned long long)opcode;
            }
            else if (opcode & 0x8) {
                if (length > 125) {
                    kind = FAULT_CONTROL_LONG;
                    value = length;
                }
                else if (!(b0 & 0x80)) {
                    kind = FAULT_CONTROL_FRAGMENTED;
                }
            }
            else if ((long long)length > max_size) { /* length < 2**63: top bit checked */
                kind = FAULT_TOO_BIG;
                value = length;
            }
        }
        if (kind) {
            fault = Py_BuildValue("(iK)", kind, value);
            if (fault == NULL) {
                goto done;
            }
            break;
        }
        start = pos + header + (expect_masked ? 4 : 0);
        if (n < start || (unsigned long long)(n - start) < length) {
            break;
        }
        end = start + (Py_ssize_t)length;
        payload = PyBytes_FromStringAndSize(NULL, end - start);
        if (payload == NULL) {
            goto done;
        }
        if (expect_masked) {
            unsigned char *out = (unsigned char *)PyBytes_AS_STRING(payload);
            Py_ssize_t plain = 0; /* leading bytes already unmasked in place */
            if (unmasked > start) {
                plain = (unmasked < end ? unmasked : end) - start;
                memcpy(out, buf + start, (size_t)plain);
            }
            xor_key_phase(out + plain, buf + start + plain, end - start - plain, buf + start - 4,
                          plain);
        }
        else {
            memcpy(PyBytes_AS_STRING(payload), buf + start, (size_t)(end - start));
        }
        frame = Py_BuildValue("(iOiN)", opcode, (b0 & 0x80) ? Py_True : Py_False, b0 & 0x70,
                              payload);
        if (frame == NULL) {
            goto done;
        }
        if (PyList_Append(frames, frame) < 0) {
            Py_DECREF(frame);
            goto done;
        }
        Py_DECREF(frame);
        pos = end;
    }
    result = Py_BuildValue("(OnO)", frames, pos, fault ? fault : Py_None);
done:
    Py_XDECREF(fault);
    Py_DECREF(frames);
    return result;
}

/* parse_span's work once its offsets are read: the frame rules from rules[0..2], then the
 * buffer (the Python twins' order), the range check, the loop. `whole` stands for end =
 * len(buffer), which parse_frames cannot know before the buffer is taken. */
static PyObject *
parse_buffer(PyObject *obj, Py_ssize_t start, Py_ssize_t end, Py_ssize_t unmasked, int whole,
             PyObject *const *rules)
{
    Py_buffer view;
    PyObject *result = NULL;
    int expect_masked, rsv_forbidden;
    long long max_size;

    if (frame_rules(rules, &expect_masked, &max_size, &rsv_forbidden) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (whole) {
        end = view.len;
    }
    if (start < 0 || unmasked < start || end < unmasked || end > view.len) {
        PyErr_SetString(PyExc_ValueError,
                        "parse_span(): need 0 <= start <= unmasked <= end <= len(buffer)");
    }
    else {
        result = parse_loop((const unsigned char *)view.buf, start, end, unmasked, expect_masked,
                            max_size, rsv_forbidden);
    }
    PyBuffer_Release(&view);
    return result;
}

/* parse_span(buffer, start, end, unmasked, expect_masked, max_size, rsv_forbidden)
 *     -> (frames, pos, fault)
 *
 * The complete frames in buffer[start:end] as (opcode, fin, rsv, payload) tuples, unmasked;
 * the offset after the last one; and None, or (kind, value) for the first frame that breaks
 * an RFC 6455 §5 rule. For a receive buffer read into in place: payload bytes at offsets
 * below `unmasked` were already unmasked there (unmask_inplace) and are copied as they are.
 * Needs 0 <= start <= unmasked <= end <= len(buffer). */
static PyObject *
parse_span(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t start, end, unmasked;

    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "parse_span() takes exactly 7 arguments");
        return NULL;
    }
    /* Any int: one past the Py_ssize_t range is clamped, so it fails the range check. */
    start = PyNumber_AsSsize_t(args[1], NULL);
    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
    end = PyNumber_AsSsize_t(args[2], NULL);
    if (end == -1 && PyErr_Occurred()) {
        return NULL;
    }
    unmasked = PyNumber_AsSsize_t(args[3], NULL);
    if (unmasked == -1 && PyErr_Occurred()) {
        return NULL;
    }
    return parse_buffer(args[0], start, end, unmasked, 0, args + 4);
}

/* parse_frames(buffer, expect_masked, max_size, rsv_forbidden) -> (frames, end, fault):
 * parse_span over the whole buffer, nothing unmasked in place (frames._py_parse_frames). */
static PyObject *
parse_frames(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "parse_frames() takes exactly 4 arguments");
        return NULL;
    }
    return parse_buffer(args[0], 0, 0, 0, 1, args + 1);
}

/* unmask_inplace(buffer, start, offset, end) -> None: unmask buffer[offset:end] where it lies,
 * as part of the payload that starts at `start` behind its 4-byte key buffer[start-4:start]
 * (so byte i takes key byte (i - start) % 4). The receive-into path unmasks an unfinished
 * frame once, as it arrives. Needs a writable buffer and 4 <= start <= offset <= end <=
 * len(buffer). */
static PyObject *
unmask_inplace(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t start, offset, end;
    PyObject *result = NULL;

    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "unmask_inplace() takes exactly 4 arguments (buffer, start, offset, end)");
        return NULL;
    }
    start = PyNumber_AsSsize_t(args[1], NULL);
    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
    offset = PyNumber_AsSsize_t(args[2], NULL);
    if (offset == -1 && PyErr_Occurred()) {
        return NULL;
    }
    end = PyNumber_AsSsize_t(args[3], NULL);
    if (end == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE | PyBUF_WRITABLE) < 0) {
        return NULL;
    }
    if (start < 4 || offset < start || end < offset || end > view.len) {
        PyErr_SetString(PyExc_ValueError,
                        "unmask_inplace(): need 4 <= start <= offset <= end <= len(buffer)");
    }
    else {
        unsigned char *base = (unsigned char *)view.buf;
        xor_key_phase(base + offset, base + offset, end - offset, base + start - 4,
                      offset - start);
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&view);
    return result;
}

/* join_unmask(parts, key) -> bytes: b"".join(parts) masked with the 4-byte key (or copied as
 * they are for an empty key) in one pass: a large frame's payload gathered from the reads it
 * arrived in, kept as they were, so its bytes are copied once (RFC 6455 §5.3). */
static PyObject *
join_unmask(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer key, *views = NULL;
    PyObject *seq, *result = NULL;
    Py_ssize_t count, i, acquired = 0, total = 0, pos = 0;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "join_unmask() takes exactly 2 arguments (parts, key)");
        return NULL;
    }
    seq = PySequence_Fast(args[0], "join_unmask(): parts must be an iterable of buffers");
    if (seq == NULL) {
        return NULL;
    }
    count = PySequence_Fast_GET_SIZE(seq);
    views = PyMem_New(Py_buffer, count ? count : 1);
    if (views == NULL) {
        PyErr_NoMemory();
        Py_DECREF(seq);
        return NULL;
    }
    for (; acquired < count; acquired++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, acquired);
        if (PyObject_GetBuffer(item, &views[acquired], PyBUF_SIMPLE) < 0) {
            goto done;
        }
        if (views[acquired].len > PY_SSIZE_T_MAX - total) {
            acquired++;
            PyErr_NoMemory();
            goto done;
        }
        total += views[acquired].len;
    }
    if (PyObject_GetBuffer(args[1], &key, PyBUF_SIMPLE) < 0) {
        goto done;
    }
    if (key.len != 0 && key.len != 4) {
        PyErr_SetString(PyExc_ValueError,
                        "join_unmask(): the masking key must be 4 bytes, or empty for none");
    }
    else {
        result = PyBytes_FromStringAndSize(NULL, total);
        if (result != NULL) {
            unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
            for (i = 0; i < count; i++) {
                if (key.len) {
                    xor_key_phase(out + pos, (const unsigned char *)views[i].buf, views[i].len,
                                  (const unsigned char *)key.buf, pos);
                }
                else {
                    memcpy(out + pos, views[i].buf, (size_t)views[i].len);
                }
                pos += views[i].len;
            }
        }
    }
    PyBuffer_Release(&key);
done:
    for (i = 0; i < acquired; i++) {
        PyBuffer_Release(&views[i]);
    }
    PyMem_Free(views);
    Py_DECREF(seq);
    return result;
}

/* masked_frame(header, key, payload) -> bytes: header + key + payload masked with key, built
 * in one allocation (a client's frame, RFC 6455 §5.2, §5.3). */
static PyObject *
masked_frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer header, key, payload;
    PyObject *result = NULL;

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "masked_frame() takes exactly 3 arguments");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &header, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &key, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&header);
        return NULL;
    }
    if (PyObject_GetBuffer(args[2], &payload, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&key);
        PyBuffer_Release(&header);
        return NULL;
    }
    if (key.len != 4) {
        PyErr_SetString(PyExc_ValueError, "the masking key must be 4 bytes (RFC 6455 §5.3)");
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, header.len + 4 + payload.len);
    if (result != NULL) {
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
        memcpy(out, header.buf, (size_t)header.len);
        memcpy(out + header.len, key.buf, 4);
        xor_key(out + header.len + 4, (const unsigned char *)payload.buf, payload.len,
                (const unsigned char *)key.buf);
    }
done:
    PyBuffer_Release(&payload);
    PyBuffer_Release(&key);
    PyBuffer_Release(&header);
    return result;
}

static PyMethodDef speedups_methods[] = {
    {"masked_frame", (PyCFunction)(void (*)(void))masked_frame, METH_FASTCALL,
     "masked_frame(header, key, payload) -> bytes: header + key + the masked payload."},
    {"parse_frames", (PyCFunction)(void (*)(void))parse_frames, METH_FASTCALL,
     "parse_frames(buffer, expect_masked, max_size, rsv_forbidden) -> (frames, end, fault)"},
    {"parse_span", (PyCFunction)(void (*)(void))parse_span, METH_FASTCALL,
     "parse_span(buffer, start, end, unmasked, expect_masked, max_size, rsv_forbidden) -> "
     "(frames, pos, fault): parse_frames over buffer[start:end], bytes below `unmasked` "
     "already unmasked in place."},
    {"unmask_inplace", (PyCFunction)(void (*)(void))unmask_inplace, METH_FASTCALL,
     "unmask_inplace(buffer, start, offset, end) -> None: unmask buffer[offset:end] in place, "
     "the payload starting at `start` behind its key."},
    {"join_unmask", (PyCFunction)(void (*)(void))join_unmask, METH_FASTCALL,
     "join_unmask(parts, key) -> bytes: b''.join(parts) masked with the key (empty: none)."},
    {"unmask", (PyCFunction)(void (*)(void))unmask, METH_FASTCALL,
     "unmask(buffer, start, end) -> bytes: buffer[start:end] XOR the 4 bytes before start."},
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL,
     "apply_mask(data, key) -> bytes: XOR data with the 4-byte key repeated."},
    {NULL, NULL, 0, NULL},
};

/* FAULT_KINDS: {name: number} for every fault kind, from FAULT_TABLE. */
static int
add_fault_kinds(PyObject *module)
{
    PyObject *table = PyDict_New(), *number;

    if (table == NULL) {
        return -1;
    }
#define FAULT_ITEM(name, value)                                                                 \
    number = PyLong_FromLong(value);                                                            \
    if (number == NULL || PyDict_SetItemString(table, #name, number) < 0) {                    \
        Py_XDECREF(number);                                                                     \
        Py_DECREF(table);                                                                       \
        return -1;                                                                              \
    }                                                                                           \
    Py_DECREF(number);
    FAULT_TABLE(FAULT_ITEM)
#undef FAULT_ITEM
    if (PyModule_AddObject(module, "FAULT_KINDS", table) < 0) {
        Py_DECREF(table);
        return -1;
    }
    return 0;
}

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "wsmachine._speedups", "Compiled speed-ups for wsmachine.", -1,
    speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    PyObject *module = PyModule_Create(&speedups_module);

    if (module == NULL) {
        return NULL;
    }
    byte_mask = PyLong_FromLong(0xFF);
    if (byte_mask == NULL || add_fault_kinds(module) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
