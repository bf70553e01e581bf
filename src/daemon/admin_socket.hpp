// SPDX-License-Identifier: Apache-2.0
// The status socket (SPEC section 6): a unix stream socket served on the
// control thread's poller, never on a worker. It frames requests (one line
// each, admin/protocol.hpp), hands them to a CommandRegistry and writes the
// answers back without ever blocking the loop. Every client is bounded:
// request size, time to send a request, time to take an answer, how many
// clients at once; a client past a bound is answered an error and dropped.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "admin/protocol.hpp"
#include "base/log_limiter.hpp"
#include "base/poller.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace sp::daemon {

class CommandRegistry;

struct AdminLimits {
    /// Longest request line, '\n' included. A client that sends more without
    /// a newline is answered too-large and dropped.
    size_t max_request = admin::kMaxRequestBytes;
    /// Longest answer line; a longer one is replaced by answer-too-large.
    size_t max_answer = size_t{64} * 1024 * 1024;
    /// Clients connected at once; one more is answered busy and closed.
    size_t max_clients = 16;
    /// A whole request line must arrive within this of the connection (or of
    /// the previous answer): a client that trickles or stalls is dropped.
    std::chrono::milliseconds request_timeout{10000};
    /// A command must answer within this; the client then gets timeout.
    std::chrono::milliseconds answer_timeout{10000};
    /// A client that takes none of its answer for this long is dropped.
    std::chrono::milliseconds write_timeout{10000};
};

class AdminSocket final {
    struct Private {  // passkey: only open() constructs one
        explicit Private() = default;
    };

public:
    /// Control thread. Binds `path` (absolute, shorter than sun_path), sets
    /// it to mode 0660 and the process's group, listens, and serves
    /// `commands` on `poller` from the next loop turn on. If `path` exists:
    /// a socket a live process accepts on is refused (the error names its
    /// pid), a stale socket is replaced, anything else is refused. Borrows
    /// `poller` and `commands`: both must outlive this object.
    [[nodiscard]] static Result<std::unique_ptr<AdminSocket>> open(Poller& poller,
                                                                   const CommandRegistry& commands,
                                                                   std::string path,
                                                                   AdminLimits limits = {},
                                                                   UniqueFd inherited = {});
    AdminSocket(Private /*unused*/, Poller& poller, const CommandRegistry& commands,
                std::string path, AdminLimits limits);
    AdminSocket(const AdminSocket&) = delete;
    AdminSocket& operator=(const AdminSocket&) = delete;
    /// Drops every client, stops listening and removes the path if it is
    /// still this socket (not a successor's). Control thread.
    ~AdminSocket();

    [[nodiscard]] const std::string& path() const noexcept { return path_; }
    /// Binary upgrade: a duplicate of the listening socket for the successor.
    [[nodiscard]] Result<UniqueFd> hand_over();
    /// The successor took over: closing leaves the path (its socket file).
    void leave_path() noexcept { keep_path_ = true; }
    /// Reload moved the socket: stop accepting and remove the path (if it
    /// is still ours); connected clients are still answered.
    void stop_listening() noexcept;
    [[nodiscard]] size_t clients() const noexcept { return clients_.size(); }

private:
    enum class State : uint8_t { Reading, Waiting, Writing };
    struct Client {
        UniqueFd fd;
        State state = State::Reading;
        std::string in;   // bytes received, not yet taken as a request
        std::string out;  // the answer being written
        size_t out_off = 0;
        uint64_t timer = 0;        // the running deadline (0: none)
        uint64_t request = 0;      // id of the request awaiting an answer
        bool peer_done = false;    // the client shut down its sending side
        bool close_after = false;  // drop once the answer is out
    };

    [[nodiscard]] Result<void> listen_at();
    /// Serves on a socket a predecessor bound at path_ (binary upgrade).
    [[nodiscard]] Result<void> adopt(UniqueFd fd);
    void on_accept();
    void on_event(uint64_t id, uint32_t events);
    void read_request(uint64_t id);
    void take_line(uint64_t id);
    /// Answers an error the client caused, then drops it.
    void fail_now(uint64_t id, admin::ErrorCode code, std::string_view message);
    void deliver(uint64_t id, uint64_t request, std::string line);
    void write_some(uint64_t id);
    void answer_written(uint64_t id);
    static void refuse(UniqueFd fd, admin::ErrorCode code, std::string_view message);
    /// (Re)starts the client's one deadline; what it means depends on its state.
    void arm(Client& c, uint64_t id, std::chrono::milliseconds after);
    void on_timeout(uint64_t id);
    void drop(uint64_t id);

    Poller& poller_;
    const CommandRegistry& commands_;
    std::string path_;
    AdminLimits limits_;
    UniqueFd listen_fd_;
    dev_t dev_ = 0;  // identity of the bound path, to remove only our own
    ino_t ino_ = 0;
    bool keep_path_ = false;  // handed over: the successor owns the path
    std::map<uint64_t, std::unique_ptr<Client>> clients_;
    uint64_t next_id_ = 1;
    uint64_t next_request_ = 1;
    uint64_t pause_timer_ = 0;  // accepts paused after EMFILE
    log::LogLimiter busy_log_{3, std::chrono::minutes(1)};
    // Replies outlive nothing: they hold a weak reference to this and go
    // quiet once the socket is gone.
    std::shared_ptr<AdminSocket*> self_;
};

}  // namespace sp::daemon
