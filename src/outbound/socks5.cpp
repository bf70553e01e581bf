// SPDX-License-Identifier: Apache-2.0
#include "outbound/socks5.hpp"

#include <netinet/in.h>

#include "outbound/reply.hpp"

namespace sp::outbound {

namespace {

constexpr uint8_t kVersion = 5;
constexpr uint8_t kAuthVersion = 1;  // RFC 1929
constexpr uint8_t kMethodNone = 0x00;
constexpr uint8_t kMethodPassword = 0x02;
constexpr uint8_t kNoAcceptable = 0xff;
constexpr uint8_t kCmdConnect = 1;
constexpr uint8_t kAtypV4 = 1;
constexpr uint8_t kAtypName = 3;
constexpr uint8_t kAtypV6 = 4;

}  // namespace

Socks5Server::Step Socks5Server::fail(std::string_view why, std::vector<uint8_t> send) {
    stage_ = Stage::Done;
    why_ = why;
    buf_.clear();
    return Step{Status::Failed, std::move(send)};
}

Socks5Server::Step Socks5Server::feed(std::span<const uint8_t> in) {
    if (stage_ == Stage::Done) {
        return Step{Status::Failed, {}};
    }
    if (buf_.size() + in.size() > kMaxBuffered) {
        return fail("request too long");
    }
    buf_.insert(buf_.end(), in.begin(), in.end());
    Step out;
    for (;;) {
        std::optional<Step> s;
        switch (stage_) {
            case Stage::Greeting:
                s = greeting();
                break;
            case Stage::Auth:
                s = auth();
                break;
            case Stage::Request:
                s = request();
                break;
            case Stage::Done:
                return out;
        }
        if (!s) {
            return out;  // NeedMore, with whatever the earlier messages answered
        }
        // Replies of messages that arrived together go out together.
        s->send.insert(s->send.begin(), out.send.begin(), out.send.end());
        out = std::move(*s);
        if (out.status != Status::NeedMore) {
            return out;
        }
    }
}

std::optional<Socks5Server::Step> Socks5Server::greeting() {
    if (buf_.empty()) {
        return std::nullopt;
    }
    if (buf_[0] != kVersion) {
        return fail("not SOCKS5");  // SOCKS4 or another protocol: no answer it would understand
    }
    if (buf_.size() < 2) {
        return std::nullopt;
    }
    const size_t n = buf_[1];
    if (n == 0) {
        return fail("no methods offered", {kVersion, kNoAcceptable});
    }
    if (buf_.size() < 2 + n) {
        return std::nullopt;
    }
    const uint8_t want = use_auth() ? kMethodPassword : kMethodNone;
    bool offered = false;
    for (size_t i = 0; i < n; ++i) {
        offered = offered || buf_[2 + i] == want;
    }
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(2 + n));
    if (!offered) {
        return fail(use_auth() ? "client offers no username/password authentication"
                               : "client offers no method without authentication",
                    {kVersion, kNoAcceptable});
    }
    stage_ = use_auth() ? Stage::Auth : Stage::Request;
    return Step{Status::NeedMore, {kVersion, want}};
}

std::optional<Socks5Server::Step> Socks5Server::auth() {
    if (buf_.empty()) {
        return std::nullopt;
    }
    if (buf_[0] != kAuthVersion) {
        return fail("bad username/password version", {kAuthVersion, 1});
    }
    if (buf_.size() < 2) {
        return std::nullopt;
    }
    const size_t ulen = buf_[1];
    if (buf_.size() < 3 + ulen) {
        return std::nullopt;
    }
    const size_t plen = buf_[2 + ulen];
    if (buf_.size() < 3 + ulen + plen) {
        return std::nullopt;
    }
    const std::string user(buf_.begin() + 2, buf_.begin() + static_cast<std::ptrdiff_t>(2 + ulen));
    const std::string_view pass(reinterpret_cast<const char*>(buf_.data()) + 3 + ulen, plen);
    const bool ok = users_->check(user, pass);
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(3 + ulen + plen));
    if (!ok) {
        auth_refused_ = true;
        return fail("wrong user or password", {kAuthVersion, 1});
    }
    user_ = user;
    stage_ = Stage::Request;
    return Step{Status::NeedMore, {kAuthVersion, 0}};
}

std::optional<Socks5Server::Step> Socks5Server::request() {
    if (buf_.size() < 4) {
        if (!buf_.empty() && buf_[0] != kVersion) {
            return fail("bad request version");
        }
        return std::nullopt;
    }
    if (buf_[0] != kVersion) {
        return fail("bad request version");
    }
    if (buf_[1] != kCmdConnect) {
        return fail("command not supported (CONNECT only)",
                    reply(socks::kCommandNotSupported, std::nullopt));
    }
    const uint8_t atyp = buf_[3];
    size_t addr_len = 0;
    switch (atyp) {
        case kAtypV4:
            addr_len = 4;
            break;
        case kAtypV6:
            addr_len = 16;
            break;
        case kAtypName:
            if (buf_.size() < 5) {
                return std::nullopt;
            }
            addr_len = 1 + size_t{buf_[4]};
            break;
        default:
            return fail("address type not supported",
                        reply(socks::kAddressTypeNotSupported, std::nullopt));
    }
    const size_t total = 4 + addr_len + 2;
    if (buf_.size() < total) {
        return std::nullopt;
    }
    const uint8_t* a = buf_.data() + 4;
    if (atyp == kAtypV4) {
        target_.host = IpAddress::from_bytes(AF_INET, a).to_string();
    } else if (atyp == kAtypV6) {
        target_.host = IpAddress::from_bytes(AF_INET6, a).to_string();
    } else {
        target_.host.assign(reinterpret_cast<const char*>(a) + 1, addr_len - 1);
    }
    target_.port = static_cast<uint16_t>((buf_[4 + addr_len] << 8) | buf_[5 + addr_len]);
    if (!valid_host(target_.host) || target_.port == 0) {
        target_ = {};
        return fail("bad destination", reply(socks::kGeneralFailure, std::nullopt));
    }
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(total));
    stage_ = Stage::Done;
    return Step{Status::Connect, {}};
}

std::vector<uint8_t> Socks5Server::reply(uint8_t code, const std::optional<SocketAddress>& bound) {
    std::vector<uint8_t> out{kVersion, code, 0};
    // A copy: unmapped() returns a temporary whose bytes() would dangle.
    const std::optional<IpAddress> ip =
        bound ? std::optional<IpAddress>(bound->ip().unmapped()) : std::nullopt;
    if (ip && ip->family() == AF_INET6) {
        out.push_back(kAtypV6);
        const auto& b = ip->bytes();
        out.insert(out.end(), b.begin(), b.begin() + 16);
    } else {
        out.push_back(kAtypV4);
        if (ip) {
            const auto& b = ip->bytes();
            out.insert(out.end(), b.begin(), b.begin() + 4);
        } else {
            out.insert(out.end(), 4, 0);
        }
    }
    const uint16_t port = bound ? bound->port() : 0;
    out.push_back(static_cast<uint8_t>(port >> 8));
    out.push_back(static_cast<uint8_t>(port & 0xff));
    return out;
}

}  // namespace sp::outbound
