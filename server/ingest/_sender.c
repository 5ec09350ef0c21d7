/* The common case of `sender data`, compiled: the body's bytes straight to the rows of a WriteBatch.

   values(body, trappers, lo, hi, take, max_values) reads what zabbix_sender and most other senders send
   — {"request":"sender data","data":[{"host":..,"key":..,"value":"..","clock":N,"ns":N}, ...], "clock":N,
   "ns":N} — and returns (floats, uints, strs, texts, failed, count) as vigil.server.ingest.values.
   sender_values would for the same request, or None for anything else. None is not an error: the caller
   parses the body with orjson and runs sender_values, which is the definition of every rule. So this
   takes only what is unambiguous and leaves the rest, whole requests at a time:

   - JSON: strings without \u escapes or control characters, integers of ASCII digits (no sign, fraction
     or exponent, no leading zero), no duplicate or unknown members. Anything else returns None, and
     orjson decides whether the body is valid.
   - an element: a "host" and "key" string, a "value" string, an optional clock and ns in range;
     a clock outside [lo, hi] or an ns over 999999999 returns None (sender_values names the problem).
   - a value: float items take Zabbix's float syntax within +-1e308, unsigned items 1 to 20 ASCII digits
     up to 2**64-1, char and text items any string (cut at 255 and 65535 characters); log items, and a
     value that would need trimming or would be refused, return None.

   An unknown host or key counts as failed, as in sender_values. Times are sender_values' too: `take(n)`
   reserves the request's receive stamps (values without a clock get consecutive ones), values with a
   clock and no ns get 0, 1, 2, ... in their order.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <string.h>

#define NS_MAX 999999999LL
#define NUMBER_TEXT_LIMIT 2047
#define CHAR_LIMIT 255
#define TEXT_LIMIT 65535
#define FLOAT_MAX 1e308
#define NS_PER_S 1000000000LL

enum { VT_FLOAT = 0, VT_CHAR = 1, VT_LOG = 2, VT_UNSIGNED = 3, VT_TEXT = 4 };

typedef struct {
    const char *p;
    Py_ssize_t n;
    int esc; /* holds escapes */
} span;

typedef struct {
    span host, key, value;
    long long clock, ns; /* -1: absent */
} entry;

typedef struct {
    const unsigned char *s, *end;
} cursor;

static PyObject *s_itemid, *s_value_type;

static void skip_ws(cursor *c) {
    while (c->s < c->end && (*c->s == ' ' || *c->s == '\t' || *c->s == '\n' || *c->s == '\r'))
        c->s++;
}

static int eat(cursor *c, unsigned char ch) {
    skip_ws(c);
    if (c->s < c->end && *c->s == ch) {
        c->s++;
        return 1;
    }
    return 0;
}

/* A string whose escapes, if any, are of one character (\" \\ \/ \b \f \n \r \t; not \u), without
   control characters: its bytes between the quotes, as they are in the body. */
static int read_string(cursor *c, span *out) {
    skip_ws(c);
    if (c->s >= c->end || *c->s != '"')
        return 0;
    const unsigned char *start = ++c->s;
    out->esc = 0;
    while (c->s < c->end) {
        unsigned char ch = *c->s;
        if (ch == '"') {
            out->p = (const char *)start;
            out->n = c->s - start;
            c->s++;
            return 1;
        }
        if (ch < 0x20)
            return 0;
        if (ch == '\\') {
            if (c->s + 1 >= c->end || strchr("\"\\/bfnrt", c->s[1]) == NULL || c->s[1] == '\0')
                return 0;
            out->esc = 1;
            c->s++;
        }
        c->s++;
    }
    return 0;
}

/* The string a span holds, its escapes undone; NULL with an exception when it is not UTF-8. */
static PyObject *string_of(span v) {
    if (!v.esc)
        return PyUnicode_DecodeUTF8(v.p, v.n, NULL);
    char *buf = PyMem_Malloc(v.n ? v.n : 1), *o = buf;
    if (buf == NULL)
        return PyErr_NoMemory();
    for (const char *p = v.p, *end = v.p + v.n; p < end; p++) {
        if (*p != '\\') {
            *o++ = *p;
            continue;
        }
        switch (*++p) {
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        default: *o++ = *p; /* " \ / */
        }
    }
    PyObject *s = PyUnicode_DecodeUTF8(buf, o - buf, NULL);
    PyMem_Free(buf);
    return s;
}

/* An integer of at most 18 ASCII digits, without sign, fraction, exponent or leading zero. */
static int read_uint(cursor *c, long long *out) {
    skip_ws(c);
    const unsigned char *start = c->s;
    long long v = 0;
    while (c->s < c->end && *c->s >= '0' && *c->s <= '9') {
        v = v * 10 + (*c->s - '0');
        c->s++;
        if (c->s - start > 18)
            return 0;
    }
    Py_ssize_t n = c->s - start;
    if (n == 0 || (n > 1 && *start == '0'))
        return 0;
    if (c->s < c->end && (*c->s == '.' || *c->s == 'e' || *c->s == 'E'))
        return 0;
    *out = v;
    return 1;
}

static int is(span s, const char *word) {
    size_t n = strlen(word);
    return !s.esc && (size_t)s.n == n && memcmp(s.p, word, n) == 0;
}

/* One element of "data"; 0 when it is not of the simple kind. */
static int read_entry(cursor *c, entry *e) {
    if (!eat(c, '{'))
        return 0;
    int seen_host = 0, seen_key = 0, seen_value = 0, seen_clock = 0, seen_ns = 0;
    e->clock = e->ns = -1;
    if (eat(c, '}'))
        return 0;
    do {
        span name;
        if (!read_string(c, &name) || !eat(c, ':'))
            return 0;
        if (is(name, "host") && !seen_host) {
            seen_host = read_string(c, &e->host);
            if (!seen_host)
                return 0;
        } else if (is(name, "key") && !seen_key) {
            seen_key = read_string(c, &e->key);
            if (!seen_key)
                return 0;
        } else if (is(name, "value") && !seen_value) {
            seen_value = read_string(c, &e->value);
            if (!seen_value)
                return 0;
        } else if (is(name, "clock") && !seen_clock) {
            seen_clock = read_uint(c, &e->clock);
            if (!seen_clock)
                return 0;
        } else if (is(name, "ns") && !seen_ns) {
            seen_ns = read_uint(c, &e->ns);
            if (!seen_ns)
                return 0;
        } else {
            return 0;
        }
    } while (eat(c, ','));
    return eat(c, '}') && seen_host && seen_key && seen_value;
}

/* Zabbix's float syntax: [+-]?(digits[.digits?]|.digits)([eE][+-]?digits)?, the whole text. */
static int float_syntax(span v) {
    const char *p = v.p, *end = v.p + v.n;
    if (p < end && (*p == '+' || *p == '-'))
        p++;
    int before = 0, after = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        p++;
        before++;
    }
    if (p < end && *p == '.') {
        p++;
        while (p < end && *p >= '0' && *p <= '9') {
            p++;
            after++;
        }
    }
    if (before + after == 0)
        return 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        int exp = 0;
        while (p < end && *p >= '0' && *p <= '9') {
            p++;
            exp++;
        }
        if (exp == 0)
            return 0;
    }
    return p == end;
}

static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* A number of Zabbix's float syntax with at most 15 digits and a power of ten within 1e+-22, the usual
   kind, as one exact operation: both operands are exact doubles, so the one rounding gives the nearest
   double, as strtod would (Clinger's fast path). -1 when the text is not of that kind. */
static int simple_double(span v, double *out) {
#if FLT_EVAL_METHOD == 0
    const char *p = v.p, *end = v.p + v.n;
    int negative = 0, digits = 0, exp = 0;
    long long m = 0;
    if (p < end && (*p == '+' || *p == '-'))
        negative = *p++ == '-';
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        if (m || *p != '0')
            digits++;
        m = m * 10 + (*p - '0');
        if (digits > 15)
            return -1;
    }
    if (p < end && *p == '.') {
        for (p++; p < end && *p >= '0' && *p <= '9'; p++) {
            if (m || *p != '0')
                digits++;
            m = m * 10 + (*p - '0');
            exp--;
            if (digits > 15)
                return -1;
        }
    }
    if (p != end || exp < -22) /* an exponent part, too: the general way */
        return -1;
    double d = exp < 0 ? (double)m / POW10[-exp] : (double)m;
    *out = negative ? -d : d;
    return 0;
#else
    (void)v;
    (void)out;
    return -1; /* x87 arithmetic rounds twice: leave it to PyOS_string_to_double */
#endif
}

/* The value as a float item stores it, or NULL without an exception when it is not simple. */
static PyObject *float_value(span v) {
    char buf[NUMBER_TEXT_LIMIT + 1];
    if (v.esc || v.n == 0 || v.n > NUMBER_TEXT_LIMIT || !float_syntax(v))
        return NULL;
    double d;
    if (simple_double(v, &d) == 0)
        return PyFloat_FromDouble(d);
    memcpy(buf, v.p, v.n);
    buf[v.n] = '\0';
    char *endp;
    d = PyOS_string_to_double(buf, &endp, NULL);
    if (d == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return NULL;
    }
    if (endp != buf + v.n || !(d >= -FLOAT_MAX && d <= FLOAT_MAX))
        return NULL;
    return PyFloat_FromDouble(d);
}

static PyObject *uint_value(span v) {
    if (v.esc || v.n == 0 || v.n > 20)
        return NULL;
    unsigned long long x = 0;
    for (Py_ssize_t i = 0; i < v.n; i++) {
        unsigned char ch = (unsigned char)v.p[i];
        if (ch < '0' || ch > '9')
            return NULL;
        unsigned d = ch - '0';
        if (x > (18446744073709551615ULL - d) / 10)
            return NULL; /* over 2**64-1: sender_values names it */
        x = x * 10 + d;
    }
    return PyLong_FromUnsignedLongLong(x);
}

static PyObject *text_value(span v, Py_ssize_t limit) {
    PyObject *s = string_of(v);
    if (s == NULL) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
            PyErr_Clear();
        return NULL;
    }
    if (PyUnicode_GET_LENGTH(s) > limit) {
        PyObject *cut = PyUnicode_Substring(s, 0, limit);
        Py_DECREF(s);
        return cut;
    }
    return s;
}

/* Whether the bytes are UTF-8 as RFC 3629 has it (no overlong forms, surrogates or code points past
   U+10FFFF): what orjson and Python's strict decoder take, so that a body they refuse is declined even
   where this path never decodes a string (the key of an unknown host, say). */
static int utf8(const unsigned char *p, const unsigned char *end) {
    while (p < end) {
        unsigned char b = *p;
        if (b < 0x80) {
            p++;
            continue;
        }
        int n;
        unsigned lo = 0x80, hi = 0xBF;
        if (b >= 0xC2 && b <= 0xDF)
            n = 1;
        else if (b >= 0xE0 && b <= 0xEF) {
            n = 2;
            if (b == 0xE0)
                lo = 0xA0;
            else if (b == 0xED)
                hi = 0x9F;
        } else if (b >= 0xF0 && b <= 0xF4) {
            n = 3;
            if (b == 0xF0)
                lo = 0x90;
            else if (b == 0xF4)
                hi = 0x8F;
        } else
            return 0;
        if (end - p <= n || p[1] < lo || p[1] > hi)
            return 0;
        for (int k = 2; k <= n; k++) {
            if (p[k] < 0x80 || p[k] > 0xBF)
                return 0;
        }
        p += n + 1;
    }
    return 1;
}

/* The parsed elements, or -1 when the body is not of the simple kind (or too many to hold). */
static Py_ssize_t read_body(cursor *c, entry **out, Py_ssize_t max_values) {
    int seen_request = 0, seen_data = 0, seen_clock = 0, seen_ns = 0;
    Py_ssize_t n = 0, cap = 0;
    entry *es = NULL;
    if (!utf8(c->s, c->end) || !eat(c, '{'))
        return -1;
    do {
        span name;
        if (!read_string(c, &name) || !eat(c, ':'))
            goto other;
        if (is(name, "request") && !seen_request) {
            span req;
            if (!read_string(c, &req) || !is(req, "sender data"))
                goto other;
            seen_request = 1;
        } else if (is(name, "data") && !seen_data) {
            seen_data = 1;
            if (!eat(c, '['))
                goto other;
            if (eat(c, ']'))
                continue;
            do {
                if (n == max_values)
                    goto other; /* the caller's orjson path refuses the request, naming the limit */
                if (n == cap) {
                    cap = cap ? cap * 2 : 256;
                    entry *grown = PyMem_Realloc(es, cap * sizeof(entry));
                    if (grown == NULL)
                        goto other;
                    es = grown;
                }
                if (!read_entry(c, &es[n]))
                    goto other;
                n++;
            } while (eat(c, ','));
            if (!eat(c, ']'))
                goto other;
        } else if ((is(name, "clock") && !seen_clock) || (is(name, "ns") && !seen_ns)) {
            long long ignored;
            if (!read_uint(c, &ignored))
                goto other;
            if (name.n == 5)
                seen_clock = 1;
            else
                seen_ns = 1;
        } else {
            goto other;
        }
    } while (eat(c, ','));
    if (!eat(c, '}') || !seen_request || !seen_data)
        goto other;
    skip_ws(c);
    if (c->s != c->end)
        goto other;
    *out = es;
    return n;
other:
    PyMem_Free(es);
    return -1;
}

typedef struct {
    PyObject *itemid, *value; /* new references */
    int list;                 /* 0 floats, 1 uints, 2 strs, 3 texts; -1 failed (unknown host or key) */
} row_parts;

/* Each element's item and value, or -1 (with an exception only on an error) when one is not simple. */
static int resolve(entry *es, Py_ssize_t n, PyObject *trappers, row_parts *rows) {
    PyObject *host = NULL, *keys = NULL;
    span last_host = {NULL, -1, 0};
    int status = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        entry *e = &es[i];
        row_parts *r = &rows[i];
        if (e->host.n != last_host.n || memcmp(e->host.p, last_host.p, e->host.n) != 0) {
            Py_XDECREF(host);
            host = string_of(e->host);
            if (host == NULL)
                goto other;
            keys = PyDict_GetItemWithError(trappers, host); /* borrowed: trappers holds it */
            if ((keys == NULL && PyErr_Occurred()) || (keys != NULL && !PyDict_Check(keys)))
                goto other;
            last_host = e->host;
        }
        if (keys == NULL)
            continue; /* r->list stays -1 */
        PyObject *key = string_of(e->key);
        if (key == NULL)
            goto other;
        PyObject *ref = PyDict_GetItemWithError(keys, key);
        Py_DECREF(key);
        if (ref == NULL) {
            if (PyErr_Occurred())
                goto other;
            continue;
        }
        PyObject *vt_obj = PyObject_GetAttr(ref, s_value_type);
        if (vt_obj == NULL)
            goto other;
        long vt = PyLong_AsLong(vt_obj);
        Py_DECREF(vt_obj);
        PyObject *v = NULL;
        int list = -1;
        switch (vt) {
        case VT_FLOAT:
            v = float_value(e->value);
            list = 0;
            break;
        case VT_UNSIGNED:
            v = uint_value(e->value);
            list = 1;
            break;
        case VT_CHAR:
            v = text_value(e->value, CHAR_LIMIT);
            list = 2;
            break;
        case VT_TEXT:
            v = text_value(e->value, TEXT_LIMIT);
            list = 3;
            break;
        }
        if (v == NULL)
            goto other; /* a log item, or a value sender_values trims or refuses */
        r->value = v;
        r->itemid = PyObject_GetAttr(ref, s_itemid);
        if (r->itemid == NULL)
            goto other;
        r->list = list;
    }
    status = 0;
other:
    Py_XDECREF(host);
    return status;
}

static PyObject *values(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer body;
    PyObject *trappers, *take;
    long long lo, hi;
    Py_ssize_t max_values;
    if (!PyArg_ParseTuple(args, "y*O!LLOn", &body, &PyDict_Type, &trappers, &lo, &hi, &take, &max_values))
        return NULL;
    cursor c = {(const unsigned char *)body.buf, (const unsigned char *)body.buf + body.len};
    entry *es = NULL;
    row_parts *rows = NULL;
    PyObject *result = NULL, *lists[4] = {NULL, NULL, NULL, NULL};
    long long failed = 0, next_ns = 0;
    Py_ssize_t n = read_body(&c, &es, max_values);
    if (n < 0)
        goto other;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (es[i].clock >= 0 && (es[i].clock < lo || es[i].clock > hi || es[i].ns > NS_MAX))
            goto other; /* refused by sender_values, which says why */
    }
    rows = PyMem_Calloc(n ? n : 1, sizeof(row_parts));
    if (rows == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        rows[i].list = -1;
    if (resolve(es, n, trappers, rows) < 0) {
        if (PyErr_Occurred() && !PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
            goto done;
        PyErr_Clear();
        goto other;
    }
    /* Nothing returns None past this point: the stamps taken are used. sender_values reserves one for
       every value, whether or not it has a clock, and so does this. */
    PyObject *first = PyObject_CallFunction(take, "n", n);
    if (first == NULL)
        goto done;
    long long stamp = PyLong_AsLongLong(first);
    Py_DECREF(first);
    if (stamp == -1 && PyErr_Occurred())
        goto done;
    long long now_c = stamp / NS_PER_S, now_n = stamp % NS_PER_S;
    for (int k = 0; k < 4; k++) {
        if ((lists[k] = PyList_New(0)) == NULL)
            goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        entry *e = &es[i];
        row_parts *r = &rows[i];
        if (r->list < 0) {
            failed++;
            continue;
        }
        long long clock, ns;
        if (e->clock < 0) {
            clock = now_c;
            ns = now_n;
            if (++now_n > NS_MAX) {
                now_c++;
                now_n = 0;
            }
        } else {
            clock = e->clock;
            ns = e->ns >= 0 ? e->ns : next_ns++;
        }
        PyObject *row = PyTuple_New(4);
        PyObject *c_obj = PyLong_FromLongLong(clock), *n_obj = PyLong_FromLongLong(ns);
        if (row == NULL || c_obj == NULL || n_obj == NULL) {
            Py_XDECREF(row);
            Py_XDECREF(c_obj);
            Py_XDECREF(n_obj);
            goto done;
        }
        PyTuple_SET_ITEM(row, 0, r->itemid); /* the row takes over both references */
        PyTuple_SET_ITEM(row, 1, c_obj);
        PyTuple_SET_ITEM(row, 2, n_obj);
        PyTuple_SET_ITEM(row, 3, r->value);
        r->itemid = r->value = NULL;
        int appended = PyList_Append(lists[r->list], row);
        Py_DECREF(row);
        if (appended < 0)
            goto done;
    }
    result = Py_BuildValue("(OOOOLn)", lists[0], lists[1], lists[2], lists[3], failed, n);
    goto done;
other:
    result = Py_None;
    Py_INCREF(result);
done:
    for (int k = 0; k < 4; k++)
        Py_XDECREF(lists[k]);
    if (rows != NULL) {
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_XDECREF(rows[i].itemid);
            Py_XDECREF(rows[i].value);
        }
    }
    PyMem_Free(rows);
    PyMem_Free(es);
    PyBuffer_Release(&body);
    return result;
}

static PyMethodDef methods[] = {
    {"values", values, METH_VARARGS,
     "values(body, trappers, lo, hi, take, max_values) -> (floats, uints, strs, texts, failed, count) | None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_sender", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__sender(void) {
    s_itemid = PyUnicode_InternFromString("itemid");
    s_value_type = PyUnicode_InternFromString("value_type");
    if (s_itemid == NULL || s_value_type == NULL)
        return NULL;
    return PyModule_Create(&module);
}
