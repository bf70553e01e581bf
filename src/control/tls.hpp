// SPDX-License-Identifier: Apache-2.0
// TLS 1.3 for the control channel: contexts for the two auth modes (external
// PSK with ECDHE, or mutual certificates) and a non-blocking stream over a
// socket fd that the caller drives from its own poll loop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/types.h>

#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace sp::control {

/// Relay side, shared-key mode: returns the secret of key `id`, or nullopt if
/// no such key. Called on the thread that runs TlsStream::handshake(), once
/// per handshake, so a reload that swaps the key table takes effect for the
/// next agent without touching established ones.
using KeyLookup = std::function<std::optional<std::vector<uint8_t>>(std::string_view id)>;

enum class TlsRole { Server, Client };  // relay = Server, agent = Client

/// An SSL_CTX plus what its callbacks need. Copies share the same context
/// (cheap); streams keep it alive, so a context may be dropped after a reload
/// while older streams still run on it.
class TlsContext final {
public:
    /// Relay, shared-key mode: TLS 1.3 only, TLS_AES_128_GCM_SHA256, external
    /// PSK looked up by identity, psk_dhe_ke only (forward secrecy), no
    /// session tickets (so a key removed on reload cannot be resumed).
    [[nodiscard]] static Result<TlsContext> psk_server(KeyLookup lookup);
    /// Agent, shared-key mode: offers `identity` with `secret` (>= 16 bytes).
    [[nodiscard]] static Result<TlsContext> psk_client(std::string identity,
                                                       std::vector<uint8_t> secret);
    /// Relay, certificate mode: presents cert/key (PEM files), requires a
    /// client certificate that chains to `agent_ca_file`. TLS 1.3 only.
    [[nodiscard]] static Result<TlsContext> cert_server(const std::string& cert_file,
                                                        const std::string& key_file,
                                                        const std::string& agent_ca_file);
    /// Agent, certificate mode: presents cert/key, requires a relay
    /// certificate that chains to `relay_ca_file`.
    [[nodiscard]] static Result<TlsContext> cert_client(const std::string& cert_file,
                                                        const std::string& key_file,
                                                        const std::string& relay_ca_file);

    [[nodiscard]] TlsRole role() const noexcept;
    [[nodiscard]] bool psk_mode() const noexcept;
    /// For tests and diagnostics; owned by this context.
    [[nodiscard]] SSL_CTX* native_handle() const noexcept;

    struct Impl;

private:
    explicit TlsContext(std::shared_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
    std::shared_ptr<Impl> impl_;
    friend class TlsStream;
};

enum class TlsStatus {
    Done,       // handshake(), flush(), shutdown(): finished
    Ok,         // read(): `bytes` > 0 were read
    WantRead,   // wait for POLLIN, then call the same function again
    WantWrite,  // wait for POLLOUT, then call the same function again
    Eof,        // read(): peer sent close_notify or closed the socket
    Error,      // unusable: close the fd; `failure` and `reason` say why
};

/// Error classes the relay maps onto agent-rejected REASONs.
enum class TlsFailure {
    None,
    BadKey,    // unknown PSK id, wrong secret, or certificate not trusted/missing
    Protocol,  // not TLS, no TLS 1.3, no shared cipher/group, unexpected message
    Other,     // socket error, EOF during handshake, local resource failure
};

struct TlsResult {
    TlsStatus status = TlsStatus::Done;
    size_t bytes = 0;  // read(): bytes stored
    TlsFailure failure = TlsFailure::None;
    std::string reason;  // Error: OpenSSL's reason text or the errno text
};

/// One TLS connection on a non-blocking socket. Move-only; owns the fd and
/// the SSL. No call blocks: each returns WantRead/WantWrite when the socket
/// would block, and the caller polls for that event and calls again.
/// Writes go through write(2): the process must ignore SIGPIPE.
class TlsStream final {
public:
    /// Wraps an accepted (server) or connected (client) socket and sets
    /// O_NONBLOCK on it. The role comes from `ctx`.
    /// `verify_name` (client, certificate mode only): when non-empty, the
    /// relay certificate must also name this DNS name or IP literal; it is
    /// sent as SNI when it is a DNS name.
    [[nodiscard]] static Result<TlsStream> create(const TlsContext& ctx, UniqueFd fd,
                                                  std::string_view verify_name = {});

    /// A moved-from stream may only be destroyed or assigned to.
    TlsStream(TlsStream&&) noexcept;
    TlsStream& operator=(TlsStream&&) noexcept;
    TlsStream(const TlsStream&) = delete;
    TlsStream& operator=(const TlsStream&) = delete;
    ~TlsStream();

    /// Advances the handshake. Done once complete (then peer_identity() is
    /// set); Error with failure BadKey / Protocol / Other otherwise. Nothing
    /// the peer sends is readable before this returned Done.
    [[nodiscard]] TlsResult handshake();
    [[nodiscard]] bool handshake_done() const noexcept { return handshake_done_; }

    /// Reads decrypted bytes into `buf`: Ok (bytes > 0), WantRead, WantWrite
    /// (rare: a TLS key update must go out first), Eof, or Error. Error if
    /// called before the handshake is Done.
    [[nodiscard]] TlsResult read(std::span<uint8_t> buf);

    /// Appends bytes (e.g. encoded frames) to the pending output. Never fails
    /// or blocks; call flush() to send. pending_bytes() lets callers apply a
    /// bound.
    void queue(std::span<const uint8_t> bytes);
    [[nodiscard]] size_t pending_bytes() const noexcept { return pending_.size() - pending_off_; }

    /// Sends pending output: Done when all of it went out; WantWrite (or,
    /// rarely, WantRead: TLS must read a record first) with the rest kept;
    /// or Error. Error if called before the handshake is Done.
    [[nodiscard]] TlsResult flush();

    /// True when the last operation is waiting for POLLOUT or output is
    /// pending: the caller should poll for writability.
    [[nodiscard]] bool wants_write() const noexcept { return want_write_ || pending_bytes() > 0; }

    /// Flushes pending output, then sends close_notify (does not wait for the
    /// peer's). Done, WantWrite/WantRead (call again), or Error. The fd stays
    /// open until the stream is destroyed.
    [[nodiscard]] TlsResult shutdown();

    /// After the handshake: the PSK identity (shared-key mode) or the peer
    /// certificate's subject CN (certificate mode); empty before.
    [[nodiscard]] const std::string& peer_identity() const noexcept { return peer_identity_; }

    [[nodiscard]] int fd() const noexcept { return fd_.get(); }
    /// For tests and diagnostics (e.g. SSL_get_negotiated_group); owned here.
    [[nodiscard]] SSL* native_handle() const noexcept { return ssl_.get(); }

    struct State;  // implementation detail: what OpenSSL callbacks record

private:
    struct SslFree {
        void operator()(SSL* s) const noexcept;
    };
    TlsStream() noexcept;

    [[nodiscard]] TlsResult fail_from_ssl(int ret, const char* what);

    std::shared_ptr<TlsContext::Impl> ctx_;
    UniqueFd fd_;
    // Heap-held so the pointer OpenSSL keeps (SSL app data) survives moves.
    std::unique_ptr<State> state_;
    std::unique_ptr<SSL, SslFree> ssl_;  // after fd_: freed before the fd closes
    std::vector<uint8_t> pending_;
    size_t pending_off_ = 0;  // bytes at the front of pending_ already sent
    std::string peer_identity_;
    bool handshake_done_ = false;
    bool want_write_ = false;
};

}  // namespace sp::control
