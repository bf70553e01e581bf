// SPDX-License-Identifier: Apache-2.0
#include "daemon/admin_socket.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/events.hpp"
#include "daemon/commands.hpp"
#include "daemon/upgrade.hpp"

namespace sp::daemon {

using admin::ErrorCode;
using namespace std::chrono_literals;

namespace {

Result<sockaddr_un> unix_address(const std::string& path) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof sa.sun_path) {
        return runtime_error(ENAMETOOLONG, "status socket {}: a socket path has at most {} bytes",
                             path, sizeof sa.sun_path - 1);
    }
    std::memcpy(sa.sun_path, path.data(), path.size());
    return sa;
}

/// Whether a process accepts on the socket at `sa`: connect, and on
/// success ask the kernel who listens (SO_PEERCRED names the process that
/// called listen(2)). Returns the pid (0 when the backlog was full and it is
/// not known), nullopt when nobody listens (a stale file), or an error.
Result<std::optional<pid_t>> probe_live(const sockaddr_un& sa, const std::string& path) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) {
        return errno_error("socket(AF_UNIX)");
    }
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) == 0) {
        ucred cred{};
        socklen_t len = sizeof cred;
        if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
            return std::optional<pid_t>(cred.pid);
        }
        return std::optional<pid_t>(0);
    }
    switch (errno) {
        case ECONNREFUSED:
            return std::optional<pid_t>();
        case EAGAIN:  // a unix socket's full backlog: someone listens
            return std::optional<pid_t>(0);
        default:
            return errno_error("status socket {}: cannot tell whether a daemon holds it", path);
    }
}

}  // namespace

AdminSocket::AdminSocket(Private /*unused*/, Poller& poller, const CommandRegistry& commands,
                         std::string path, AdminLimits limits)
    : poller_(poller),
      commands_(commands),
      path_(std::move(path)),
      limits_(limits),
      self_(std::make_shared<AdminSocket*>(this)) {}

Result<std::unique_ptr<AdminSocket>> AdminSocket::open(Poller& poller,
                                                       const CommandRegistry& commands,
                                                       std::string path, AdminLimits limits,
                                                       UniqueFd inherited) {
    auto s = std::make_unique<AdminSocket>(Private{}, poller, commands, std::move(path), limits);
    if (auto r = inherited ? s->adopt(std::move(inherited)) : s->listen_at(); !r) {
        return Unexpected(r.error());
    }
    return s;
}

Result<void> AdminSocket::listen_at() {
    auto sa = unix_address(path_);
    if (!sa) {
        return Unexpected(sa.error());
    }
    struct stat st {};
    if (::lstat(path_.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            return runtime_error(EEXIST,
                                 "status socket {}: the path exists and is not a socket; "
                                 "not replacing it",
                                 path_);
        }
        auto live = probe_live(*sa, path_);
        if (!live) {
            return Unexpected(live.error());
        }
        if (*live) {
            const std::string who = **live > 0 ? fmt::format(" (pid {})", **live) : "";
            return runtime_error(EADDRINUSE,
                                 "status socket {} is in use by a running daemon{}: is another "
                                 "instance running with this status_socket?",
                                 path_, who);
        }
        // Left behind by a daemon that did not exit cleanly: nobody listens.
        if (::unlink(path_.c_str()) != 0 && errno != ENOENT) {
            return errno_error("status socket {}: cannot remove the stale socket", path_);
        }
    } else if (errno != ENOENT) {
        return errno_error("status socket {}", path_);
    }

    listen_fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!listen_fd_) {
        return errno_error("socket(AF_UNIX)");
    }
    if (::bind(listen_fd_.get(), reinterpret_cast<const sockaddr*>(&*sa), sizeof *sa) != 0) {
        return errno_error("status socket {}: cannot bind", path_);
    }
    // Nobody can connect before listen(2), so setting the mode and group
    // between bind and listen leaves no window with looser permissions.
    // The group is the process's (the service user's, under the units).
    if (::chmod(path_.c_str(), 0660) != 0 || ::chown(path_.c_str(), -1, ::getegid()) != 0 ||
        ::stat(path_.c_str(), &st) != 0) {
        auto e = errno_error("status socket {}: cannot set its mode and group", path_);
        (void)::unlink(path_.c_str());
        return e;
    }
    dev_ = st.st_dev;
    ino_ = st.st_ino;
    if (::listen(listen_fd_.get(), 64) != 0) {
        auto e = errno_error("status socket {}: cannot listen", path_);
        (void)::unlink(path_.c_str());
        return e;
    }
    if (auto r = poller_.add(listen_fd_.get(), EPOLLIN, [this](uint32_t) { on_accept(); }); !r) {
        (void)::unlink(path_.c_str());
        return r;
    }
    return {};
}

Result<void> AdminSocket::adopt(UniqueFd fd) {
    struct stat st {};
    if (::lstat(path_.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) {
        return runtime_error(ENOENT,
                             "status socket {}: the inherited socket's path is gone; the old "
                             "process's status_socket differs from this configuration's",
                             path_);
    }
    dev_ = st.st_dev;
    ino_ = st.st_ino;
    listen_fd_ = std::move(fd);
    return poller_.add(listen_fd_.get(), EPOLLIN, [this](uint32_t) { on_accept(); });
}

Result<UniqueFd> AdminSocket::hand_over() {
    return dup_socket(listen_fd_.get(), fmt::format("status socket {}", path_));
}

void AdminSocket::stop_listening() noexcept {
    if (!listen_fd_) {
        return;
    }
    poller_.remove(listen_fd_.get());
    listen_fd_.reset();
    struct stat st {};
    if (!keep_path_ && ::lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_) {
        (void)::unlink(path_.c_str());
    }
}

AdminSocket::~AdminSocket() {
    self_.reset();  // answers still on their way now find nobody
    while (!clients_.empty()) {
        drop(clients_.begin()->first);
    }
    if (pause_timer_ != 0) {
        poller_.cancel_timer(pause_timer_);
    }
    if (listen_fd_) {
        poller_.remove(listen_fd_.get());
        listen_fd_.reset();
        // Only our own: a successor may have replaced a path it found stale.
        struct stat st {};
        if (!keep_path_ && ::lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ &&
            st.st_ino == ino_) {
            (void)::unlink(path_.c_str());
        }
    }
}

void AdminSocket::on_accept() {
    for (int i = 0; i < 64; ++i) {
        UniqueFd fd(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (!fd) {
            const int err = errno;
            if (err == EINTR || err == ECONNABORTED) {
                continue;
            }
            if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
                // Level-triggered epoll would report the same pending
                // connection at once: pause accepting for a moment instead.
                if (busy_log_.allow("fds", log::LogLimiter::Clock::now()) >= 0) {
                    log::event(log::Ev::ResourceLimit,
                               {{"REASON", log::errno_reason(err)}, {"LISTEN_ADDR", path_}},
                               fmt::format("status socket {}: accept failed: {}; pausing 100 ms",
                                           path_, std::strerror(err)));
                }
                poller_.modify(listen_fd_.get(), 0);
                pause_timer_ = poller_.add_timer(100ms, [this] {
                    pause_timer_ = 0;
                    poller_.modify(listen_fd_.get(), EPOLLIN);
                });
            }
            return;  // EAGAIN: all taken
        }
        if (clients_.size() >= limits_.max_clients) {
            const int64_t held = busy_log_.allow("busy", log::LogLimiter::Clock::now());
            if (held >= 0) {
                log::event(log::Ev::ResourceLimit,
                           {{"REASON", "admin-clients"}, {"LISTEN_ADDR", path_}},
                           fmt::format("status socket {}: {} clients already connected; "
                                       "refusing one more{}",
                                       path_, clients_.size(), log::LogLimiter::held_note(held)));
            }
            refuse(std::move(fd), ErrorCode::Busy,
                   fmt::format("{} clients are connected already; try again", clients_.size()));
            continue;
        }
        const uint64_t id = next_id_++;
        auto c = std::make_unique<Client>();
        c->fd = std::move(fd);
        if (auto r = poller_.add(c->fd.get(), EPOLLIN,
                                 [this, id](uint32_t events) { on_event(id, events); });
            !r) {
            continue;  // the fd closes with c
        }
        Client& ref = *c;
        clients_.emplace(id, std::move(c));
        arm(ref, id, limits_.request_timeout);
    }
}

void AdminSocket::refuse(UniqueFd fd, ErrorCode code, std::string_view message) {
    // A fresh socket's send buffer is empty, so this short line fits; if it
    // does not, the client only misses the reason.
    const std::string line = admin::encode_error(code, message);
    (void)::send(fd.get(), line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

void AdminSocket::arm(Client& c, uint64_t id, std::chrono::milliseconds after) {
    if (c.timer != 0) {
        poller_.cancel_timer(c.timer);
    }
    c.timer = poller_.add_timer(after, [this, id] { on_timeout(id); });
}

void AdminSocket::on_timeout(uint64_t id) {
    const auto it = clients_.find(id);
    if (it == clients_.end()) {
        return;
    }
    Client& c = *it->second;
    c.timer = 0;
    switch (c.state) {
        case State::Reading:
            // Slow or stalled: told why, then dropped.
            fail_now(
                id, ErrorCode::Timeout,
                fmt::format("no complete request within {} ms", limits_.request_timeout.count()));
            break;
        case State::Waiting:
            deliver(id, c.request,
                    admin::encode_error(ErrorCode::Timeout,
                                        fmt::format("the command did not answer within {} ms",
                                                    limits_.answer_timeout.count())));
            break;
        case State::Writing:
            drop(id);  // took none of its answer for write_timeout
            break;
    }
}

void AdminSocket::on_event(uint64_t id, uint32_t events) {
    const auto it = clients_.find(id);
    if (it == clients_.end()) {
        return;
    }
    Client& c = *it->second;
    if ((events & (EPOLLERR | EPOLLHUP)) != 0) {
        drop(id);  // gone both ways: nobody to answer
        return;
    }
    if (c.state == State::Reading) {
        read_request(id);
    } else if (c.state == State::Writing && (events & EPOLLOUT) != 0) {
        write_some(id);
    }
}

void AdminSocket::read_request(uint64_t id) {
    Client& c = *clients_.at(id);
    // Reads stop at the first newline (the rest stays in the kernel) or one
    // chunk past the bound, so a flood costs at most max_request of memory.
    char buf[16384];
    while (c.in.find('\n') == std::string::npos && !c.peer_done &&
           c.in.size() < limits_.max_request) {
        const ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, 0);
        if (n > 0) {
            c.in.append(buf, static_cast<size_t>(n));
        } else if (n == 0) {
            c.peer_done = true;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN) {
            break;
        } else {
            drop(id);
            return;
        }
    }
    if (c.in.find('\n') != std::string::npos) {
        take_line(id);
        return;
    }
    if (c.in.size() >= limits_.max_request) {
        fail_now(id, ErrorCode::TooLarge,
                 fmt::format("request is longer than {} bytes", limits_.max_request));
        return;
    }
    if (c.peer_done) {
        if (c.in.empty()) {
            drop(id);
            return;
        }
        c.in += '\n';  // a last request sent without its newline
        take_line(id);
        return;
    }
    poller_.modify(c.fd.get(), EPOLLIN);
}

void AdminSocket::take_line(uint64_t id) {
    Client& c = *clients_.at(id);
    const size_t nl = c.in.find('\n');
    const std::string line = c.in.substr(0, nl + 1);
    c.in.erase(0, nl + 1);
    if (line.size() > limits_.max_request) {
        fail_now(id, ErrorCode::TooLarge,
                 fmt::format("request is longer than {} bytes", limits_.max_request));
        return;
    }
    auto request = admin::decode_request(line);
    if (!request) {
        // Not our protocol: no way to trust the rest of the stream.
        fail_now(id, request.error().code, request.error().message);
        return;
    }
    c.state = State::Waiting;
    c.request = next_request_++;
    poller_.modify(c.fd.get(), 0);  // errors and hang-ups are still reported
    arm(c, id, limits_.answer_timeout);
    Reply reply(
        [self = std::weak_ptr<AdminSocket*>(self_), id, rq = c.request](std::string answer) {
            if (const auto s = self.lock()) {
                (*s)->deliver(id, rq, std::move(answer));
            }
        });
    commands_.dispatch(*request, std::move(reply));
    // Nothing after this: the command may have answered already, and the
    // client may be gone.
}

void AdminSocket::fail_now(uint64_t id, ErrorCode code, std::string_view message) {
    Client& c = *clients_.at(id);
    c.state = State::Waiting;
    c.request = next_request_++;
    c.close_after = true;
    deliver(id, c.request, admin::encode_error(code, message));
}

void AdminSocket::deliver(uint64_t id, uint64_t request, std::string line) {
    const auto it = clients_.find(id);
    if (it == clients_.end()) {
        return;
    }
    Client& c = *it->second;
    if (c.state != State::Waiting || c.request != request) {
        return;  // the answer to a request that timed out
    }
    if (line.size() > limits_.max_answer) {
        line = admin::encode_error(ErrorCode::AnswerTooLarge,
                                   fmt::format("the answer has {} bytes, over the bound of {}; "
                                               "narrow the query",
                                               line.size(), limits_.max_answer));
    }
    c.out = std::move(line);
    c.out_off = 0;
    c.state = State::Writing;
    arm(c, id, limits_.write_timeout);
    write_some(id);
}

void AdminSocket::write_some(uint64_t id) {
    Client& c = *clients_.at(id);
    bool progressed = false;
    while (c.out_off < c.out.size()) {
        const ssize_t n = ::send(c.fd.get(), c.out.data() + c.out_off, c.out.size() - c.out_off,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c.out_off += static_cast<size_t>(n);
            progressed = true;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            // A slow reader: wait for room, with a deadline that only moves
            // while it takes bytes.
            if (progressed) {
                arm(c, id, limits_.write_timeout);
            }
            poller_.modify(c.fd.get(), EPOLLOUT);
            return;
        } else {
            drop(id);  // EPIPE, ECONNRESET: the client left
            return;
        }
    }
    answer_written(id);
}

void AdminSocket::answer_written(uint64_t id) {
    Client& c = *clients_.at(id);
    std::string().swap(c.out);  // a big answer's memory goes back now
    c.out_off = 0;
    if (c.close_after || (c.peer_done && c.in.empty())) {
        drop(id);
        return;
    }
    if (c.peer_done && c.in.find('\n') == std::string::npos) {
        c.in += '\n';
    }
    c.state = State::Reading;
    arm(c, id, limits_.request_timeout);
    // A request already buffered is taken on the next loop turn (EPOLLOUT
    // is ready at once), not here: answering it from inside this call could
    // recurse once per pipelined request.
    poller_.modify(c.fd.get(), c.in.find('\n') != std::string::npos ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

void AdminSocket::drop(uint64_t id) {
    const auto it = clients_.find(id);
    if (it == clients_.end()) {
        return;
    }
    Client& c = *it->second;
    if (c.timer != 0) {
        poller_.cancel_timer(c.timer);
    }
    poller_.remove(c.fd.get());
    clients_.erase(it);
}

}  // namespace sp::daemon
