// SPDX-License-Identifier: Apache-2.0
// Binary upgrade (SIGUSR2): the running daemon starts the binary at its own
// path and hands its listening sockets to it over a private socket, so no
// connection is refused while the new process takes over; the old one then
// stops accepting and drains. Layout and sequence: docs/upgrade.md.
//
// Two sides, one per process:
// - Predecessor: the running daemon. Spawns the successor with one end of a
//   SOCK_SEQPACKET pair as fd 3 (SALLYPORT_UPGRADE_FD=3), sends the sockets,
//   and waits on its poller for READY, the child's exit, or a deadline.
// - Inheritance: the successor's view. Receives every socket before the
//   daemon binds anything, hands them out by kind, and after the workers
//   run confirms READY and waits (bounded) for the predecessor's answer.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/poller.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace sp::daemon {

/// One listening socket (or one SO_REUSEPORT group of them) handed over.
struct HandedSocket {
    std::string kind;     // who adopts it: "control", "listener", "status", "metrics", ...
    std::string address;  // "ip:port" or a path: how the adopter matches its config
    std::string meta;     // free text for the adopter (the relay: the service's spec)
    std::vector<UniqueFd> fds;
};

/// A close-on-exec duplicate of the socket `fd` (the same open socket), for
/// a daemon to keep or hand over while its workers own the original. An
/// error says "`what`: dup".
[[nodiscard]] Result<UniqueFd> dup_socket(int fd, std::string_view what);
/// dup_socket of each of `fds`, in order.
[[nodiscard]] Result<std::vector<UniqueFd>> dup_sockets(std::span<const UniqueFd> fds,
                                                        std::string_view what);

/// The environment variable naming the successor's end of the pair.
inline constexpr std::string_view kUpgradeFdEnv = "SALLYPORT_UPGRADE_FD";

/// The program path and arguments the successor is started with: main()
/// records them before anything else, so a package upgrade that replaces
/// the file later still finds the path (not /proc/self/exe's "(deleted)").
void record_command_line(int argc, char** argv);

/// The successor's inherited sockets. Control thread.
class Inheritance final {
public:
    /// When SALLYPORT_UPGRADE_FD is set: receives every socket the
    /// predecessor sends (bounded: 10 s in all), unsets the variable, and
    /// returns them; nullopt when this is an ordinary start.
    [[nodiscard]] static Result<std::optional<Inheritance>> from_environment();

    /// Removes and returns the sockets of `kind`.
    [[nodiscard]] std::vector<HandedSocket> take(std::string_view kind);
    /// Removes and returns the socket of `kind` at `address`, if any.
    [[nodiscard]] std::optional<HandedSocket> take(std::string_view kind, std::string_view address);

    /// After the workers accept on the inherited sockets: tells the
    /// predecessor, which makes this process systemd's main PID and stops
    /// accepting, and waits for its answer (at most `wait`), so READY=1 goes
    /// out as the main PID. A predecessor that is gone is not an error.
    void confirm_ready(std::chrono::milliseconds wait = std::chrono::milliseconds(5000));

    Inheritance(Inheritance&&) noexcept = default;
    Inheritance& operator=(Inheritance&&) noexcept = default;
    ~Inheritance() = default;

private:
    Inheritance(UniqueFd channel, std::vector<HandedSocket> sockets)
        : channel_(std::move(channel)), sockets_(std::move(sockets)) {}
    UniqueFd channel_;
    std::vector<HandedSocket> sockets_;
};

/// The predecessor's side of one upgrade attempt. Control thread.
class Predecessor final {
    struct Private {
        explicit Private() = default;
    };

public:
    struct Hooks {
        /// The successor is READY: it is the main PID now. Stop accepting
        /// and drain.
        std::function<void(pid_t)> succeeded;
        /// It exited, timed out or broke the channel before READY; the
        /// reason is logged already. Keep serving.
        std::function<void()> failed;
    };

    /// Spawns the recorded program with the recorded arguments and sends
    /// `sockets` (dups: the caller keeps serving on its own). Failing to
    /// start the child is returned; everything later reaches `hooks`.
    [[nodiscard]] static Result<std::unique_ptr<Predecessor>> start(
        Poller& poller, const std::vector<HandedSocket>& sockets, Hooks hooks,
        std::chrono::milliseconds ready_timeout);

    Predecessor(Private /*unused*/, Poller& poller, Hooks hooks);
    Predecessor(const Predecessor&) = delete;
    Predecessor& operator=(const Predecessor&) = delete;
    /// A child still starting is killed (SIGKILL) and reaped.
    ~Predecessor();

    /// About once a second: the READY deadline, and reaping a child that
    /// exited. Returns false once the attempt is over (either way).
    bool tick(std::chrono::steady_clock::time_point now);
    [[nodiscard]] pid_t pid() const noexcept { return pid_; }
    [[nodiscard]] bool done() const noexcept { return done_; }

private:
    void on_readable();
    void fail(std::string reason);

    Poller& poller_;
    Hooks hooks_;
    UniqueFd channel_;
    pid_t pid_ = -1;
    bool reaped_ = false;
    bool done_ = false;
    std::chrono::steady_clock::time_point deadline_{};
};

}  // namespace sp::daemon
