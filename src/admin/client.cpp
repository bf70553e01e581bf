// SPDX-License-Identifier: Apache-2.0
#include "admin/client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/unique_fd.hpp"

namespace sp::admin {

namespace {

using Clock = std::chrono::steady_clock;

Result<UniqueFd> connect_unix(const std::string& path) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof sa.sun_path) {
        return runtime_error(ENAMETOOLONG, "{}: not a usable socket path", path);
    }
    std::memcpy(sa.sun_path, path.data(), path.size());
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) {
        return errno_error("socket(AF_UNIX)");
    }
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) {
        const int e = errno;
        switch (e) {
            case ENOENT:
                return runtime_error(0,
                                     "{}: no such socket (is the daemon running? its path is "
                                     "status_socket in sallyport.toml(5))",
                                     path);
            case EACCES:
            case EPERM:
                return runtime_error(0,
                                     "{}: permission denied (run as root or as a member of the "
                                     "socket's group)",
                                     path);
            case ECONNREFUSED:
                return runtime_error(0, "{}: connection refused (no daemon listens there)", path);
            case ENOTSOCK:
                return runtime_error(0, "{}: not a socket", path);
            case EAGAIN:
                return runtime_error(0, "{}: the daemon's backlog is full; try again", path);
            default:
                return runtime_error(e, "{}: cannot connect", path);
        }
    }
    return fd;
}

/// Milliseconds left until `deadline`, at least 0.
int left_ms(Clock::time_point deadline) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return left > 0 ? static_cast<int>(left) : 0;
}

/// Waits for `events` on `fd` until `deadline`. False on timeout.
bool wait_for(int fd, short events, Clock::time_point deadline) {
    for (;;) {
        pollfd p{fd, events, 0};
        const int n = ::poll(&p, 1, left_ms(deadline));
        if (n > 0) {
            return true;
        }
        if (n == 0 || errno != EINTR) {
            return false;
        }
    }
}

}  // namespace

Result<Response> call(const std::string& path, const Request& request,
                      std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    auto fd = connect_unix(path);
    if (!fd) {
        return Unexpected(fd.error());
    }
    const std::string line = encode_request(request);
    size_t sent = 0;
    while (sent < line.size()) {
        if (!wait_for(fd->get(), POLLOUT, deadline)) {
            return runtime_error(0, "{}: the daemon did not take the request in time", path);
        }
        const ssize_t n =
            ::send(fd->get(), line.data() + sent, line.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                continue;
            }
            if (errno == EPIPE || errno == ECONNRESET) {
                break;  // closed at once (busy): its reason may be waiting below
            }
            return errno_error("{}: send", path);
        }
        sent += static_cast<size_t>(n);
    }
    std::string answer;
    char buf[65536];
    for (;;) {
        if (!wait_for(fd->get(), POLLIN, deadline)) {
            return runtime_error(0, "{}: no answer within {} ms", path, timeout.count());
        }
        const ssize_t n = ::recv(fd->get(), buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                continue;
            }
            return errno_error("{}: recv", path);
        }
        if (n == 0) {
            return runtime_error(0, "{}: the daemon closed the connection without an answer", path);
        }
        const size_t old = answer.size();
        answer.append(buf, static_cast<size_t>(n));
        if (const auto nl = answer.find('\n', old); nl != std::string::npos) {
            answer.resize(nl + 1);
            return decode_response(answer);
        }
        if (answer.size() > kMaxAnswerBytes) {
            return runtime_error(0, "{}: the answer is longer than {} bytes", path,
                                 kMaxAnswerBytes);
        }
    }
}

}  // namespace sp::admin
