// SPDX-License-Identifier: Apache-2.0
// The server side of a SOCKS5 handshake (RFC 1928), incremental: bytes in as
// they arrive, the bytes to answer and a verdict out. CONNECT only; IPv4,
// IPv6 and domain-name targets; with users, only username/password (RFC
// 1929), else only "no authentication". No sockets and no clock: the
// caller reads, writes and bounds the time.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/addr.hpp"
#include "outbound/target.hpp"
#include "outbound/users.hpp"

namespace sp::outbound {

class Socks5Server final {
public:
    /// Bytes held at once: the longest message (an RFC 1929 request, 513
    /// bytes) plus what a client sends early behind its CONNECT.
    static constexpr size_t kMaxBuffered = 1024;

    enum class Status : uint8_t {
        NeedMore,  // send `send` (may be empty), read more
        Connect,   // target() is ready; send nothing yet: the reply follows the relay's answer
        Failed,    // send `send` (a refusal, may be empty), then close; why() says why
    };
    struct Step {
        Status status = Status::NeedMore;
        std::vector<uint8_t> send;
    };

    /// `users` null or empty: method 0x00 only; else method 0x02 only and
    /// the credentials are checked against it. Borrowed: must outlive this.
    explicit Socks5Server(const Users* users) noexcept : users_(users) {}

    /// Takes the next bytes of the stream. After Connect or Failed further
    /// calls return Failed and change nothing.
    [[nodiscard]] Step feed(std::span<const uint8_t> in);

    /// After Connect: where the client wants to go.
    [[nodiscard]] const Target& target() const noexcept { return target_; }
    /// After Connect: the user who authenticated ("" without users).
    [[nodiscard]] const std::string& user() const noexcept { return user_; }
    /// After Connect: bytes the client sent behind its request, to forward
    /// before anything else.
    [[nodiscard]] std::span<const uint8_t> early() const noexcept { return buf_; }
    /// After Failed: a short reason for the log ("bad version", ...).
    [[nodiscard]] std::string_view why() const noexcept { return why_; }
    /// After Failed: whether the credentials were refused (the caller's
    /// event says so); anything else is a malformed request.
    [[nodiscard]] bool auth_refused() const noexcept { return auth_refused_; }

    /// A reply to CONNECT: VER 5, `code`, RSV 0, then `bound` (ATYP 1 or
    /// 4), or 0.0.0.0:0 when nullopt.
    [[nodiscard]] static std::vector<uint8_t> reply(uint8_t code,
                                                    const std::optional<SocketAddress>& bound);

private:
    enum class Stage : uint8_t { Greeting, Auth, Request, Done };
    [[nodiscard]] bool use_auth() const noexcept { return users_ != nullptr && !users_->empty(); }
    Step fail(std::string_view why, std::vector<uint8_t> send = {});
    /// Each returns nullopt when it needs more bytes, else consumes its
    /// message and returns the step to take.
    std::optional<Step> greeting();
    std::optional<Step> auth();
    std::optional<Step> request();

    const Users* users_;
    Stage stage_ = Stage::Greeting;
    std::vector<uint8_t> buf_;
    Target target_;
    std::string user_;
    std::string_view why_;
    bool auth_refused_ = false;
};

}  // namespace sp::outbound
