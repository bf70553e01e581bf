// SPDX-License-Identifier: Apache-2.0
// The request side of an HTTP CONNECT proxy (RFC 9110 section 9.3.6),
// incremental: bytes in as they arrive, a verdict out. Only
// "CONNECT host:port HTTP/1.x" with headers up to kMaxHead bytes; with users,
// a "Proxy-Authorization: Basic" header must name one of them. No sockets
// and no clock: the caller reads, writes and bounds the time.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "outbound/target.hpp"
#include "outbound/users.hpp"

namespace sp::outbound {

class HttpConnectParser final {
public:
    /// The request line and headers together, the blank line included.
    static constexpr size_t kMaxHead = 8192;

    enum class Status : uint8_t {
        NeedMore,  // read more
        Connect,   // target() is ready; answer after the relay did
        Failed,    // send `response`, then close; why() says why
    };
    struct Step {
        Status status = Status::NeedMore;
        std::string_view response;  // a static string: the whole HTTP response to send
    };

    /// `users` null or empty: no authentication. Borrowed.
    explicit HttpConnectParser(const Users* users) noexcept : users_(users) {}

    /// Takes the next bytes. After Connect or Failed further calls return
    /// Failed with no response.
    [[nodiscard]] Step feed(std::span<const uint8_t> in);

    [[nodiscard]] const Target& target() const noexcept { return target_; }
    [[nodiscard]] const std::string& user() const noexcept { return user_; }
    /// After Connect: bytes behind the blank line (a client that did not wait).
    [[nodiscard]] std::span<const uint8_t> early() const noexcept { return early_; }
    [[nodiscard]] std::string_view why() const noexcept { return why_; }
    /// After Failed: the credentials were missing or wrong (407).
    [[nodiscard]] bool auth_refused() const noexcept { return auth_refused_; }

    static constexpr std::string_view kResponse400 =
        "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    static constexpr std::string_view kResponse405 =
        "HTTP/1.1 405 Method Not Allowed\r\nAllow: CONNECT\r\nContent-Length: 0\r\n"
        "Connection: close\r\n\r\n";
    static constexpr std::string_view kResponse407 =
        "HTTP/1.1 407 Proxy Authentication Required\r\n"
        "Proxy-Authenticate: Basic realm=\"sallyport\"\r\nContent-Length: 0\r\n"
        "Connection: close\r\n\r\n";
    static constexpr std::string_view kResponse505 =
        "HTTP/1.1 505 HTTP Version Not Supported\r\nContent-Length: 0\r\nConnection: "
        "close\r\n\r\n";

private:
    Step fail(std::string_view why, std::string_view response);
    Step parse_head(std::string_view head);
    [[nodiscard]] bool use_auth() const noexcept { return users_ != nullptr && !users_->empty(); }

    const Users* users_;
    bool done_ = false;
    std::string buf_;
    std::vector<uint8_t> early_;
    Target target_;
    std::string user_;
    std::string_view why_;
    bool auth_refused_ = false;
};

/// "host:port" or "[v6]:port" as a CONNECT request target; false when it
/// is neither (no port, port 0 or over 65535, a bad host).
[[nodiscard]] bool parse_authority(std::string_view text, Target& out);

/// Standard base64 (RFC 4648 section 4, padding optional) into `out`;
/// false on any other character. Pure.
[[nodiscard]] bool base64_decode(std::string_view text, std::string& out);

}  // namespace sp::outbound
