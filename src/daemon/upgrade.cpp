// SPDX-License-Identifier: Apache-2.0
#include "daemon/upgrade.hpp"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "base/event.hpp"
#include "base/events.hpp"

extern char** environ;  // NOLINT(readability-redundant-declaration): POSIX leaves it undeclared

namespace sp::daemon {

namespace {

// The successor's end of the pair is always this descriptor: dup2 in the
// child makes it so, whatever number it had here.
constexpr int kChildFd = 3;
constexpr size_t kMaxMessage = size_t{64} * 1024;
constexpr size_t kMaxFdsPerMessage = 250;  // SCM_MAX_FD is 253
constexpr std::string_view kEnd = "end";
constexpr std::string_view kReady = "ready";
constexpr std::string_view kAck = "ack";

std::string g_program;
std::vector<std::string> g_args;

// One message: "KIND\nADDRESS\nMETA" with its fds as SCM_RIGHTS.
Result<void> send_message(int fd, std::string_view text, const std::vector<int>& fds) {
    iovec iov{const_cast<char*>(text.data()), text.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    std::vector<char> control;
    if (!fds.empty()) {
        control.resize(CMSG_SPACE(sizeof(int) * fds.size()));
        msg.msg_control = control.data();
        msg.msg_controllen = control.size();
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    for (;;) {
        if (::sendmsg(fd, &msg, MSG_NOSIGNAL) >= 0) {
            return {};
        }
        if (errno != EINTR) {
            return errno_error("upgrade channel: sendmsg");
        }
    }
}

struct Received {
    std::string text;
    std::vector<UniqueFd> fds;
};

// Blocks up to `timeout` for one message. An empty text with no error is
// the peer's close.
Result<Received> receive_message(int fd, std::chrono::milliseconds timeout) {
    pollfd p{fd, POLLIN, 0};
    const int n = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (n < 0) {
        return errno_error("upgrade channel: poll");
    }
    if (n == 0) {
        return runtime_error(ETIMEDOUT, "upgrade channel: no message within {} ms",
                             timeout.count());
    }
    std::vector<char> buf(kMaxMessage);
    iovec iov{buf.data(), buf.size()};
    std::vector<char> control(CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage));
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    const ssize_t got = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
    if (got < 0) {
        return errno_error("upgrade channel: recvmsg");
    }
    Received r;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
            continue;
        }
        const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
            int v = -1;
            std::memcpy(&v, CMSG_DATA(c) + i * sizeof(int), sizeof v);
            r.fds.emplace_back(v);
        }
    }
    if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
        return runtime_error(EMSGSIZE, "upgrade channel: message or descriptors truncated");
    }
    r.text.assign(buf.data(), static_cast<size_t>(got));
    return r;
}

std::string_view next_line(std::string_view& rest) {
    const auto nl = rest.find('\n');
    const std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
    return line;
}

}  // namespace

Result<UniqueFd> dup_socket(int fd, std::string_view what) {
    UniqueFd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
    if (!copy) {
        return errno_error("{}: dup", what);
    }
    return copy;
}

Result<std::vector<UniqueFd>> dup_sockets(std::span<const UniqueFd> fds, std::string_view what) {
    std::vector<UniqueFd> out;
    out.reserve(fds.size());
    for (const auto& f : fds) {
        auto d = dup_socket(f.get(), what);
        if (!d) {
            return Unexpected(d.error());
        }
        out.push_back(std::move(*d));
    }
    return out;
}

void record_command_line(int argc, char** argv) {
    std::array<char, 4096> path{};
    const ssize_t n = ::readlink("/proc/self/exe", path.data(), path.size() - 1);
    g_program = n > 0 ? std::string(path.data(), static_cast<size_t>(n)) : std::string(argv[0]);
    g_args.assign(argv, argv + argc);
}

// ---- successor --------------------------------------------------------------

Result<std::optional<Inheritance>> Inheritance::from_environment() {
    const char* env = std::getenv(std::string(kUpgradeFdEnv).c_str());
    if (env == nullptr) {
        return std::optional<Inheritance>{};
    }
    UniqueFd channel(std::atoi(env));
    ::unsetenv(std::string(kUpgradeFdEnv).c_str());
    if (channel.get() < 0 || ::fcntl(channel.get(), F_SETFD, FD_CLOEXEC) != 0) {
        return runtime_error(EBADF, "{}={} names no open descriptor", kUpgradeFdEnv, env);
    }
    std::vector<HandedSocket> sockets;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        auto m = receive_message(channel.get(), std::max(left, std::chrono::milliseconds(1)));
        if (!m) {
            return Unexpected(m.error());
        }
        if (m->text.empty()) {
            return runtime_error(EPIPE, "upgrade: the running daemon closed the channel early");
        }
        std::string_view rest = m->text;
        HandedSocket s;
        s.kind = next_line(rest);
        if (s.kind == kEnd) {
            break;
        }
        s.address = next_line(rest);
        s.meta = rest;
        s.fds = std::move(m->fds);
        sockets.push_back(std::move(s));
    }
    return std::optional<Inheritance>(Inheritance(std::move(channel), std::move(sockets)));
}

std::vector<HandedSocket> Inheritance::take(std::string_view kind) {
    std::vector<HandedSocket> out;
    for (auto it = sockets_.begin(); it != sockets_.end();) {
        if (it->kind == kind) {
            out.push_back(std::move(*it));
            it = sockets_.erase(it);
        } else {
            ++it;
        }
    }
    return out;
}

std::optional<HandedSocket> Inheritance::take(std::string_view kind, std::string_view address) {
    for (auto it = sockets_.begin(); it != sockets_.end(); ++it) {
        if (it->kind == kind && it->address == address) {
            HandedSocket s = std::move(*it);
            sockets_.erase(it);
            return s;
        }
    }
    return std::nullopt;
}

void Inheritance::confirm_ready(std::chrono::milliseconds wait) {
    if (!channel_) {
        return;
    }
    if (auto r = send_message(channel_.get(), kReady, {}); !r) {
        log::event(log::Level::Warn, log::Ev::UpgradeFailed, {{"REASON", "channel"}},
                   fmt::format("upgrade: cannot tell the old process we are ready: {}",
                               r.error().describe()));
        channel_.reset();
        return;
    }
    auto m = receive_message(channel_.get(), wait);
    if (!m || m->text != kAck) {
        log::event(log::Level::Warn, log::Ev::UpgradeFailed, {{"REASON", "channel"}},
                   "upgrade: the old process did not acknowledge; serving anyway");
    }
    channel_.reset();
}

// ---- predecessor ------------------------------------------------------------

Predecessor::Predecessor(Private /*unused*/, Poller& poller, Hooks hooks)
    : poller_(poller), hooks_(std::move(hooks)) {}

Result<std::unique_ptr<Predecessor>> Predecessor::start(Poller& poller,
                                                        const std::vector<HandedSocket>& sockets,
                                                        Hooks hooks,
                                                        std::chrono::milliseconds ready_timeout) {
    if (g_program.empty()) {
        return runtime_error(EINVAL, "upgrade: the command line was not recorded");
    }
    std::array<int, 2> pair{-1, -1};
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair.data()) != 0) {
        return errno_error("upgrade: socketpair");
    }
    UniqueFd mine(pair[0]);
    UniqueFd theirs(pair[1]);

    std::vector<std::string> env_store;
    for (char** e = environ; *e != nullptr; ++e) {
        if (std::string_view(*e).starts_with(kUpgradeFdEnv)) {
            continue;
        }
        env_store.emplace_back(*e);
    }
    env_store.push_back(fmt::format("{}={}", kUpgradeFdEnv, kChildFd));
    std::vector<char*> envp;
    envp.reserve(env_store.size() + 1);
    for (auto& e : env_store) {
        envp.push_back(e.data());
    }
    envp.push_back(nullptr);
    std::vector<std::string> arg_store = g_args;
    std::vector<char*> argv;
    argv.reserve(arg_store.size() + 1);
    for (auto& a : arg_store) {
        argv.push_back(a.data());
    }
    argv.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    ::posix_spawn_file_actions_init(&actions);
    ::posix_spawnattr_init(&attr);
    // dup2 clears FD_CLOEXEC on the copy: fd 3 is the only one the child
    // inherits (every other descriptor here is close-on-exec).
    ::posix_spawn_file_actions_adddup2(&actions, theirs.get(), kChildFd);
    // The child starts with the default mask and dispositions; it blocks
    // what it handles itself before any thread starts.
    sigset_t none;
    sigemptyset(&none);
    sigset_t all;
    sigfillset(&all);
    ::posix_spawnattr_setsigmask(&attr, &none);
    ::posix_spawnattr_setsigdefault(&attr, &all);
    ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid = -1;
    const int rc =
        ::posix_spawn(&pid, g_program.c_str(), &actions, &attr, argv.data(), envp.data());
    ::posix_spawn_file_actions_destroy(&actions);
    ::posix_spawnattr_destroy(&attr);
    if (rc != 0) {
        return runtime_error(rc, "upgrade: cannot start {}: {}", g_program, std::strerror(rc));
    }
    theirs.reset();

    auto self = std::make_unique<Predecessor>(Private{}, poller, std::move(hooks));
    self->pid_ = pid;
    self->channel_ = std::move(mine);
    self->deadline_ = std::chrono::steady_clock::now() + ready_timeout;
    // The socket buffer holds most handovers whole; a larger one (hundreds
    // of port-range listeners) waits for the child to read, bounded here so
    // a child that hangs before reading cannot stall this control thread. A
    // child that dies makes sendmsg fail with EPIPE: its exit is reported
    // below, not here.
    const timeval send_bound{5, 0};
    (void)::setsockopt(self->channel_.get(), SOL_SOCKET, SO_SNDTIMEO, &send_bound,
                       sizeof send_bound);
    bool sent = true;
    for (const auto& s : sockets) {
        for (size_t off = 0; off < std::max<size_t>(s.fds.size(), 1) && sent;
             off += kMaxFdsPerMessage) {
            std::vector<int> raw;
            for (size_t i = off; i < std::min(s.fds.size(), off + kMaxFdsPerMessage); ++i) {
                raw.push_back(s.fds[i].get());
            }
            const std::string text = fmt::format("{}\n{}\n{}", s.kind, s.address, s.meta);
            sent = static_cast<bool>(send_message(self->channel_.get(), text, raw));
        }
    }
    if (sent) {
        (void)send_message(self->channel_.get(), kEnd, {});
    }
    Predecessor* p = self.get();
    if (auto r = poller.add(self->channel_.get(), EPOLLIN, [p](uint32_t) { p->on_readable(); });
        !r) {
        return Unexpected(r.error());  // the destructor kills the child
    }
    return self;
}

Predecessor::~Predecessor() {
    if (channel_) {
        poller_.remove(channel_.get());
    }
    if (pid_ > 0 && !reaped_ && !done_) {
        (void)::kill(pid_, SIGKILL);
        (void)::waitpid(pid_, nullptr, 0);
    }
}

void Predecessor::on_readable() {
    auto m = receive_message(channel_.get(), std::chrono::milliseconds(0));
    if (m && m->text == kReady) {
        done_ = true;
        poller_.remove(channel_.get());
        // The successor becomes the unit's main PID before it sends READY=1
        // itself: systemd then accepts its notifications and watchdog.
        const pid_t child = pid_;
        if (hooks_.succeeded) {
            hooks_.succeeded(child);
        }
        (void)send_message(channel_.get(), kAck, {});
        channel_.reset();
        return;
    }
    // EOF (the child exited or closed it) or garbage: it is not coming.
    fail(m ? "the new process closed the upgrade channel before it was ready"
           : m.error().describe());
}

void Predecessor::fail(std::string reason) {
    if (done_) {
        return;
    }
    done_ = true;
    if (channel_) {
        poller_.remove(channel_.get());
        channel_.reset();
    }
    int status = 0;
    // Give a child that is exiting a moment to be reaped with its status.
    for (int i = 0; i < 50 && !reaped_; ++i) {
        if (::waitpid(pid_, &status, WNOHANG) == pid_) {
            reaped_ = true;
            break;
        }
        ::usleep(10000);
    }
    if (!reaped_) {
        (void)::kill(pid_, SIGKILL);
        (void)::waitpid(pid_, &status, 0);
        reaped_ = true;
    } else if (WIFEXITED(status)) {
        reason +=
            fmt::format(" (it exited with status {}; its own log says why)", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        reason += fmt::format(" (killed by signal {})", WTERMSIG(status));
    }
    log::event(log::Level::Error, log::Ev::UpgradeFailed, {{"REASON", "not-ready"}},
               fmt::format("upgrade failed, still serving as pid {}: {}", ::getpid(), reason));
    if (hooks_.failed) {
        hooks_.failed();
    }
}

bool Predecessor::tick(std::chrono::steady_clock::time_point now) {
    if (done_) {
        // A successor that took over is reaped when it exits, after us or
        // never (it outlives us; init reaps it then).
        return false;
    }
    if (now >= deadline_) {
        fail("the new process was not ready in time; it was killed");
        return false;
    }
    return true;
}

}  // namespace sp::daemon
