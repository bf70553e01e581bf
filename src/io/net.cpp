// SPDX-License-Identifier: Apache-2.0
#include "io/net.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>

namespace sp::io {

Result<UniqueFd> listen_tcp(const SocketAddress& addr, bool reuse_port, int backlog) {
    UniqueFd fd(::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) {
        return errno_error("socket for {}", addr.to_string());
    }
    int one = 1;
    if (setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
        return errno_error("SO_REUSEADDR on {}", addr.to_string());
    }
    if (reuse_port && setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
        return errno_error("SO_REUSEPORT on {}", addr.to_string());
    }
    if (addr.family() == AF_INET6 &&
        setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) {
        return errno_error("IPV6_V6ONLY on {}", addr.to_string());
    }
    sockaddr_storage ss;
    socklen_t len = addr.to_sockaddr(ss);
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&ss), len) != 0) {
        return errno_error("bind {}", addr.to_string());
    }
    if (::listen(fd.get(), backlog) != 0) {
        return errno_error("listen {}", addr.to_string());
    }
    return fd;
}

int connect_tcp_nonblocking(const SocketAddress& addr, UniqueFd& out) {
    UniqueFd fd(::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) {
        return -errno;
    }
    sockaddr_storage ss;
    socklen_t len = addr.to_sockaddr(ss);
    int r = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&ss), len);
    int err = r == 0 ? 0 : -errno;
    out = std::move(fd);
    return err;
}

int socket_error(int fd) noexcept {
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        return -errno;
    }
    return -err;
}

std::optional<SocketAddress> local_address(int fd) noexcept {
    sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
        return std::nullopt;
    }
    return SocketAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss), len);
}

std::optional<SocketAddress> peer_address(int fd) noexcept {
    sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
        return std::nullopt;
    }
    return SocketAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss), len);
}

}  // namespace sp::io
