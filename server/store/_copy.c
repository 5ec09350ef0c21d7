/* Numeric history rows to the body of a binary COPY, compiled.

   numeric(rows, uint) takes the rows of history ((itemid, clock, ns, float)) or of history_uint
   ((itemid, clock, ns, int of 0..2**64-1)) and returns (data, lo, hi): data as
   vigil.server.store.postgres._copy_binary builds it from the rows grouped by itemid with a stable
   sort (an item's rows keep their order), unsigned values of 2**63 and more in their signed form, as
   encode_uints gives them; lo and hi are the lowest and highest clock, as check_clocks gives them.

   It returns None for anything else, which is not an error: a row that is not a tuple of four, a field
   of another type (a bool, an int where a float is due, a subclass), an itemid or ns outside int4, a
   clock outside 0..2**31-1, an unsigned value outside 0..2**64-1, an empty list. The caller then takes
   the Python path, which names what is wrong with the row, so there is one definition of the errors.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char HEADER[19] = "PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00";
#define ROW_BYTES 38 /* field count (2), then 4 fields as length (4) + value: 4, 4, 4, 8 */

static int as_int4(PyObject *o, int32_t *out) {
    if (!PyLong_CheckExact(o))
        return 0;
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow || v < INT32_MIN || v > INT32_MAX)
        return 0;
    *out = (int32_t)v;
    return 1;
}

static int as_uint64(PyObject *o, uint64_t *out) {
    if (!PyLong_CheckExact(o))
        return 0;
    unsigned long long v = PyLong_AsUnsignedLongLong(o); /* negative or over 2**64-1: an error */
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    *out = (uint64_t)v;
    return 1;
}

static unsigned char *put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
    return p + 4;
}

static unsigned char *put64(unsigned char *p, uint64_t v) {
    return put32(put32(p, (uint32_t)(v >> 32)), (uint32_t)v);
}

typedef struct {
    int32_t itemid, clock, ns;
    uint64_t value; /* a float's bits, or the unsigned value (its two's complement is the int8) */
} row;

static int by_item(const void *a, const void *b) {
    /* the sort keys hold the itemid (biased to unsigned) above the row's position: equal items
       keep their order, which qsort alone would not promise */
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* -1: an error raised (memory); 0: declined; 1: rows read */
static int read_rows(PyObject *rows, int uint, row *out, int32_t *lo, int32_t *hi) {
    Py_ssize_t n = PyList_GET_SIZE(rows);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PyList_GET_ITEM(rows, i);
        if (!PyTuple_CheckExact(t) || PyTuple_GET_SIZE(t) != 4)
            return 0;
        row *r = &out[i];
        if (!as_int4(PyTuple_GET_ITEM(t, 0), &r->itemid) || !as_int4(PyTuple_GET_ITEM(t, 1), &r->clock) ||
            r->clock < 0 || !as_int4(PyTuple_GET_ITEM(t, 2), &r->ns))
            return 0;
        PyObject *v = PyTuple_GET_ITEM(t, 3);
        if (uint) {
            if (!as_uint64(v, &r->value))
                return 0;
        } else {
            if (!PyFloat_CheckExact(v))
                return 0;
            double d = PyFloat_AS_DOUBLE(v);
            memcpy(&r->value, &d, 8);
        }
        if (i == 0 || r->clock < *lo)
            *lo = r->clock;
        if (i == 0 || r->clock > *hi)
            *hi = r->clock;
    }
    return 1;
}

static PyObject *numeric(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *rows;
    int uint;
    if (!PyArg_ParseTuple(args, "O!p", &PyList_Type, &rows, &uint))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(rows);
    if (n == 0 || n > (PY_SSIZE_T_MAX - 64) / ROW_BYTES || (uint64_t)n > UINT32_MAX)
        Py_RETURN_NONE;
    row *rs = PyMem_Malloc((size_t)n * sizeof(row));
    uint64_t *keys = PyMem_Malloc((size_t)n * sizeof(uint64_t));
    PyObject *result = NULL;
    if (rs == NULL || keys == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    int32_t lo = 0, hi = 0;
    if (!read_rows(rows, uint, rs, &lo, &hi)) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    int sorted = 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        keys[i] = ((uint64_t)((uint32_t)rs[i].itemid ^ 0x80000000u) << 32) | (uint64_t)i;
        if (i > 0 && rs[i].itemid < rs[i - 1].itemid)
            sorted = 0;
    }
    if (!sorted)
        qsort(keys, (size_t)n, sizeof(uint64_t), by_item);
    PyObject *data = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)sizeof(HEADER) + n * ROW_BYTES + 2);
    if (data == NULL)
        goto done;
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(data);
    memcpy(p, HEADER, sizeof(HEADER));
    p += sizeof(HEADER);
    for (Py_ssize_t i = 0; i < n; i++) {
        const row *r = &rs[keys[i] & 0xffffffffu];
        p[0] = 0;
        p[1] = 4;
        p = put32(p + 2, 4);
        p = put32(p, (uint32_t)r->itemid);
        p = put32(p, 4);
        p = put32(p, (uint32_t)r->clock);
        p = put32(p, 4);
        p = put32(p, (uint32_t)r->ns);
        p = put32(p, 8);
        p = put64(p, r->value);
    }
    p[0] = 0xff;
    p[1] = 0xff;
    result = Py_BuildValue("(Nii)", data, lo, hi);
done:
    PyMem_Free(rs);
    PyMem_Free(keys);
    return result;
}

static PyMethodDef methods[] = {
    {"numeric", numeric, METH_VARARGS, "numeric(rows, uint) -> (data, lo, hi) | None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_copy", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__copy(void) {
    return PyModule_Create(&module);
}
