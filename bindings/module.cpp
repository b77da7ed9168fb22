// privcity._core — the pybind11 module. It only converts: checks arguments, takes pointers to
// buffers without copying, releases the GIL around the kernels and wraps the results.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <pthread.h>
#include <optional>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "privcity/aead.h"
#include "privcity/cpu.h"
#include "privcity/ddg.h"
#include "privcity/mask.h"
#include "privcity/noise.h"
#include "privcity/reduce.h"
#include "privcity/rng.h"
#include "privcity/shamir.h"

namespace py = pybind11;
using namespace privcity;

namespace {

constexpr size_t kGilThreshold = 2048;  // bytes; smaller calls keep the GIL (cheaper)

struct TagMismatch : std::exception {
    const char* what() const noexcept override { return "authentication tag mismatch"; }
};

// A read-only view of a C-contiguous bytes-like object, released on destruction.
struct View {
    Py_buffer view{};
    bool held = false;
    const uint8_t* ptr = nullptr;
    size_t len = 0;
    View() = default;
    View(const View&) = delete;
    View& operator=(const View&) = delete;
    View(View&& o) noexcept : view(o.view), held(o.held), ptr(o.ptr), len(o.len) { o.held = false; }
    ~View() {
        if (held) PyBuffer_Release(&view);
    }
};

[[noreturn]] void bad_buffer(PyObject* o, const char* name) {
    PyErr_Clear();
    if (PyObject_CheckBuffer(o))
        throw py::value_error(std::string(name) + " must be a C-contiguous buffer");
    throw py::type_error(std::string(name) + " must be a bytes-like object, not " +
                         std::string(Py_TYPE(o)->tp_name));
}

// name is only read to build an error message (no string is built on the success path).
void get_view(View& v, PyObject* o, const char* name) {
    if (PyBytes_CheckExact(o)) {
        v.ptr = reinterpret_cast<const uint8_t*>(PyBytes_AS_STRING(o));
        v.len = size_t(PyBytes_GET_SIZE(o));
        return;
    }
    if (PyObject_GetBuffer(o, &v.view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) bad_buffer(o, name);
    v.held = true;
    v.ptr = static_cast<const uint8_t*>(v.view.buf);
    v.len = size_t(v.view.len);
    // An object array's bytes are pointers, not data: encrypting them would lose the data.
    if (v.view.format && std::strchr(v.view.format, 'O'))
        throw py::type_error(std::string(name) + " is an array of Python objects; pass bytes-like data");
}

bool is_uint8_format(const char* f) {
    if (!f) return true;  // no format given: unsigned bytes
    if (*f == '<' || *f == '>' || *f == '=' || *f == '@' || *f == '!') ++f;
    return std::strcmp(f, "B") == 0;
}

// View with shape information, for (N, L) arrays.
void get_array_view(View& v, PyObject* o, const char* name) {
    if (PyObject_GetBuffer(o, &v.view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) bad_buffer(o, name);
    v.held = true;
    v.ptr = static_cast<const uint8_t*>(v.view.buf);
    v.len = size_t(v.view.len);
    if (v.view.itemsize != 1 || !is_uint8_format(v.view.format))
        throw py::type_error(std::string(name) + " must have dtype uint8, got buffer format '" +
                             std::string(v.view.format ? v.view.format : "B") + "'");
}

void check_message_len(size_t n, const std::string& name) {
    if (uint64_t(n) > AEAD_AES256GCM_MAX_MESSAGE)
        throw py::value_error(name + " is longer than GCM allows (2**36 - 32 bytes)");
}

void check_nonce(const View& v) {
    if (v.len != AEAD_AES256GCM_NPUBBYTES) throw py::value_error("nonce must be 12 bytes");
}

std::string item_name(const char* name, size_t i) {
    return std::string(name) + "[" + std::to_string(i) + "]";
}

// Pointer and length of item i of a batch. A bytes item is read directly (immutable, and the
// caller holds a reference); any other bytes-like item gets a buffer export kept in views.
void item_view(PyObject* o, const char* name, size_t i, const uint8_t*& p, size_t& n,
               std::vector<View>& views) {
    if (PyBytes_CheckExact(o)) {
        p = reinterpret_cast<const uint8_t*>(PyBytes_AS_STRING(o));
        n = size_t(PyBytes_GET_SIZE(o));
        return;
    }
    View& v = views.emplace_back();
    get_view(v, o, item_name(name, i).c_str());
    p = v.ptr;
    n = v.len;
}

bool is_sequence(PyObject* o) { return PyList_Check(o) || PyTuple_Check(o); }

// Owned references to the items of a list or tuple (the sequence may change while the GIL is
// released; these references keep every item alive).
std::vector<py::object> items_of(PyObject* seq) {
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject** it = PySequence_Fast_ITEMS(seq);
    std::vector<py::object> out;
    out.reserve(size_t(n));
    for (Py_ssize_t i = 0; i < n; ++i) out.push_back(py::reinterpret_borrow<py::object>(it[i]));
    return out;
}

class Aes256Gcm {
  public:
    // Set by the constructor, cleared by the destructor: methods refuse an instance whose
    // storage pybind11 allocated but never constructed (Aes256Gcm.__new__ without __init__).
    static constexpr uint64_t kLive = 0x70726976636974f1ull;
    uint64_t live_ = 0;

    Aes256Gcm(py::handle key, int impl) {
        View k;
        get_view(k, key.ptr(), "key");
        if (k.len != AEAD_AES256GCM_KEYBYTES) throw py::value_error("AES-256-GCM key must be 32 bytes");
        ctx_ = new aes256gcm_ctx;
        if (aead_aes256gcm_init(ctx_, k.ptr, impl) != 0) {
            delete ctx_;
            ctx_ = nullptr;
            throw py::value_error("implementation " + std::to_string(impl) +
                                  " is not available on this CPU");
        }
        live_ = kLive;
    }
    ~Aes256Gcm() {
        live_ = 0;
        if (ctx_) {
            aead_aes256gcm_wipe(ctx_);
            delete ctx_;
        }
    }
    Aes256Gcm(const Aes256Gcm&) = delete;
    Aes256Gcm& operator=(const Aes256Gcm&) = delete;

    int impl() const { return ctx_->impl; }

    py::bytes encrypt(py::handle nonce, py::handle data, py::handle ad) const {
        View n, m, a;
        get_view(n, nonce.ptr(), "nonce");
        check_nonce(n);
        get_view(m, data.ptr(), "data");
        if (!ad.is_none()) get_view(a, ad.ptr(), "associated_data");
        check_message_len(m.len, "data");
        PyObject* out = PyBytes_FromStringAndSize(nullptr, Py_ssize_t(m.len + AEAD_AES256GCM_ABYTES));
        if (!out) throw py::error_already_set();
        auto* o = reinterpret_cast<uint8_t*>(PyBytes_AS_STRING(out));
        int r;
        if (m.len + a.len >= kGilThreshold) {
            py::gil_scoped_release nogil;
            r = aead_aes256gcm_encrypt_ctx(o, o + m.len, m.ptr, m.len, a.ptr, a.len, n.ptr, ctx_);
        } else {
            r = aead_aes256gcm_encrypt_ctx(o, o + m.len, m.ptr, m.len, a.ptr, a.len, n.ptr, ctx_);
        }
        if (r != 0) {
            Py_DECREF(out);
            throw std::runtime_error("AES-256-GCM context is not initialised");
        }
        return py::reinterpret_steal<py::bytes>(out);
    }

    py::bytes decrypt(py::handle nonce, py::handle data, py::handle ad) const {
        View n, c, a;
        get_view(n, nonce.ptr(), "nonce");
        check_nonce(n);
        get_view(c, data.ptr(), "data");
        if (!ad.is_none()) get_view(a, ad.ptr(), "associated_data");
        // Too short to hold a tag: an authentication failure, as in cryptography's AESGCM.
        if (c.len < AEAD_AES256GCM_ABYTES) throw TagMismatch();
        const size_t len = c.len - AEAD_AES256GCM_ABYTES;
        check_message_len(len, "data");
        PyObject* out = PyBytes_FromStringAndSize(nullptr, Py_ssize_t(len));
        if (!out) throw py::error_already_set();
        auto* o = reinterpret_cast<uint8_t*>(PyBytes_AS_STRING(out));
        int r;
        if (c.len + a.len >= kGilThreshold) {
            py::gil_scoped_release nogil;
            r = aead_aes256gcm_decrypt_ctx(o, c.ptr, len, c.ptr + len, a.ptr, a.len, n.ptr, ctx_);
        } else {
            r = aead_aes256gcm_decrypt_ctx(o, c.ptr, len, c.ptr + len, a.ptr, a.len, n.ptr, ctx_);
        }
        if (r != 0) {
            Py_DECREF(out);
            throw TagMismatch();
        }
        return py::reinterpret_steal<py::bytes>(out);
    }

    // Batch. Returns a list of bytes (messages given as a list/tuple) or an (N, L+16) uint8
    // array (messages given as an (N, L) array).
    py::object encrypt_many(py::handle nonces, py::handle messages, py::handle ad) const {
        Batch b;
        b.load_nonces(nonces);
        b.load_inputs(messages, "messages", 0);
        b.load_ad(ad);
        const size_t n = b.n;
        py::object result;
        std::vector<uint8_t*> outs(n);
        if (b.array_mode) {
            py::array_t<uint8_t> arr({py::ssize_t(n), py::ssize_t(b.row + AEAD_AES256GCM_ABYTES)});
            uint8_t* base = arr.mutable_data();
            for (size_t i = 0; i < n; ++i) outs[i] = base + i * (b.row + AEAD_AES256GCM_ABYTES);
            result = std::move(arr);
        } else {
            py::list lst(n);
            for (size_t i = 0; i < n; ++i) {
                PyObject* o = PyBytes_FromStringAndSize(nullptr, Py_ssize_t(b.len[i] + AEAD_AES256GCM_ABYTES));
                if (!o) throw py::error_already_set();
                outs[i] = reinterpret_cast<uint8_t*>(PyBytes_AS_STRING(o));
                PyList_SET_ITEM(lst.ptr(), Py_ssize_t(i), o);
            }
            result = std::move(lst);
        }
        int r;
        {
            std::optional<py::gil_scoped_release> nogil;
            if (b.total >= kGilThreshold) nogil.emplace();
            r = aead_aes256gcm_encrypt_many(outs.data(), b.ptr.data(), b.len.data(),
                                            b.has_ad ? b.adptr.data() : nullptr,
                                            b.has_ad ? b.adlen.data() : nullptr, b.nonces.ptr, n, ctx_);
        }
        if (r != 0) throw std::runtime_error("AES-256-GCM context is not initialised");
        return result;
    }

    // Returns (plaintexts, status) with status an (N,) bool array. With strict, any failure
    // wipes every output; failed list entries are None, failed array rows are zeros.
    py::tuple decrypt_many(py::handle nonces, py::handle ciphertexts, py::handle ad, bool strict) const {
        Batch b;
        b.load_nonces(nonces);
        b.load_inputs(ciphertexts, "ciphertexts", AEAD_AES256GCM_ABYTES, /*short_ok=*/true);
        b.load_ad(ad);
        const size_t n = b.n;
        std::vector<uint8_t*> outs(n);
        std::vector<PyObject*> objs;
        py::object result;
        py::array_t<bool> status(py::ssize_t{py::ssize_t(n)});
        if (b.array_mode) {
            const size_t L = b.row - AEAD_AES256GCM_ABYTES;
            py::array_t<uint8_t> arr({py::ssize_t(n), py::ssize_t(L)});
            uint8_t* base = arr.mutable_data();
            for (size_t i = 0; i < n; ++i) outs[i] = base + i * L;
            result = std::move(arr);
        } else {
            objs.resize(n);
            for (size_t i = 0; i < n; ++i) {
                const size_t plen = b.len[i] < AEAD_AES256GCM_ABYTES ? 0 : b.len[i] - AEAD_AES256GCM_ABYTES;
                objs[i] = PyBytes_FromStringAndSize(nullptr, Py_ssize_t(plen));
                if (!objs[i]) {
                    for (size_t j = 0; j < i; ++j) Py_DECREF(objs[j]);
                    throw py::error_already_set();
                }
                outs[i] = reinterpret_cast<uint8_t*>(PyBytes_AS_STRING(objs[i]));
            }
        }
        static_assert(sizeof(bool) == 1, "bool status array");
        auto* st = reinterpret_cast<uint8_t*>(status.mutable_data());
        size_t failed;
        {
            std::optional<py::gil_scoped_release> nogil;
            if (b.total >= kGilThreshold) nogil.emplace();
            failed = aead_aes256gcm_decrypt_many(outs.data(), st, b.ptr.data(), b.len.data(),
                                                 b.has_ad ? b.adptr.data() : nullptr,
                                                 b.has_ad ? b.adlen.data() : nullptr,
                                                 b.nonces.ptr, n, strict ? 1 : 0, ctx_);
        }
        if (!b.array_mode) {
            py::list lst(n);
            for (size_t i = 0; i < n; ++i) {
                PyObject* o = objs[i];
                if (st[i] == 0 || (strict && failed)) {
                    Py_DECREF(o);
                    o = Py_NewRef(Py_None);
                }
                PyList_SET_ITEM(lst.ptr(), Py_ssize_t(i), o);
            }
            result = std::move(lst);
        }
        return py::make_tuple(result, status);
    }

  private:
    // Pointers and lengths of a batch's inputs, with the views that keep them alive.
    struct Batch {
        size_t n = 0;
        View nonces;
        bool array_mode = false;
        size_t row = 0;
        size_t total = 0;
        std::vector<py::object> keep;
        std::vector<View> views;
        std::vector<const uint8_t*> ptr;
        std::vector<size_t> len;
        bool has_ad = false;
        std::vector<View> adviews;
        std::vector<py::object> adkeep;
        std::vector<const uint8_t*> adptr;
        std::vector<size_t> adlen;

        void load_nonces(py::handle h) {
            get_array_view(nonces, h.ptr(), "nonces");
            if (nonces.view.ndim != 2 || nonces.view.shape[1] != 12)
                throw py::value_error("nonces must be an (N, 12) uint8 array");
            n = size_t(nonces.view.shape[0]);
        }

        // minlen: 16 for ciphertexts (each must hold a tag), 0 for messages. With short_ok, list
        // items shorter than minlen pass (the kernel fails them); array rows never may.
        void load_inputs(py::handle h, const char* name, size_t minlen, bool short_ok = false) {
            PyObject* o = h.ptr();
            ptr.resize(n);
            len.resize(n);
            if (is_sequence(o)) {
                if (size_t(PySequence_Fast_GET_SIZE(o)) != n)
                    throw py::value_error(std::string(name) + " has " +
                                          std::to_string(PySequence_Fast_GET_SIZE(o)) +
                                          " items but nonces has " + std::to_string(n) + " rows");
                keep = items_of(o);
                for (size_t i = 0; i < n; ++i) {
                    item_view(keep[i].ptr(), name, i, ptr[i], len[i], views);
                    if (len[i] < minlen) {
                        if (!short_ok) throw py::value_error(item_name(name, i) + " is too short");
                    } else if (uint64_t(len[i] - minlen) > AEAD_AES256GCM_MAX_MESSAGE)
                        check_message_len(len[i] - minlen, item_name(name, i));
                    total += len[i];
                }
                return;
            }
            if (!PyObject_CheckBuffer(o))
                throw py::type_error(std::string(name) +
                                     " must be a list of bytes-like objects or an (N, L) uint8 array");
            array_mode = true;
            View& whole = views.emplace_back();
            get_array_view(whole, o, name);
            const Py_buffer& v = whole.view;
            if (v.ndim != 2)
                throw py::value_error(std::string(name) + " must be an (N, L) uint8 array, got ndim " +
                                      std::to_string(v.ndim));
            if (size_t(v.shape[0]) != n)
                throw py::value_error(std::string(name) + " has " + std::to_string(v.shape[0]) +
                                      " rows but nonces has " + std::to_string(n));
            row = size_t(v.shape[1]);
            if (row < minlen)
                throw py::value_error(std::string(name) + " rows are shorter than the 16-byte tag");
            check_message_len(row - minlen, name);
            for (size_t i = 0; i < n; ++i) {
                ptr[i] = whole.ptr + i * row;
                len[i] = row;
            }
            total = n * row;
        }

        void load_ad(py::handle h) {
            PyObject* o = h.ptr();
            if (o == Py_None) return;
            has_ad = true;
            adptr.resize(n);
            adlen.resize(n);
            if (is_sequence(o)) {
                if (size_t(PySequence_Fast_GET_SIZE(o)) != n)
                    throw py::value_error("associated_data has " +
                                          std::to_string(PySequence_Fast_GET_SIZE(o)) +
                                          " items but nonces has " + std::to_string(n) + " rows");
                adkeep = items_of(o);
                for (size_t i = 0; i < n; ++i) {
                    PyObject* it = adkeep[i].ptr();
                    if (it == Py_None) {
                        adptr[i] = nullptr;
                        adlen[i] = 0;
                        continue;
                    }
                    item_view(it, "associated_data", i, adptr[i], adlen[i], adviews);
                    total += adlen[i];
                }
                return;
            }
            View& one = adviews.emplace_back();
            get_view(one, o, "associated_data");
            for (size_t i = 0; i < n; ++i) {
                adptr[i] = one.ptr;
                adlen[i] = one.len;
            }
            total += n * one.len;
        }
    };

    aes256gcm_ctx* ctx_ = nullptr;
};


// --- envelopes under many keys -------------------------------------------------------------------

// The n x 32-byte keys of a many-key batch (a bytes-like object of exactly n * 32 bytes).
void load_keys(View& keys, py::handle h, size_t n) {
    get_view(keys, h.ptr(), "keys");
    if (keys.len != 32 * n)
        throw py::value_error("keys must hold 32 bytes per envelope (" + std::to_string(32 * n) +
                              " bytes), got " + std::to_string(keys.len));
}

void load_nonce_rows(View& nonces, py::handle h, size_t n) {
    get_array_view(nonces, h.ptr(), "nonces");
    if (nonces.view.ndim != 2 || nonces.view.shape[1] != 12 || size_t(nonces.view.shape[0]) != n)
        throw py::value_error("nonces must be an (N, 12) uint8 array with one row per envelope");
}

// Items of a list or tuple of bytes-like objects (kept alive in keep/views).
size_t load_items(PyObject* o, const char* name, std::vector<py::object>& keep,
                  std::vector<View>& views, std::vector<const uint8_t*>& ptr,
                  std::vector<size_t>& len) {
    if (!is_sequence(o)) throw py::type_error(std::string(name) + " must be a list or tuple of bytes-like objects");
    keep = items_of(o);
    const size_t n = keep.size();
    ptr.resize(n);
    len.resize(n);
    views.reserve(n);
    for (size_t i = 0; i < n; ++i) item_view(keep[i].ptr(), name, i, ptr[i], len[i], views);
    return n;
}

// ValueError unless implementation `impl` can run on this CPU (the test init uses a zero key).
void check_impl(int impl) {
    aes256gcm_ctx probe;
    const uint8_t zero[32] = {};
    const bool ok = aead_aes256gcm_init(&probe, zero, impl) == 0;
    if (ok) aead_aes256gcm_wipe(&probe);
    if (!ok) throw py::value_error("implementation " + std::to_string(impl) + " is not available on this CPU");
}

// Envelope i = heads[i] || AES-GCM(keys[i], nonces[i], ad = heads[i], prefix || bodies[i]).
py::list seal_multikey(py::handle keys, py::handle nonces, py::handle heads, py::handle prefix,
                       py::handle bodies, int impl) {
    std::vector<py::object> hkeep, bkeep;
    std::vector<View> hviews, bviews;
    std::vector<const uint8_t*> hptr, bptr;
    std::vector<size_t> hlen, blen;
    const size_t n = load_items(heads.ptr(), "heads", hkeep, hviews, hptr, hlen);
    if (load_items(bodies.ptr(), "bodies", bkeep, bviews, bptr, blen) != n)
        throw py::value_error("heads and bodies must have the same number of items");
    View k, nv, pv;
    load_keys(k, keys, n);
    load_nonce_rows(nv, nonces, n);
    get_view(pv, prefix.ptr(), "prefix");
    for (size_t i = 0; i < n; ++i) check_message_len(pv.len + blen[i], item_name("bodies", i));
    check_impl(impl);
    // Owned (released on any exception), then handed to the list.
    std::vector<py::object> objs(n);
    std::vector<uint8_t*> outs(n);
    size_t total = 0;
    for (size_t i = 0; i < n; ++i) {
        const size_t size = hlen[i] + pv.len + blen[i] + AEAD_AES256GCM_ABYTES;
        objs[i] = py::reinterpret_steal<py::object>(PyBytes_FromStringAndSize(nullptr, Py_ssize_t(size)));
        if (!objs[i]) throw py::error_already_set();
        outs[i] = reinterpret_cast<uint8_t*>(PyBytes_AS_STRING(objs[i].ptr()));
        total += size;
    }
    int r;
    {
        std::optional<py::gil_scoped_release> nogil;
        if (total >= kGilThreshold) nogil.emplace();
        r = aead_aes256gcm_seal_multikey(outs.data(), hptr.data(), hlen.data(), pv.ptr, pv.len,
                                         bptr.data(), blen.data(), nv.ptr, k.ptr, n, impl);
    }
    if (r != 0) throw py::value_error("implementation " + std::to_string(impl) + " is not available on this CPU");
    py::list out(n);
    for (size_t i = 0; i < n; ++i) PyList_SET_ITEM(out.ptr(), Py_ssize_t(i), objs[i].release().ptr());
    return out;
}

// (plaintexts, status): plaintext i of envelopes[i] whose first header_lens[i] bytes are its
// header (the associated data), or None where it did not authenticate.
py::tuple open_multikey(py::handle keys, py::handle nonces, py::handle envelopes,
                        py::handle header_lens, int impl) {
    std::vector<py::object> ekeep;
    std::vector<View> eviews;
    std::vector<const uint8_t*> eptr;
    std::vector<size_t> elen;
    const size_t n = load_items(envelopes.ptr(), "envelopes", ekeep, eviews, eptr, elen);
    View k, nv;
    load_keys(k, keys, n);
    load_nonce_rows(nv, nonces, n);
    if (!is_sequence(header_lens.ptr()) || size_t(PySequence_Fast_GET_SIZE(header_lens.ptr())) != n)
        throw py::value_error("header_lens must be a list with one length per envelope");
    std::vector<size_t> hlen(n);
    for (size_t i = 0; i < n; ++i) {
        const Py_ssize_t h = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(header_lens.ptr(), Py_ssize_t(i)));
        if (h == -1 && PyErr_Occurred()) throw py::error_already_set();
        if (h < 0 || size_t(h) > elen[i])
            throw py::value_error(item_name("header_lens", i) + " must be in [0, the envelope's length]");
        hlen[i] = size_t(h);
    }
    check_impl(impl);
    // Owned (released on any exception), then handed to the list.
    std::vector<py::object> objs(n);
    std::vector<uint8_t*> outs(n, nullptr);
    size_t total = 0;
    for (size_t i = 0; i < n; ++i) {
        const size_t plen = elen[i] - hlen[i] < AEAD_AES256GCM_ABYTES ? 0 : elen[i] - hlen[i] - AEAD_AES256GCM_ABYTES;
        objs[i] = py::reinterpret_steal<py::object>(PyBytes_FromStringAndSize(nullptr, Py_ssize_t(plen)));
        if (!objs[i]) throw py::error_already_set();
        outs[i] = reinterpret_cast<uint8_t*>(PyBytes_AS_STRING(objs[i].ptr()));
        total += elen[i];
    }
    py::array_t<bool> status(py::ssize_t{py::ssize_t(n)});
    auto* st = reinterpret_cast<uint8_t*>(status.mutable_data());
    {
        std::optional<py::gil_scoped_release> nogil;
        if (total >= kGilThreshold) nogil.emplace();
        aead_aes256gcm_open_multikey(outs.data(), st, eptr.data(), elen.data(), hlen.data(),
                                     nv.ptr, k.ptr, n, impl);
    }
    py::list out(n);
    for (size_t i = 0; i < n; ++i) {
        PyObject* o = st[i] ? objs[i].release().ptr() : Py_NewRef(Py_None);
        PyList_SET_ITEM(out.ptr(), Py_ssize_t(i), o);
    }
    return py::make_tuple(out, status);
}

// --- CSPRNG and samplers ------------------------------------------------------------------------

template <class T>
using carray = py::array_t<T, py::array::c_style>;

template <class T>
T* out_ptr(carray<T>& a, const char* name) {
    if (!a.writeable()) throw py::value_error(std::string(name) + " must be writable");
    return a.mutable_data();
}

class Rng;
// Every live generator, so that fork() can take all their locks first (pthread_atfork): a
// child never inherits a lock held by a thread that does not exist in it.
std::mutex g_rng_registry_mu;
std::vector<Rng*>& rng_registry() {
    static std::vector<Rng*> r;
    return r;
}
void rng_register(Rng* r) {
    std::lock_guard<std::mutex> lock(g_rng_registry_mu);
    rng_registry().push_back(r);
}
void rng_unregister(Rng* r) {
    std::lock_guard<std::mutex> lock(g_rng_registry_mu);
    auto& v = rng_registry();
    v.erase(std::remove(v.begin(), v.end(), r), v.end());
}

// One rng_state behind a mutex: calls release the GIL, so two Python threads may reach the
// same generator; the lock keeps its keystream from being handed out twice.
class Rng {
  public:
    std::mutex mu_;
    static constexpr uint64_t kLive = 0x70726976726e6721ull;
    uint64_t live_ = 0;

    explicit Rng(py::handle key) {
        st_ = new rng_state;
        if (key.is_none()) {
            const int r = rng_init_os(st_);
            if (r != 0) {
                delete st_;
                st_ = nullptr;
                throw std::runtime_error("the operating system gave no randomness (getrandom failed)");
            }
        } else {
            View k;
            get_view(k, key.ptr(), "key");
            if (k.len != 32) {
                delete st_;
                st_ = nullptr;
                throw py::value_error("key must be 32 bytes");
            }
            rng_init_key(st_, k.ptr);
        }
        live_ = kLive;
        rng_register(this);
    }
    ~Rng() {
        rng_unregister(this);
        live_ = 0;
        if (st_) {
            rng_wipe(st_);
            delete st_;
        }
    }
    Rng(const Rng&) = delete;
    Rng& operator=(const Rng&) = delete;

    bool seeded() const { return st_->seeded != 0; }
    int impl() const { return st_->impl; }
    uint64_t position() {
        std::lock_guard<std::mutex> lock(mu_);
        return rng_position(st_);
    }

    // Runs f(state) with the GIL released when the work is large, under the generator's lock.
    template <class F>
    auto run(size_t work, F&& f) {
        std::optional<py::gil_scoped_release> nogil;
        if (work >= 4096) nogil.emplace();
        std::lock_guard<std::mutex> lock(mu_);
        return f(st_);
    }

  private:
    rng_state* st_ = nullptr;
};

void rng_before_fork() {
    g_rng_registry_mu.lock();
    for (Rng* r : rng_registry()) r->mu_.lock();
}
void rng_after_fork() {  // parent and child: the forking thread owns every lock
    for (Rng* r : rng_registry()) r->mu_.unlock();
    g_rng_registry_mu.unlock();
}

Rng& live(Rng* r) {
    if (!r || r->live_ != Rng::kLive) throw py::type_error("Rng instance is not initialised");
    return *r;
}

void check_positive(double v, const char* name) {
    if (!(v > 0) || !std::isfinite(v)) throw py::value_error(std::string(name) + " must be a finite number > 0");
}

// Binding of a sampler that fills (or adds to) a caller's array with one positive parameter.
template <class T, void (*Sampler)(T*, size_t, T, rng_state*) noexcept>
auto fill_with(const char* array_name, const char* param_name) {
    return [array_name, param_name](Rng* r, carray<T> a, T param) {
        check_positive(param, param_name);
        T* p = out_ptr(a, array_name);
        const size_t n = size_t(a.size());
        live(r).run(sizeof(T) * n, [&](rng_state* st) { Sampler(p, n, param, st); });
    };
}

// --- distributed discrete Gaussian (helpers for bind_rng and bind_ddg) --------------------------

ddg_config ddg_config_of(size_t d, size_t dp, py::handle key, double clip, double gamma,
                         uint64_t l2_bound_sq, uint64_t num, uint64_t den, unsigned bits) {
    View k;
    get_view(k, key.ptr(), "rotation_key");
    if (k.len != 32) throw py::value_error("rotation_key must be 32 bytes");
    ddg_config cfg{d, dp, clip, gamma, l2_bound_sq, num, den, bits, {}};
    std::memcpy(cfg.rotation_key, k.ptr, 32);
    return cfg;
}

[[noreturn]] void ddg_throw(int rc) {
    switch (rc) {
        case DDG_E_DIM:
            throw py::value_error("padded length must be ddg_padded_dim(dim), dim in [1, 2**31]");
        case DDG_E_PARAM:
            throw py::value_error("clip and gamma must be finite and > 0, bits in [1, 32] for "
                                  "uint32 words, [1, 64] for uint64");
        case DDG_E_RANGE:
            throw py::value_error("(clip / gamma + sqrt(padded_dim) + 1)**2 must be below 2**52 "
                                  "(integers would be inexact)");
        case DDG_E_BOUND:
            throw py::value_error("l2_bound_sq must be >= (clip / gamma)**2 * (1 + 2**-40) and "
                                  "below 2**52");
        case DDG_E_NOISE:
            throw py::value_error("discrete Gaussian sigma^2 = num/den out of the supported range");
        case DDG_E_NONFINITE: throw py::value_error("x contains NaN or Inf");
        case DDG_E_MEMORY: throw std::bad_alloc();
        default: throw std::runtime_error("ddg kernel failed with status " + std::to_string(rc));
    }
}

// An optional int64 output of n elements: None, or a writable C-contiguous int64 array.
int64_t* optional_i64(py::handle h, const char* name, size_t n) {
    if (h.is_none()) return nullptr;
    if (!py::isinstance<carray<int64_t>>(h))  // an ndarray of dtype int64, C-contiguous
        throw py::type_error(std::string(name) + " must be None or a C-contiguous int64 array");
    auto a = py::reinterpret_borrow<carray<int64_t>>(h);
    if (size_t(a.size()) != n)
        throw py::value_error(std::string(name) + " must have the padded length " +
                              std::to_string(n));
    return out_ptr(a, name);
}

// Rng.ddg_encode_u32 / _u64: (norm before clipping, rounding draws).
template <class W, double (*Kernel)(W*, int64_t*, int64_t*, uint32_t*, const float*,
                                    const ddg_config*, rng_state*) noexcept>
auto ddg_encoder() {
    return [](Rng* r, carray<W> out, carray<float> x, py::handle key, double clip, double gamma,
              uint64_t l2_bound_sq, uint64_t num, uint64_t den, unsigned bits, py::handle rounded,
              py::handle noise) {
        const ddg_config cfg = ddg_config_of(size_t(x.size()), size_t(out.size()), key, clip, gamma,
                                             l2_bound_sq, num, den, bits);
        W* o = out_ptr(out, "out");
        int64_t* rp = optional_i64(rounded, "rounded", cfg.padded_dim);
        int64_t* np_ = optional_i64(noise, "noise", cfg.padded_dim);
        const float* xp = x.data();
        uint32_t tries = 0;
        const double norm = live(r).run(64 * cfg.padded_dim, [&](rng_state* st) {
            return Kernel(o, rp, np_, &tries, xp, &cfg, st);
        });
        if (norm < 0) ddg_throw(int(norm));
        return py::make_tuple(norm, tries);
    };
}

void bind_rng(py::module_& m) {
    pthread_atfork(rng_before_fork, rng_after_fork, rng_after_fork);
    py::class_<Rng>(m, "Rng")
        .def(py::init<py::handle>(), py::arg("key"))
        .def_property_readonly("seeded", [](Rng* r) { return live(r).seeded(); })
        .def_property_readonly("impl", [](Rng* r) { return live(r).impl(); })
        .def_property_readonly("position", [](Rng* r) { return live(r).position(); })
        .def("fill_bytes", [](Rng* r, size_t n) {
            PyObject* out = PyBytes_FromStringAndSize(nullptr, Py_ssize_t(n));
            if (!out) throw py::error_already_set();
            auto* p = reinterpret_cast<uint8_t*>(PyBytes_AS_STRING(out));
            live(r).run(n, [&](rng_state* st) { rng_fill(st, p, n); });
            return py::reinterpret_steal<py::bytes>(out);
        }, py::arg("n"))
        .def("uniform", [](Rng* r, carray<double> out) {
            double* p = out_ptr(out, "out");
            const size_t n = size_t(out.size());
            live(r).run(8 * n, [&](rng_state* st) { noise_uniform_f64(p, n, st); });
        }, py::arg("out").noconvert())
        .def("gaussian_f32", fill_with<float, noise_gaussian_f32>("out", "sigma"), py::arg("out").noconvert(),
             py::arg("sigma"))
        .def("gaussian_f64", fill_with<double, noise_gaussian_f64>("out", "sigma"), py::arg("out").noconvert(),
             py::arg("sigma"))
        .def("add_gaussian_f32", fill_with<float, noise_add_gaussian_f32>("x", "sigma"), py::arg("x").noconvert(),
             py::arg("sigma"))
        .def("add_gaussian_f64", fill_with<double, noise_add_gaussian_f64>("x", "sigma"), py::arg("x").noconvert(),
             py::arg("sigma"))
        .def("laplace", fill_with<double, noise_laplace_f64>("out", "scale"), py::arg("out").noconvert(),
             py::arg("scale"))
        .def("bernoulli", [](Rng* r, carray<uint8_t> out, double p) {
            if (!(p >= 0 && p <= 1)) throw py::value_error("p must be in [0, 1]");
            uint8_t* o = out_ptr(out, "out");
            const size_t n = size_t(out.size());
            live(r).run(8 * n, [&](rng_state* st) { noise_bernoulli(o, n, p, st); });
        }, py::arg("out").noconvert(), py::arg("p"))
        .def("discrete_laplace", [](Rng* r, carray<int64_t> out, uint64_t num, uint64_t den) {
            int64_t* o = out_ptr(out, "out");
            const size_t n = size_t(out.size());
            const int rc = live(r).run(64 * n, [&](rng_state* st) { return noise_discrete_laplace(o, n, num, den, st); });
            if (rc != 0) throw py::value_error("discrete Laplace scale num/den out of range (1 <= num, den < 2**62, num/den <= 2**56)");
        }, py::arg("out").noconvert(), py::arg("num"), py::arg("den"))
        .def("discrete_gaussian", [](Rng* r, carray<int64_t> out, uint64_t num, uint64_t den) {
            int64_t* o = out_ptr(out, "out");
            const size_t n = size_t(out.size());
            const int rc = live(r).run(64 * n, [&](rng_state* st) { return noise_discrete_gaussian(o, n, num, den, st); });
            if (rc != 0) throw py::value_error("discrete Gaussian sigma^2 = num/den out of the supported range");
        }, py::arg("out").noconvert(), py::arg("num"), py::arg("den"))
        .def("clip_add_gaussian_f32", [](Rng* r, carray<float> out, carray<float> x, float clip, float sigma) {
            check_positive(clip, "clip");
            check_positive(sigma, "sigma");
            if (out.size() != x.size()) throw py::value_error("out and x must have the same size");
            float* o = out_ptr(out, "out");
            const float* xp = x.data();
            const size_t n = size_t(x.size());
            const double norm = live(r).run(4 * n, [&](rng_state* st) {
                return noise_clip_add_gaussian_f32(o, xp, n, clip, sigma, st);
            });
            if (norm < 0) throw py::value_error("x contains NaN or Inf");
            return norm;
        }, py::arg("out").noconvert(), py::arg("x").noconvert(), py::arg("clip"), py::arg("sigma"))
        .def("clip_round_add_dgauss", [](Rng* r, carray<int64_t> out, carray<float> x, double clip,
                                         double scale, uint64_t num, uint64_t den) {
            check_positive(clip, "clip");
            check_positive(scale, "scale");
            if (out.size() != x.size()) throw py::value_error("out and x must have the same size");
            int64_t* o = out_ptr(out, "out");
            const float* xp = x.data();
            const size_t n = size_t(x.size());
            const double norm = live(r).run(64 * n, [&](rng_state* st) {
                return noise_clip_round_add_dgauss(o, xp, n, clip, scale, num, den, st);
            });
            if (norm == -1.0) throw py::value_error("x contains NaN or Inf");
            if (norm == -2.0) throw py::value_error("discrete Gaussian sigma^2 = num/den out of the supported range");
            if (norm == -3.0) throw py::value_error("clip * scale must be below 2**61 (integers would overflow)");
            return norm;
        }, py::arg("out").noconvert(), py::arg("x").noconvert(), py::arg("clip"), py::arg("scale"),
           py::arg("num"), py::arg("den"))
        .def("ddg_encode_u32", ddg_encoder<uint32_t, ddg_encode_u32>(), py::arg("out").noconvert(),
             py::arg("x").noconvert(), py::arg("rotation_key"), py::arg("clip"), py::arg("gamma"),
             py::arg("l2_bound_sq"), py::arg("num"), py::arg("den"), py::arg("bits"),
             py::arg("rounded") = py::none(), py::arg("noise") = py::none())
        .def("ddg_encode_u64", ddg_encoder<uint64_t, ddg_encode_u64>(), py::arg("out").noconvert(),
             py::arg("x").noconvert(), py::arg("rotation_key"), py::arg("clip"), py::arg("gamma"),
             py::arg("l2_bound_sq"), py::arg("num"), py::arg("den"), py::arg("bits"),
             py::arg("rounded") = py::none(), py::arg("noise") = py::none());

    m.def("discrete_gaussian_params_ok", &noise_discrete_gaussian_params_ok, py::arg("num"), py::arg("den"));
    m.def("l2_norm_f32", [](carray<float> x) {
        const float* p = x.data();
        const size_t n = size_t(x.size());
        std::optional<py::gil_scoped_release> nogil;
        if (n >= 4096) nogil.emplace();
        return noise_l2_norm_f32(p, n);
    }, py::arg("x").noconvert());
    m.def("simd_isa_supported", &simd_isa_supported);
    m.def("simd_isa_selected", &simd_isa_selected);
}


// --- reductions ---------------------------------------------------------------------------------

// Row pointers of a batch of updates: a 2-D C-contiguous array, or a list/tuple of 1-D
// C-contiguous arrays of one length. T is the element type (checked, never converted).
template <class T>
struct Rows {
    std::vector<const T*> ptr;
    std::vector<py::array> keep;  // holds the arrays while the GIL is released
    size_t d = 0;
};

template <class T>
Rows<T> rows_of(py::handle obj, const char* name) {
    Rows<T> r;
    const auto dtype = py::dtype::of<T>();
    auto check = [&](const py::array& a, const std::string& what) {
        if (!a.dtype().is(dtype))
            throw py::type_error(what + " must have dtype " + std::string(py::str(dtype)) + ", got " +
                                 std::string(py::str(a.dtype())));
        if (!(a.flags() & py::array::c_style)) throw py::value_error(what + " must be C-contiguous");
    };
    if (py::isinstance<py::list>(obj) || py::isinstance<py::tuple>(obj)) {
        const auto seq = py::reinterpret_borrow<py::sequence>(obj);
        size_t i = 0;
        for (auto item : seq) {
            const std::string what = item_name(name, i);
            if (!py::isinstance<py::array>(item)) throw py::type_error(what + " must be a numpy array");
            auto a = py::reinterpret_borrow<py::array>(item);
            check(a, what);
            if (a.ndim() != 1) throw py::value_error(what + " must be 1-D");
            if (i == 0) r.d = size_t(a.shape(0));
            if (size_t(a.shape(0)) != r.d)
                throw py::value_error(what + " has length " + std::to_string(a.shape(0)) + ", expected " +
                                      std::to_string(r.d));
            r.ptr.push_back(static_cast<const T*>(a.data()));
            r.keep.push_back(a);
            ++i;
        }
        return r;
    }
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(std::string(name) + " must be a 2-D numpy array or a list of 1-D arrays");
    auto a = py::reinterpret_borrow<py::array>(obj);
    check(a, name);
    if (a.ndim() != 2) throw py::value_error(std::string(name) + " must be 2-D (updates x parameters)");
    r.d = size_t(a.shape(1));
    const T* base = static_cast<const T*>(a.data());
    for (py::ssize_t k = 0; k < a.shape(0); ++k) r.ptr.push_back(base + size_t(k) * r.d);
    r.keep.push_back(a);
    return r;
}

template <class T>
size_t work_bytes(const Rows<T>& r) { return r.ptr.size() * r.d * sizeof(T); }

// Runs f() with the GIL released when the work is large enough to be worth it.
template <class F>
auto without_gil_if(bool large, F&& f) {
    std::optional<py::gil_scoped_release> nogil;
    if (large) nogil.emplace();
    return f();
}

// out += sum_i signs[i] * PRG(seeds[i]) in place; seeds is n x 32 bytes (flat or 2-D).
template <class W>
void mask_add_checked(carray<W>& out, const carray<uint8_t>& seeds, const carray<int8_t>& signs,
                      int threads,
                      int (*kernel)(W*, size_t, const uint8_t*, const int8_t*, size_t, int) noexcept) {
    if (out.ndim() != 1) throw py::value_error("out must be 1-D");
    const size_t n = size_t(signs.size());
    if (size_t(seeds.size()) != 32 * n)
        throw py::value_error("seeds must hold 32 bytes per sign: " + std::to_string(seeds.size()) +
                              " bytes for " + std::to_string(n) + " signs");
    W* o = out_ptr(out, "out");
    const uint8_t* sp = seeds.data();
    const int8_t* gp = signs.data();
    const size_t d = size_t(out.size());
    const int rc = without_gil_if(d * n >= 16384, [&] { return kernel(o, d, sp, gp, n, threads); });
    if (rc != 0) throw std::bad_alloc();  // pybind11 raises MemoryError
}

void bind_reduce(py::module_& m) {
    m.def("default_threads", &reduce_default_threads);
    m.def("weighted_mean_f32", [](py::handle updates, carray<double> w, double scale, int threads) {
        auto r = rows_of<float>(updates, "updates");
        if (size_t(w.size()) != r.ptr.size())
            throw py::value_error("weights has " + std::to_string(w.size()) + " entries for " +
                                  std::to_string(r.ptr.size()) + " updates");
        carray<float> out(py::ssize_t(r.d));
        carray<uint8_t> bad(py::ssize_t(r.ptr.size()));
        float* o = out.mutable_data();
        uint8_t* b = bad.mutable_data();
        const double* wp = w.data();
        const size_t nbad = without_gil_if(work_bytes(r) >= 65536, [&] { return reduce_weighted_mean_f32(o, b, r.ptr.data(), wp, r.ptr.size(), r.d, scale, threads); });
        if (nbad == SIZE_MAX) throw std::bad_alloc();  // pybind11 raises MemoryError
        return py::make_tuple(out, bad);
    }, py::arg("updates"), py::arg("weights").noconvert(), py::arg("scale"), py::arg("threads") = 0);
    m.def("accumulate_f32", [](carray<double> out, carray<double> acc, carray<float> x, double w, int threads) {
        if (out.size() != acc.size() || x.size() != acc.size())
            throw py::value_error("out, acc and x must have the same length");
        double* o = out_ptr(out, "out");
        const double* a = acc.data();
        const float* xp = x.data();
        const size_t d = size_t(x.size());
        const int rc = without_gil_if(d >= 16384, [&] { return reduce_accumulate_f32(o, a, xp, w, d, threads); });
        return rc == 0;
    }, py::arg("out").noconvert(), py::arg("acc").noconvert(), py::arg("x").noconvert(), py::arg("w"),
       py::arg("threads") = 0);
    m.def("scale_to_f32", [](carray<double> acc, double scale, int threads) {
        carray<float> out(acc.size());
        float* o = out.mutable_data();
        const double* a = acc.data();
        const size_t d = size_t(acc.size());
        without_gil_if(d >= 16384, [&] { reduce_scale_to_f32(o, a, scale, d, threads); });
        return out;
    }, py::arg("acc").noconvert(), py::arg("scale"), py::arg("threads") = 0);
    m.def("modular_sum_u32", [](py::handle updates, int threads) {
        auto r = rows_of<uint32_t>(updates, "updates");
        carray<uint32_t> out(py::ssize_t(r.d));
        uint32_t* o = out.mutable_data();
        std::fill(o, o + r.d, 0u);
        without_gil_if(work_bytes(r) >= 65536, [&] { reduce_modular_sum_u32(o, r.ptr.data(), r.ptr.size(), r.d, threads); });
        return out;
    }, py::arg("updates"), py::arg("threads") = 0);
    m.def("modular_sum_u64", [](py::handle updates, int threads) {
        auto r = rows_of<uint64_t>(updates, "updates");
        carray<uint64_t> out(py::ssize_t(r.d));
        uint64_t* o = out.mutable_data();
        std::fill(o, o + r.d, uint64_t(0));
        without_gil_if(work_bytes(r) >= 65536, [&] { reduce_modular_sum_u64(o, r.ptr.data(), r.ptr.size(), r.d, threads); });
        return out;
    }, py::arg("updates"), py::arg("threads") = 0);
    m.def("mask_add_u32", [](carray<uint32_t> out, carray<uint8_t> seeds, carray<int8_t> signs, int threads) {
        return mask_add_checked(out, seeds, signs, threads, mask_add_u32);
    }, py::arg("out").noconvert(), py::arg("seeds").noconvert(), py::arg("signs").noconvert(),
       py::arg("threads") = 0);
    m.def("mask_add_u64", [](carray<uint64_t> out, carray<uint8_t> seeds, carray<int8_t> signs, int threads) {
        return mask_add_checked(out, seeds, signs, threads, mask_add_u64);
    }, py::arg("out").noconvert(), py::arg("seeds").noconvert(), py::arg("signs").noconvert(),
       py::arg("threads") = 0);
    m.def("l2_norms_f32", [](py::handle updates, int threads) {
        auto r = rows_of<float>(updates, "updates");
        carray<double> out(py::ssize_t(r.ptr.size()));
        double* o = out.mutable_data();
        without_gil_if(work_bytes(r) >= 65536, [&] { reduce_l2_norms_f32(o, r.ptr.data(), r.ptr.size(), r.d, threads); });
        return out;
    }, py::arg("updates"), py::arg("threads") = 0);
    m.def("median_f32", [](py::handle updates, int threads) {
        auto r = rows_of<float>(updates, "updates");
        carray<float> out(py::ssize_t(r.d));
        float* o = out.mutable_data();
        const int rc = without_gil_if(work_bytes(r) >= 65536, [&] { return reduce_median_f32(o, r.ptr.data(), r.ptr.size(), r.d, threads); });
        if (rc != 0) throw py::value_error("median needs between 1 and 4096 updates");
        return out;
    }, py::arg("updates"), py::arg("threads") = 0);
    m.def("trimmed_mean_f32", [](py::handle updates, size_t cut, int threads) {
        auto r = rows_of<float>(updates, "updates");
        carray<float> out(py::ssize_t(r.d));
        float* o = out.mutable_data();
        const int rc = without_gil_if(work_bytes(r) >= 65536, [&] { return reduce_trimmed_mean_f32(o, r.ptr.data(), r.ptr.size(), r.d, cut, threads); });
        if (rc != 0) throw py::value_error("trimmed mean needs 1 to 4096 updates and 2 * cut < number of updates");
        return out;
    }, py::arg("updates"), py::arg("cut"), py::arg("threads") = 0);
    m.def("pairwise_sqdist_f32", [](py::handle updates, int threads) {
        auto r = rows_of<float>(updates, "updates");
        const size_t k = r.ptr.size();
        carray<double> out({py::ssize_t(k), py::ssize_t(k)});
        double* o = out.mutable_data();
        without_gil_if(work_bytes(r) >= 65536, [&] { reduce_pairwise_sqdist_f32(o, r.ptr.data(), k, r.d, threads); });
        return out;
    }, py::arg("updates"), py::arg("threads") = 0);
}

const Aes256Gcm& self(const Aes256Gcm* s) {
    if (!s || s->live_ != Aes256Gcm::kLive) throw py::type_error("Aes256Gcm instance is not initialised (call __init__ with a key)");
    return *s;
}

py::dict features_dict() {
    const uint32_t f = cpu_features();
    py::dict d;
    d["ssse3"] = bool(f & CPU_SSSE3);
    d["sse4_1"] = bool(f & CPU_SSE41);
    d["aesni"] = bool(f & CPU_AESNI);
    d["pclmulqdq"] = bool(f & CPU_PCLMULQDQ);
    d["avx"] = bool(f & CPU_AVX);
    d["avx2"] = bool(f & CPU_AVX2);
    d["bmi2"] = bool(f & CPU_BMI2);
    d["avx512f"] = bool(f & CPU_AVX512F);
    d["avx512bw"] = bool(f & CPU_AVX512BW);
    d["avx512vl"] = bool(f & CPU_AVX512VL);
    d["vaes"] = bool(f & CPU_VAES);
    d["vpclmulqdq"] = bool(f & CPU_VPCLMULQDQ);
    d["os_avx512"] = bool(f & CPU_OS_AVX512);
#if defined(__aarch64__)
    d["arm_aes"] = bool(f & CPU_ARM_AES);
    d["arm_pmull"] = bool(f & CPU_ARM_PMULL);
    d["arm_neon"] = bool(f & CPU_ARM_NEON);
#endif
    d["avx512dq"] = bool(f & CPU_AVX512DQ);
    d["fma"] = bool(f & CPU_FMA);
    return d;
}

// Shamir's scheme over GF(2^128) (privcity/shamir.h): arrays of 16-byte elements in, out.
void bind_shamir(py::module_& m) {
    m.def("gf128_mul", [](py::bytes a, py::bytes b) {
        const std::string sa = a, sb = b;
        if (sa.size() != 16 || sb.size() != 16) throw py::value_error("elements are 16 bytes");
        uint8_t out[16];
        gf128_mul(out, reinterpret_cast<const uint8_t*>(sa.data()),
                  reinterpret_cast<const uint8_t*>(sb.data()));
        return py::bytes(reinterpret_cast<const char*>(out), 16);
    }, py::arg("a"), py::arg("b"));
    m.def("shamir_eval", [](carray<uint8_t> coeffs, carray<uint32_t> xs) {
        if (coeffs.size() == 0 || coeffs.size() % 16 != 0)
            throw py::value_error("coeffs must hold one or more 16-byte elements");
        if (xs.ndim() != 1) throw py::value_error("xs must be 1-D");
        const size_t t = size_t(coeffs.size()) / 16, n = size_t(xs.size());
        const uint32_t* xp = xs.data();
        for (size_t i = 0; i < n; ++i)  // p(0) is the secret itself
            if (xp[i] == 0) throw py::value_error("share indexes must be nonzero");
        carray<uint8_t> out({py::ssize_t(n), py::ssize_t(16)});
        shamir_eval(out.mutable_data(), coeffs.data(), t, xp, n);
        return out;
    }, py::arg("coeffs"), py::arg("xs"));
    m.def("shamir_interpolate0", [](carray<uint32_t> xs, carray<uint8_t> ys) {
        if (xs.ndim() != 1) throw py::value_error("xs must be 1-D");
        const size_t t = size_t(xs.size());
        const bool shaped = ys.ndim() == 1 || (ys.ndim() == 2 && ys.shape(1) == 16);
        if (!shaped || size_t(ys.size()) != 16 * t)
            throw py::value_error("ys must hold one 16-byte share per index (shape (t, 16) or "
                                  "flat): " + std::to_string(ys.size()) + " bytes for " +
                                  std::to_string(t) + " indexes");
        uint8_t secret[16];
        const int rc = shamir_interpolate0(secret, xs.data(), ys.data(), t);
        if (rc == -2) throw std::bad_alloc();  // pybind11 raises MemoryError
        if (rc != 0)
            throw py::value_error("share indexes must be nonzero and distinct, and at least one");
        py::bytes result(reinterpret_cast<const char*>(secret), 16);
        volatile uint8_t* wipe = secret;
        for (int i = 0; i < 16; ++i) wipe[i] = 0;
        return result;
    }, py::arg("xs"), py::arg("ys"));
}

template <class W, int (*Kernel)(double*, const W*, const ddg_config*) noexcept>
auto ddg_decoder() {
    return [](carray<W> sum, size_t dim, py::handle key, double clip, double gamma,
              uint64_t l2_bound_sq, uint64_t num, uint64_t den, unsigned bits) {
        const ddg_config cfg = ddg_config_of(dim, size_t(sum.size()), key, clip, gamma, l2_bound_sq,
                                             num, den, bits);
        if (const int rc = ddg_check(&cfg)) ddg_throw(rc);  // before allocating dim doubles
        carray<double> out(py::ssize_t(cfg.dim));
        double* o = out.mutable_data();
        const W* s = sum.data();
        const int rc = without_gil_if(cfg.padded_dim * sizeof(W) >= kGilThreshold,
                                      [&] { return Kernel(o, s, &cfg); });
        if (rc != DDG_OK) ddg_throw(rc);
        return out;
    };
}

void bind_ddg(py::module_& m) {
    m.def("ddg_padded_dim", &ddg_padded_dim, py::arg("dim"));
    m.def("ddg_decode_u32", ddg_decoder<uint32_t, ddg_decode_u32>(), py::arg("sum").noconvert(),
          py::arg("dim"), py::arg("rotation_key"), py::arg("clip"), py::arg("gamma"),
          py::arg("l2_bound_sq"), py::arg("num"), py::arg("den"), py::arg("bits"));
    m.def("ddg_decode_u64", ddg_decoder<uint64_t, ddg_decode_u64>(), py::arg("sum").noconvert(),
          py::arg("dim"), py::arg("rotation_key"), py::arg("clip"), py::arg("gamma"),
          py::arg("l2_bound_sq"), py::arg("num"), py::arg("den"), py::arg("bits"));
    m.def("ddg_rotate", [](carray<double> x, py::handle key) {
        View k;
        get_view(k, key.ptr(), "rotation_key");
        if (k.len != 32) throw py::value_error("rotation_key must be 32 bytes");
        const size_t d = size_t(x.size()), dp = ddg_padded_dim(d);
        if (dp == 0) ddg_throw(DDG_E_DIM);
        carray<double> y(py::ssize_t(dp), nullptr);
        const int rc = ddg_rotate(y.mutable_data(), x.data(), d, dp, k.ptr);
        if (rc != DDG_OK) ddg_throw(rc);
        return y;
    }, py::arg("x").noconvert(), py::arg("rotation_key"));
    m.def("ddg_unrotate", [](carray<double> y, size_t dim, py::handle key) {
        View k;
        get_view(k, key.ptr(), "rotation_key");
        if (k.len != 32) throw py::value_error("rotation_key must be 32 bytes");
        if (dim == 0 || size_t(y.size()) != ddg_padded_dim(dim)) ddg_throw(DDG_E_DIM);
        carray<double> x(py::ssize_t(dim), nullptr);
        const int rc = ddg_unrotate(x.mutable_data(), y.data(), dim, size_t(y.size()), k.ptr);
        if (rc != DDG_OK) ddg_throw(rc);
        return x;
    }, py::arg("y").noconvert(), py::arg("dim"), py::arg("rotation_key"));
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "privcity native core (C++ kernels). Use the privcity package, not this module.";
    py::register_exception<TagMismatch>(m, "TagMismatch");

    m.attr("AES_ISA_NONE") = int(AES_ISA_NONE);
    m.attr("AES_ISA_AESNI") = int(AES_ISA_AESNI);
    m.attr("AES_ISA_VAES256") = int(AES_ISA_VAES256);
    m.attr("AES_ISA_VAES512") = int(AES_ISA_VAES512);
    m.attr("AES_ISA_ARMV8") = int(AES_ISA_ARMV8);
    m.attr("AES_ISA_UNCAPPED") = int(AES_ISA_UNCAPPED);
    // Which ladder the AES_ISA_* levels belong to (each architecture has its own).
#if defined(__aarch64__)
    m.attr("ISA_ARCH") = "aarch64";
#elif defined(__x86_64__)
    m.attr("ISA_ARCH") = "x86_64";
#else
    m.attr("ISA_ARCH") = "other";
#endif
    m.attr("AEAD_MAX_MESSAGE") = py::int_(AEAD_AES256GCM_MAX_MESSAGE);

    m.attr("SIMD_PORTABLE") = int(SIMD_PORTABLE);
    m.attr("SIMD_AVX2") = int(SIMD_AVX2);
    m.attr("SIMD_AVX512") = int(SIMD_AVX512);
    m.attr("SIMD_NEON") = int(SIMD_NEON);
    m.def("cpu_features", &features_dict,
          "CPU features detected by cpuid/xgetbv (HWCAP on aarch64).");
    m.def("aes_isa_supported", &aes_isa_supported);
    m.def("aes_isa_cap", &aes_isa_cap);
    m.def("aes_isa_selected", &aes_isa_selected);
    m.def("set_aes_isa_cap", &set_aes_isa_cap, py::arg("cap"));

    // Methods take self by pointer: an instance made by __new__ without __init__ arrives as null
    // and gets an error instead of a crash.
    py::class_<Aes256Gcm>(m, "Aes256Gcm")
        .def(py::init<py::handle, int>(), py::arg("key"), py::arg("impl") = -1)
        .def_property_readonly("impl", [](const Aes256Gcm* s) { return self(s).impl(); })
        .def("encrypt", [](const Aes256Gcm* s, py::handle n, py::handle d, py::handle a) {
                 return self(s).encrypt(n, d, a);
             }, py::arg("nonce"), py::arg("data"), py::arg("associated_data"))
        .def("decrypt", [](const Aes256Gcm* s, py::handle n, py::handle d, py::handle a) {
                 return self(s).decrypt(n, d, a);
             }, py::arg("nonce"), py::arg("data"), py::arg("associated_data"))
        .def("encrypt_many", [](const Aes256Gcm* s, py::handle n, py::handle m, py::handle a) {
                 return self(s).encrypt_many(n, m, a);
             }, py::arg("nonces"), py::arg("messages"), py::arg("associated_data"))
        .def("decrypt_many", [](const Aes256Gcm* s, py::handle n, py::handle c, py::handle a, bool strict) {
                 return self(s).decrypt_many(n, c, a, strict);
             }, py::arg("nonces"), py::arg("ciphertexts"), py::arg("associated_data"), py::arg("strict"));

    m.def("seal_multikey", &seal_multikey, py::arg("keys"), py::arg("nonces"), py::arg("heads"),
          py::arg("prefix"), py::arg("bodies"), py::arg("impl"));
    m.def("open_multikey", &open_multikey, py::arg("keys"), py::arg("nonces"),
          py::arg("envelopes"), py::arg("header_lens"), py::arg("impl"));

    bind_rng(m);
    bind_reduce(m);
    bind_shamir(m);
    bind_ddg(m);
}
