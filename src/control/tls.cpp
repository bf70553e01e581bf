// SPDX-License-Identifier: Apache-2.0
#include "control/tls.hpp"

#include <arpa/inet.h>
#include <fcntl.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace sp::control {

namespace {

struct CtxFree {
    void operator()(SSL_CTX* c) const noexcept { SSL_CTX_free(c); }
};
struct SessionFree {
    void operator()(SSL_SESSION* s) const noexcept { SSL_SESSION_free(s); }
};
using SessionPtr = std::unique_ptr<SSL_SESSION, SessionFree>;

// TLS_AES_128_GCM_SHA256: the one suite external PSKs are bound to (a PSK
// session carries its hash, and both ends must agree on it).
constexpr unsigned char kPskCipherId[2] = {0x13, 0x01};

std::string openssl_reason(const char* what) {
    const unsigned long e = ERR_peek_last_error();
    if (e == 0) {
        return fmt::format("{} failed", what);
    }
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    return fmt::format("{}: {}", what, buf);
}

Unexpected openssl_error(const char* what) {
    auto err = runtime_error(0, "{}", openssl_reason(what));
    ERR_clear_error();
    return err;
}

}  // namespace

struct TlsContext::Impl {
    std::unique_ptr<SSL_CTX, CtxFree> ctx;
    TlsRole role = TlsRole::Server;
    bool psk = false;
    KeyLookup lookup;             // psk server
    std::string identity;         // psk client
    std::vector<uint8_t> secret;  // psk client

    Impl() = default;
    Impl(const Impl&) = delete;
    Impl& operator=(const Impl&) = delete;
    ~Impl() { OPENSSL_cleanse(secret.data(), secret.size()); }
};

struct TlsStream::State {
    std::string psk_identity;  // server: what the client offered
    bool unknown_key = false;  // server: lookup found no such key
    bool failed = false;       // a fatal error happened: no close_notify
};

namespace {

TlsStream::State* state_of(SSL* ssl) {
    return static_cast<TlsStream::State*>(SSL_get_app_data(ssl));
}

// Builds the external-PSK session object OpenSSL wants: secret as master
// key, bound to TLS 1.3 and the PSK suite.
SessionPtr make_psk_session(SSL* ssl, const uint8_t* secret, size_t len) {
    const SSL_CIPHER* cipher = SSL_CIPHER_find(ssl, kPskCipherId);
    if (cipher == nullptr) {
        return nullptr;
    }
    SessionPtr sess(SSL_SESSION_new());
    if (!sess || SSL_SESSION_set1_master_key(sess.get(), secret, len) != 1 ||
        SSL_SESSION_set_cipher(sess.get(), cipher) != 1 ||
        SSL_SESSION_set_protocol_version(sess.get(), TLS1_3_VERSION) != 1) {
        return nullptr;
    }
    return sess;
}

int psk_find_session_cb(SSL* ssl, const unsigned char* identity, size_t identity_len,
                        SSL_SESSION** sess) {
    auto* impl = static_cast<TlsContext::Impl*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
    TlsStream::State* st = state_of(ssl);
    const std::string_view id(reinterpret_cast<const char*>(identity), identity_len);
    std::optional<std::vector<uint8_t>> secret;
    // An exception must not unwind through OpenSSL's C frames: a lookup that
    // throws (bad_alloc) aborts this handshake only.
    try {
        if (impl != nullptr && impl->lookup) {
            secret = impl->lookup(id);
        }
        if (st != nullptr) {
            st->psk_identity.assign(id);
        }
    } catch (...) {
        return 0;
    }
    if (!secret || secret->empty()) {
        // Unknown id: continue with a random key so the binder check fails
        // exactly as for a wrong secret. The client sees the same
        // decrypt_error alert either way and cannot enumerate key ids.
        if (st != nullptr) {
            st->unknown_key = true;
        }
        try {
            secret.emplace(32);
        } catch (...) {
            return 0;
        }
        if (RAND_bytes(secret->data(), static_cast<int>(secret->size())) != 1) {
            return 0;
        }
    }
    SessionPtr s = make_psk_session(ssl, secret->data(), secret->size());
    OPENSSL_cleanse(secret->data(), secret->size());
    if (!s) {
        return 0;  // aborts the handshake with internal_error
    }
    *sess = s.release();  // OpenSSL takes ownership
    return 1;
}

int psk_use_session_cb(SSL* ssl, const EVP_MD* md, const unsigned char** id, size_t* idlen,
                       SSL_SESSION** sess) {
    auto* impl = static_cast<TlsContext::Impl*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
    *sess = nullptr;
    *id = nullptr;
    *idlen = 0;
    if (impl == nullptr) {
        return 0;
    }
    SessionPtr s = make_psk_session(ssl, impl->secret.data(), impl->secret.size());
    if (!s) {
        return 0;
    }
    // On the HelloRetryRequest pass OpenSSL names the suite's digest; ours
    // is SHA-256, so a different one means the PSK cannot be used.
    if (md != nullptr && SSL_CIPHER_get_handshake_digest(SSL_SESSION_get0_cipher(s.get())) != md) {
        return 1;
    }
    *id = reinterpret_cast<const unsigned char*>(impl->identity.data());
    *idlen = impl->identity.size();
    *sess = s.release();
    return 1;
}

// Settings shared by every context: TLS 1.3 only, no resumption (tickets
// would let a peer whose key was removed on reload come back), no 0-RTT,
// and partial writes for the non-blocking write queue.
Result<std::unique_ptr<SSL_CTX, CtxFree>> new_ctx(TlsRole role) {
    std::unique_ptr<SSL_CTX, CtxFree> ctx(
        SSL_CTX_new(role == TlsRole::Server ? TLS_server_method() : TLS_client_method()));
    if (!ctx) {
        return openssl_error("SSL_CTX_new");
    }
    if (SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx.get(), TLS1_3_VERSION) != 1) {
        return openssl_error("setting TLS 1.3");
    }
    // Only psk_dhe_ke: without this option OpenSSL neither offers nor
    // accepts psk_ke, so every session has an ECDHE share (forward secrecy).
    SSL_CTX_clear_options(ctx.get(), SSL_OP_ALLOW_NO_DHE_KEX);
    SSL_CTX_set_options(ctx.get(), SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
    if (role == TlsRole::Server) {
        (void)SSL_CTX_set_num_tickets(ctx.get(), 0);  // cannot fail for 0
    }
    SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE |
                                    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    return ctx;
}

Result<void> load_cert_and_ca(SSL_CTX* ctx, TlsRole role, const std::string& cert_file,
                              const std::string& key_file, const std::string& ca_file) {
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1) {
        return openssl_error(fmt::format("loading certificate {:?}", cert_file).c_str());
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
        return openssl_error(fmt::format("loading private key {:?}", key_file).c_str());
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        return openssl_error(
            fmt::format("private key {:?} does not match {:?}", key_file, cert_file).c_str());
    }
    if (SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr) != 1) {
        return openssl_error(fmt::format("loading CA {:?}", ca_file).c_str());
    }
    if (role == TlsRole::Server) {
        STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(ca_file.c_str());
        if (names == nullptr) {
            return openssl_error(fmt::format("reading CA names from {:?}", ca_file).c_str());
        }
        SSL_CTX_set_client_CA_list(ctx, names);  // takes ownership
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    return {};
}

// Which SPEC REASON a TLS failure becomes. Authentication failures show up
// differently on each side: the server sees its own check fail (binder,
// certificate), the client sees the alert the server sent.
TlsFailure classify(unsigned long err) {
    if (err == 0) {
        return TlsFailure::Other;
    }
    if (ERR_GET_LIB(err) == ERR_LIB_SYS) {
        return TlsFailure::Other;
    }
    if (ERR_GET_LIB(err) != ERR_LIB_SSL) {
        return TlsFailure::Other;
    }
    switch (ERR_GET_REASON(err)) {
        case SSL_R_BINDER_DOES_NOT_VERIFY:
        case SSL_R_TLSV1_ALERT_DECRYPT_ERROR:
        case SSL_R_CERTIFICATE_VERIFY_FAILED:
        case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
        case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
        case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
        case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
        case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
        case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
        case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
        case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
        case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
            return TlsFailure::BadKey;
        case SSL_R_UNEXPECTED_EOF_WHILE_READING:
            return TlsFailure::Other;
        default:
            return TlsFailure::Protocol;
    }
}

bool is_ip_literal(std::string_view name) {
    const std::string s(name);
    in6_addr a6{};
    in_addr a4{};
    return ::inet_pton(AF_INET, s.c_str(), &a4) == 1 || ::inet_pton(AF_INET6, s.c_str(), &a6) == 1;
}

std::string subject_cn(SSL* ssl) {
    const X509* cert = SSL_get0_peer_certificate(ssl);
    if (cert == nullptr) {
        return {};
    }
    const X509_NAME* name = X509_get_subject_name(cert);
    const int idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    if (idx < 0) {
        return {};
    }
    const ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
    unsigned char* utf8 = nullptr;
    const int n = ASN1_STRING_to_UTF8(&utf8, data);
    if (n < 0) {
        return {};
    }
    std::string cn(reinterpret_cast<const char*>(utf8), static_cast<size_t>(n));
    OPENSSL_free(utf8);
    return cn;
}

}  // namespace

// ---- TlsContext -----------------------------------------------------------------

namespace {

// Both PSK ends: TLS 1.3 with one suite; the caller adds its side's identity
// or key lookup and its PSK callback.
Result<std::shared_ptr<TlsContext::Impl>> psk_impl(TlsRole role) {
    auto ctx = new_ctx(role);
    if (!ctx) {
        return Unexpected(ctx.error());
    }
    if (SSL_CTX_set_ciphersuites(ctx->get(), "TLS_AES_128_GCM_SHA256") != 1) {
        return openssl_error("SSL_CTX_set_ciphersuites");
    }
    auto impl = std::make_shared<TlsContext::Impl>();
    impl->ctx = std::move(*ctx);
    impl->role = role;
    impl->psk = true;
    SSL_CTX_set_app_data(impl->ctx.get(), impl.get());
    return impl;
}

}  // namespace

Result<TlsContext> TlsContext::psk_server(KeyLookup lookup) {
    auto impl = psk_impl(TlsRole::Server);
    if (!impl) {
        return Unexpected(impl.error());
    }
    (*impl)->lookup = std::move(lookup);
    SSL_CTX_set_psk_find_session_callback((*impl)->ctx.get(), psk_find_session_cb);
    return TlsContext(std::move(*impl));
}

Result<TlsContext> TlsContext::psk_client(std::string identity, std::vector<uint8_t> secret) {
    if (identity.empty() || identity.size() > 255) {
        return runtime_error(EINVAL, "PSK identity must be 1-255 bytes");
    }
    if (secret.size() < 16) {
        return runtime_error(EINVAL, "PSK secret must be at least 16 bytes");
    }
    auto impl = psk_impl(TlsRole::Client);
    if (!impl) {
        return Unexpected(impl.error());
    }
    (*impl)->identity = std::move(identity);
    (*impl)->secret = std::move(secret);
    SSL_CTX_set_psk_use_session_callback((*impl)->ctx.get(), psk_use_session_cb);
    return TlsContext(std::move(*impl));
}

namespace {

// Certificate mode is the same for both ends but for the role: which side
// presents, which verifies, and against whose CA.
Result<std::shared_ptr<TlsContext::Impl>> cert_impl(TlsRole role, const std::string& cert_file,
                                                    const std::string& key_file,
                                                    const std::string& ca_file) {
    auto ctx = new_ctx(role);
    if (!ctx) {
        return Unexpected(ctx.error());
    }
    if (auto r = load_cert_and_ca(ctx->get(), role, cert_file, key_file, ca_file); !r) {
        return Unexpected(r.error());
    }
    auto impl = std::make_shared<TlsContext::Impl>();
    impl->ctx = std::move(*ctx);
    impl->role = role;
    SSL_CTX_set_app_data(impl->ctx.get(), impl.get());
    return impl;
}

}  // namespace

Result<TlsContext> TlsContext::cert_server(const std::string& cert_file,
                                           const std::string& key_file,
                                           const std::string& agent_ca_file) {
    auto impl = cert_impl(TlsRole::Server, cert_file, key_file, agent_ca_file);
    if (!impl) {
        return Unexpected(impl.error());
    }
    return TlsContext(std::move(*impl));
}

Result<TlsContext> TlsContext::cert_client(const std::string& cert_file,
                                           const std::string& key_file,
                                           const std::string& relay_ca_file) {
    auto impl = cert_impl(TlsRole::Client, cert_file, key_file, relay_ca_file);
    if (!impl) {
        return Unexpected(impl.error());
    }
    return TlsContext(std::move(*impl));
}

TlsRole TlsContext::role() const noexcept {
    return impl_->role;
}
bool TlsContext::psk_mode() const noexcept {
    return impl_->psk;
}
SSL_CTX* TlsContext::native_handle() const noexcept {
    return impl_->ctx.get();
}

// ---- TlsStream ------------------------------------------------------------------

void TlsStream::SslFree::operator()(SSL* s) const noexcept {
    SSL_free(s);
}

TlsStream::TlsStream() noexcept = default;
// Hand-written so a moved-from stream is empty rather than holding stale
// counters next to an emptied buffer.
TlsStream::TlsStream(TlsStream&& o) noexcept
    : ctx_(std::move(o.ctx_)),
      fd_(std::move(o.fd_)),
      state_(std::move(o.state_)),
      ssl_(std::move(o.ssl_)),
      pending_(std::exchange(o.pending_, {})),
      pending_off_(std::exchange(o.pending_off_, 0)),
      peer_identity_(std::exchange(o.peer_identity_, {})),
      handshake_done_(std::exchange(o.handshake_done_, false)),
      want_write_(std::exchange(o.want_write_, false)) {}

TlsStream& TlsStream::operator=(TlsStream&& o) noexcept {
    if (this != &o) {
        ssl_.reset();  // the SSL goes before the fd it uses
        ctx_ = std::move(o.ctx_);
        fd_ = std::move(o.fd_);
        state_ = std::move(o.state_);
        ssl_ = std::move(o.ssl_);
        pending_ = std::exchange(o.pending_, {});
        pending_off_ = std::exchange(o.pending_off_, 0);
        peer_identity_ = std::exchange(o.peer_identity_, {});
        handshake_done_ = std::exchange(o.handshake_done_, false);
        want_write_ = std::exchange(o.want_write_, false);
    }
    return *this;
}
TlsStream::~TlsStream() = default;

Result<TlsStream> TlsStream::create(const TlsContext& ctx, UniqueFd fd,
                                    std::string_view verify_name) {
    const int flags = ::fcntl(fd.get(), F_GETFL);
    if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) < 0) {
        return errno_error("fcntl(O_NONBLOCK)");
    }
    TlsStream s;
    s.ctx_ = ctx.impl_;
    s.state_ = std::make_unique<State>();
    s.ssl_.reset(SSL_new(ctx.impl_->ctx.get()));
    if (!s.ssl_) {
        return openssl_error("SSL_new");
    }
    if (SSL_set_fd(s.ssl_.get(), fd.get()) != 1) {
        return openssl_error("SSL_set_fd");
    }
    SSL_set_app_data(s.ssl_.get(), s.state_.get());
    if (ctx.impl_->role == TlsRole::Server) {
        SSL_set_accept_state(s.ssl_.get());
    } else {
        SSL_set_connect_state(s.ssl_.get());
        if (!verify_name.empty() && !ctx.impl_->psk) {
            const std::string name(verify_name);
            if (is_ip_literal(name)) {
                if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s.ssl_.get()), name.c_str()) !=
                    1) {
                    return openssl_error("setting the expected relay IP");
                }
            } else if (SSL_set_tlsext_host_name(s.ssl_.get(), name.c_str()) != 1 ||
                       SSL_set1_host(s.ssl_.get(), name.c_str()) != 1) {
                return openssl_error("setting the expected relay name");
            }
        }
    }
    s.fd_ = std::move(fd);
    return s;
}

TlsResult TlsStream::fail_from_ssl(int ret, const char* what) {
    TlsResult res;
    const int saved_errno = errno;  // before anything else can clobber it
    const int e = SSL_get_error(ssl_.get(), ret);
    switch (e) {
        case SSL_ERROR_WANT_READ:
            want_write_ = false;
            res.status = TlsStatus::WantRead;
            return res;
        case SSL_ERROR_WANT_WRITE:
            want_write_ = true;
            res.status = TlsStatus::WantWrite;
            return res;
        case SSL_ERROR_ZERO_RETURN:
            res.status = TlsStatus::Eof;
            return res;
        default:
            break;
    }
    const unsigned long err = ERR_peek_last_error();
    // A peer that closes the socket without close_notify: the frames are
    // self-delimiting, so after the handshake that is just an end of stream.
    const bool eof = (e == SSL_ERROR_SYSCALL && saved_errno == 0 && err == 0) ||
                     (ERR_GET_LIB(err) == ERR_LIB_SSL &&
                      ERR_GET_REASON(err) == SSL_R_UNEXPECTED_EOF_WHILE_READING);
    if (eof && handshake_done_) {
        ERR_clear_error();
        res.status = TlsStatus::Eof;
        return res;
    }
    state_->failed = true;
    res.status = TlsStatus::Error;
    if (state_->unknown_key) {
        res.failure = TlsFailure::BadKey;
        res.reason = fmt::format("unknown key id {:?}", state_->psk_identity);
    } else if (eof) {
        res.failure = TlsFailure::Other;
        res.reason = fmt::format("{}: peer closed the connection", what);
    } else if (e == SSL_ERROR_SYSCALL && err == 0) {
        res.failure = TlsFailure::Other;
        res.reason = fmt::format("{}: {}", what, std::strerror(saved_errno));
    } else {
        res.failure = classify(err);
        res.reason = openssl_reason(what);
        // OpenSSL 3.0 answers a binder that does not verify (unknown id or
        // wrong secret) with illegal_parameter, not decrypt_error. For a PSK
        // client still in its handshake that is the only likely cause.
        if (!handshake_done_ && ctx_->psk && ctx_->role == TlsRole::Client &&
            ERR_GET_LIB(err) == ERR_LIB_SSL &&
            ERR_GET_REASON(err) == SSL_R_SSLV3_ALERT_ILLEGAL_PARAMETER) {
            res.failure = TlsFailure::BadKey;
            res.reason += " (the relay refused the key: unknown id or wrong secret)";
        }
        if (res.failure == TlsFailure::BadKey && !state_->psk_identity.empty()) {
            res.reason += fmt::format(" (key id {:?})", state_->psk_identity);
        }
    }
    ERR_clear_error();
    return res;
}

TlsResult TlsStream::handshake() {
    if (handshake_done_) {
        return {};
    }
    if (state_->failed) {
        return {TlsStatus::Error, 0, TlsFailure::Other, "handshake already failed"};
    }
    ERR_clear_error();
    const int r = SSL_do_handshake(ssl_.get());
    if (r != 1) {
        return fail_from_ssl(r, "TLS handshake");
    }
    handshake_done_ = true;
    want_write_ = false;
    if (ctx_->psk) {
        peer_identity_ = ctx_->role == TlsRole::Server ? state_->psk_identity : ctx_->identity;
    } else {
        peer_identity_ = subject_cn(ssl_.get());
    }
    return {};
}

TlsResult TlsStream::read(std::span<uint8_t> buf) {
    if (!handshake_done_ || state_->failed) {
        return {TlsStatus::Error, 0, TlsFailure::Other, "read before a completed handshake"};
    }
    if (buf.empty()) {
        return {TlsStatus::Error, 0, TlsFailure::Other, "read into an empty buffer"};
    }
    ERR_clear_error();
    size_t n = 0;
    const int r = SSL_read_ex(ssl_.get(), buf.data(), buf.size(), &n);
    if (r != 1) {
        return fail_from_ssl(r, "TLS read");
    }
    want_write_ = false;
    return {TlsStatus::Ok, n, TlsFailure::None, {}};
}

void TlsStream::queue(std::span<const uint8_t> bytes) {
    pending_.insert(pending_.end(), bytes.begin(), bytes.end());
}

TlsResult TlsStream::flush() {
    if (!handshake_done_ || state_->failed) {
        return {TlsStatus::Error, 0, TlsFailure::Other, "write before a completed handshake"};
    }
    while (pending_off_ < pending_.size()) {
        ERR_clear_error();
        size_t n = 0;
        // With ACCEPT_MOVING_WRITE_BUFFER a retry may pass a reallocated
        // buffer, as long as it starts with the same bytes: queue() only
        // appends, and pending_off_ moves only after a success.
        const int r = SSL_write_ex(ssl_.get(), pending_.data() + pending_off_,
                                   pending_.size() - pending_off_, &n);
        if (r != 1) {
            return fail_from_ssl(r, "TLS write");
        }
        pending_off_ += n;
    }
    pending_.clear();
    pending_off_ = 0;
    want_write_ = false;
    return {};
}

TlsResult TlsStream::shutdown() {
    if (!handshake_done_ || state_->failed) {
        return {};  // nothing to close cleanly; the fd close says the rest
    }
    if (auto f = flush(); f.status != TlsStatus::Done) {
        return f;
    }
    ERR_clear_error();
    const int r = SSL_shutdown(ssl_.get());
    if (r < 0) {
        return fail_from_ssl(r, "TLS shutdown");
    }
    want_write_ = false;
    return {};
}

}  // namespace sp::control
