/* The common case of `sender data`, compiled: the body's bytes straight to the rows of a WriteBatch.

   values(body, index, lo, hi, take, max_values) reads what zabbix_sender and most other senders send
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
#include <stdint.h>
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

/* The bytes a span's string holds, its escapes undone into *buf (to be freed) when it has any. */
static int unescaped(span v, span *out, char **buf) {
    *buf = NULL;
    if (!v.esc) {
        *out = v;
        return 0;
    }
    char *o = *buf = PyMem_Malloc(v.n ? v.n : 1);
    if (o == NULL) {
        PyErr_NoMemory();
        return -1;
    }
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
        default: *o++ = *p; /* " \\ / */
        }
    }
    out->p = *buf;
    out->n = o - *buf;
    out->esc = 0;
    return 0;
}

/* The string a span holds; NULL with an exception when it is not UTF-8. */
static PyObject *string_of(span v) {
    char *buf;
    span u;
    if (unescaped(v, &u, &buf) < 0)
        return NULL;
    PyObject *s = PyUnicode_DecodeUTF8(u.p, u.n, NULL);
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
        int ok = 0; /* a member read; a second one of a name, or another name, is not of the simple kind */
        if (is(name, "host") && !seen_host)
            ok = seen_host = read_string(c, &e->host);
        else if (is(name, "key") && !seen_key)
            ok = seen_key = read_string(c, &e->key);
        else if (is(name, "value") && !seen_value)
            ok = seen_value = read_string(c, &e->value);
        else if (is(name, "clock") && !seen_clock)
            ok = seen_clock = read_uint(c, &e->clock);
        else if (is(name, "ns") && !seen_ns)
            ok = seen_ns = read_uint(c, &e->ns);
        if (!ok)
            return 0;
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
        uint64_t word;
        if (end - p >= 8 && (memcpy(&word, p, 8), (word & 0x8080808080808080ULL) == 0)) {
            p += 8; /* eight ASCII bytes */
            continue;
        }
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

/* -- the index: trapper items by the UTF-8 bytes of host and key --------------------------------------

   Built once per configuration snapshot from Snapshot.trappers (Index(trappers)), so that a value's item
   is found from the bytes of the body without making a str of its host and key, hashing them and
   looking them up in two dicts. The strings are copied in: later changes to `trappers` do not reach it. */

typedef struct {
    Py_ssize_t host, key, host_n, key_n; /* offsets into the index's text */
    uint64_t hash;
    PyObject *itemid; /* a new reference; NULL: an empty slot */
    int value_type;
} slot;

typedef struct {
    PyObject_HEAD
    slot *slots;
    size_t mask;
    char *text;
    Py_ssize_t items;
} Index;

static uint64_t hash_of(const char *host, Py_ssize_t host_n, const char *key, Py_ssize_t key_n) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a, with a byte no UTF-8 text holds between host and key */
    for (Py_ssize_t i = 0; i < host_n; i++)
        h = (h ^ (unsigned char)host[i]) * 1099511628211ULL;
    h = (h ^ 0xFF) * 1099511628211ULL;
    for (Py_ssize_t i = 0; i < key_n; i++)
        h = (h ^ (unsigned char)key[i]) * 1099511628211ULL;
    return h ^ (h >> 29);
}

static void index_dealloc(Index *self) {
    if (self->slots != NULL) {
        for (size_t i = 0; i <= self->mask; i++)
            Py_XDECREF(self->slots[i].itemid);
    }
    PyMem_Free(self->slots);
    PyMem_Free(self->text);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* An item of the index, or NULL when host and key name none. */
static const slot *index_find(const Index *ix, const char *host, Py_ssize_t host_n, const char *key,
                              Py_ssize_t key_n) {
    uint64_t h = hash_of(host, host_n, key, key_n);
    for (size_t i = h & ix->mask;; i = (i + 1) & ix->mask) {
        const slot *sl = &ix->slots[i];
        if (sl->itemid == NULL)
            return NULL;
        if (sl->hash == h && sl->host_n == host_n && sl->key_n == key_n &&
            memcmp(ix->text + sl->host, host, host_n) == 0 && memcmp(ix->text + sl->key, key, key_n) == 0)
            return sl;
    }
}

static int index_add(Index *ix, PyObject *host, PyObject *key, PyObject *ref, Py_ssize_t *used) {
    Py_ssize_t host_n, key_n;
    const char *h = PyUnicode_AsUTF8AndSize(host, &host_n);
    const char *k = h ? PyUnicode_AsUTF8AndSize(key, &key_n) : NULL;
    if (k == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
            return -1;
        PyErr_Clear(); /* a lone surrogate: no UTF-8 body can name it */
        return 0;
    }
    PyObject *vt_obj = PyObject_GetAttr(ref, s_value_type);
    if (vt_obj == NULL)
        return -1;
    long vt = PyLong_AsLong(vt_obj);
    Py_DECREF(vt_obj);
    if (vt == -1 && PyErr_Occurred())
        return -1;
    PyObject *itemid = PyObject_GetAttr(ref, s_itemid);
    if (itemid == NULL)
        return -1;
    uint64_t hash = hash_of(h, host_n, k, key_n);
    size_t i = hash & ix->mask;
    while (ix->slots[i].itemid != NULL)
        i = (i + 1) & ix->mask;
    slot *sl = &ix->slots[i];
    memcpy(ix->text + *used, h, host_n);
    memcpy(ix->text + *used + host_n, k, key_n);
    *sl = (slot){*used, *used + host_n, host_n, key_n, hash, itemid, (int)vt};
    *used += host_n + key_n;
    ix->items++;
    return 0;
}

static PyObject *index_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    PyObject *trappers, *host, *keys, *key, *ref;
    static char *names[] = {"trappers", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!", names, &PyDict_Type, &trappers))
        return NULL;
    Py_ssize_t n = 0, bytes = 0, pos = 0, kpos;
    while (PyDict_Next(trappers, &pos, &host, &keys)) {
        if (!PyUnicode_Check(host) || !PyDict_Check(keys)) {
            PyErr_SetString(PyExc_TypeError, "Index(trappers): trappers must map host names to dicts of keys");
            return NULL;
        }
        kpos = 0;
        while (PyDict_Next(keys, &kpos, &key, &ref)) {
            if (!PyUnicode_Check(key)) {
                PyErr_SetString(PyExc_TypeError, "Index(trappers): keys must be strings");
                return NULL;
            }
            n++;
            /* at most 4 UTF-8 bytes a character */
            bytes += 4 * (PyUnicode_GET_LENGTH(host) + PyUnicode_GET_LENGTH(key));
        }
    }
    Index *ix = (Index *)type->tp_alloc(type, 0);
    if (ix == NULL)
        return NULL;
    size_t cap = 8;
    while (cap < (size_t)n * 2)
        cap *= 2;
    ix->mask = cap - 1;
    ix->slots = PyMem_Calloc(cap, sizeof(slot));
    ix->text = PyMem_Malloc(bytes ? bytes : 1);
    if (ix->slots == NULL || ix->text == NULL) {
        Py_DECREF(ix);
        return PyErr_NoMemory();
    }
    Py_ssize_t used = 0;
    pos = 0;
    while (PyDict_Next(trappers, &pos, &host, &keys)) {
        kpos = 0;
        while (PyDict_Next(keys, &kpos, &key, &ref)) {
            if (index_add(ix, host, key, ref, &used) < 0) {
                Py_DECREF(ix);
                return NULL;
            }
        }
    }
    return (PyObject *)ix;
}

static Py_ssize_t index_len(Index *self) { return self->items; }

static PySequenceMethods index_as_sequence = {.sq_length = (lenfunc)index_len};

static PyTypeObject IndexType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "vigil.server.ingest._sender.Index",
    .tp_doc = "Index(trappers): Snapshot.trappers by the UTF-8 bytes of host and key, for values()",
    .tp_basicsize = sizeof(Index),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = index_new,
    .tp_dealloc = (destructor)index_dealloc,
    .tp_as_sequence = &index_as_sequence,
};

typedef struct {
    PyObject *itemid, *value; /* new references */
    int list;                 /* 0 floats, 1 uints, 2 strs, 3 texts; -1 failed (unknown host or key) */
} row_parts;

/* Each element's item and value, or -1 (with an exception only on an error) when one is not simple. */
static int resolve(entry *es, Py_ssize_t n, const Index *ix, row_parts *rows) {
    for (Py_ssize_t i = 0; i < n; i++) {
        entry *e = &es[i];
        row_parts *r = &rows[i];
        span host, key;
        char *host_buf, *key_buf;
        if (unescaped(e->host, &host, &host_buf) < 0)
            return -1;
        if (unescaped(e->key, &key, &key_buf) < 0) {
            PyMem_Free(host_buf);
            return -1;
        }
        const slot *sl = index_find(ix, host.p, host.n, key.p, key.n);
        PyMem_Free(host_buf);
        PyMem_Free(key_buf);
        if (sl == NULL)
            continue; /* an unknown host or key: r->list stays -1 */
        PyObject *v = NULL;
        int list = -1;
        switch (sl->value_type) {
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
            return -1; /* a log item, or a value sender_values trims or refuses */
        r->value = v;
        Py_INCREF(sl->itemid);
        r->itemid = sl->itemid;
        r->list = list;
    }
    return 0;
}

static PyObject *values(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer body;
    PyObject *index, *take;
    long long lo, hi;
    Py_ssize_t max_values;
    if (!PyArg_ParseTuple(args, "y*O!LLOn", &body, &IndexType, &index, &lo, &hi, &take, &max_values))
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
    if (resolve(es, n, (const Index *)index, rows) < 0) {
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
     "values(body, index, lo, hi, take, max_values) -> (floats, uints, strs, texts, failed, count) | None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_sender", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__sender(void) {
    s_itemid = PyUnicode_InternFromString("itemid");
    s_value_type = PyUnicode_InternFromString("value_type");
    if (s_itemid == NULL || s_value_type == NULL || PyType_Ready(&IndexType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&IndexType);
    if (PyModule_AddObject(m, "Index", (PyObject *)&IndexType) < 0) {
        Py_DECREF(&IndexType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
