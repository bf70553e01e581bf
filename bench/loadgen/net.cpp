// SPDX-License-Identifier: Apache-2.0
#include "net.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <vector>

#include "clock.hpp"

namespace sp::bench {
namespace {

[[nodiscard]] bool is_loopback(const IpAddress& ip) {
    const IpAddress u = ip.unmapped();
    if (u.family() == AF_INET) {
        return u.bytes()[0] == 127;
    }
    static constexpr std::array<uint8_t, 16> kV6Loopback{0, 0, 0, 0, 0, 0, 0, 0,
                                                         0, 0, 0, 0, 0, 0, 0, 1};
    return u.bytes() == kV6Loopback;
}

}  // namespace

[[nodiscard]] Result<SocketAddress> resolve(std::string_view text, bool allow_remote) {
    std::string t(text);
    if (t.rfind("localhost:", 0) == 0) {
        t = "127.0.0.1:" + t.substr(10);
    }
    auto addr = SocketAddress::parse(t);
    if (!addr) {
        return usage_error("bad address '{}': {}", text, addr.error().describe());
    }
    if (!allow_remote && !is_loopback(addr->ip())) {
        return usage_error("'{}' is not a loopback address (pass --allow-remote to allow it)",
                           text);
    }
    return *addr;
}

void set_timeouts(int fd, int ms) noexcept {
    timeval tv{ms / 1000, (ms % 1000) * 1000L};
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);  // best effort
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

void set_nodelay(int fd) noexcept {
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // latency only
}

[[nodiscard]] int connect_to(const SocketAddress& addr, int timeout_ms, UniqueFd& ret_fd) noexcept {
    sockaddr_storage ss{};
    const socklen_t len = addr.to_sockaddr(ss);
    UniqueFd fd(socket(addr.family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) {
        return -errno;
    }
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) < 0) {
        if (errno != EINPROGRESS) {
            return -errno;
        }
        pollfd p{fd.get(), POLLOUT, 0};
        const int r = poll(&p, 1, timeout_ms);
        if (r <= 0) {
            return r == 0 ? -ETIMEDOUT : -errno;
        }
        int err = 0;
        socklen_t el = sizeof err;
        if (getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &el) < 0) {
            return -errno;
        }
        if (err != 0) {
            return -err;
        }
    }
    const int flags = fcntl(fd.get(), F_GETFL);
    if (flags < 0 || fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) < 0) {
        return -errno;
    }
    set_timeouts(fd.get(), 200);
    ret_fd = std::move(fd);
    return 0;
}

[[nodiscard]] int connect_target(const Options& o, const SocketAddress& addr, int timeout_ms,
                                 UniqueFd& ret_fd) noexcept {
    if (o.socks5.empty()) {
        return connect_to(addr, timeout_ms, ret_fd);
    }
    auto proxy = SocketAddress::parse(o.socks5);
    if (!proxy) {
        return -EINVAL;
    }
    UniqueFd fd;
    if (const int r = connect_to(*proxy, timeout_ms, fd); r < 0) {
        return r;
    }
    const int64_t deadline = now_ns() + int64_t{timeout_ms} * 1'000'000;
    // Greeting and request in one write: the server answers both in order.
    std::vector<uint8_t> out = {5, 1, 0, 5, 1, 0};
    sockaddr_storage ss{};
    (void)addr.to_sockaddr(ss);
    if (addr.family() == AF_INET) {
        const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
        out.push_back(1);
        const auto* b = reinterpret_cast<const uint8_t*>(&in->sin_addr);
        out.insert(out.end(), b, b + 4);
    } else {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
        out.push_back(4);
        const auto* b = reinterpret_cast<const uint8_t*>(&in6->sin6_addr);
        out.insert(out.end(), b, b + 16);
    }
    out.push_back(static_cast<uint8_t>(addr.port() >> 8));
    out.push_back(static_cast<uint8_t>(addr.port() & 0xff));
    if (const ssize_t s = send_all(fd.get(), out.data(), out.size(), deadline); s < 0) {
        return static_cast<int>(s);
    }
    std::array<uint8_t, 2> method{};
    std::array<uint8_t, 4> head{};
    if (recv_all(fd.get(), method.data(), method.size(), deadline) != 2 || method[0] != 5 ||
        method[1] != 0 || recv_all(fd.get(), head.data(), head.size(), deadline) != 4 ||
        head[0] != 5) {
        return -EPROTO;
    }
    if (head[1] != 0) {
        return -ECONNREFUSED;
    }
    const size_t rest = head[3] == 1 ? 4 + 2 : head[3] == 4 ? 16 + 2 : 0;
    std::array<uint8_t, 18> bound{};
    if (rest == 0 ||
        recv_all(fd.get(), bound.data(), rest, deadline) != static_cast<ssize_t>(rest)) {
        return -EPROTO;
    }
    ret_fd = std::move(fd);
    return 0;
}

[[nodiscard]] ssize_t send_all(int fd, const void* p, size_t n, int64_t deadline) noexcept {
    size_t done = 0;
    while (done < n) {
        const ssize_t r = send(fd, static_cast<const char*>(p) + done, n - done, MSG_NOSIGNAL);
        if (r > 0) {
            done += static_cast<size_t>(r);
        } else if (r < 0 && errno != EAGAIN && errno != EINTR) {
            return -errno;
        }
        if (done < n && now_ns() > deadline) {
            return -ETIMEDOUT;
        }
    }
    return static_cast<ssize_t>(done);
}

[[nodiscard]] ssize_t recv_all(int fd, void* p, size_t n, int64_t deadline) noexcept {
    size_t done = 0;
    while (done < n) {
        const ssize_t r = recv(fd, static_cast<char*>(p) + done, n - done, 0);
        if (r == 0) {
            break;
        }
        if (r > 0) {
            done += static_cast<size_t>(r);
        } else if (errno != EAGAIN && errno != EINTR) {
            return -errno;
        }
        if (done < n && now_ns() > deadline) {
            return -ETIMEDOUT;
        }
    }
    return static_cast<ssize_t>(done);
}

[[nodiscard]] int read_banner(int fd, int64_t deadline) noexcept {
    char b[kBanner.size()];
    const ssize_t r = recv_all(fd, b, sizeof b, deadline);
    if (r < 0) {
        return static_cast<int>(r);
    }
    return (static_cast<size_t>(r) == sizeof b && std::string_view(b, sizeof b) == kBanner)
               ? 0
               : -EPROTO;
}

[[nodiscard]] int open_session(const Options& o, const SocketAddress& addr, const Header& h,
                               UniqueFd& ret_fd, int64_t deadline) noexcept {
    UniqueFd fd;
    int r = connect_target(o, addr, 5000, fd);
    if (r < 0) {
        return r;
    }
    if (o.expect_banner && (r = read_banner(fd.get(), deadline)) < 0) {
        return r;
    }
    const ssize_t s = send_all(fd.get(), &h, sizeof h, deadline);
    if (s < 0) {
        return static_cast<int>(s);
    }
    ret_fd = std::move(fd);
    return 0;
}

std::string err_text(int neg_errno) {
    return std::strerror(-neg_errno);
}

}  // namespace sp::bench
