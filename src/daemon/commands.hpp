// SPDX-License-Identifier: Apache-2.0
// The commands a daemon answers on its status socket: a registry the shell
// and the relay or agent fill with named handlers, and the Reply through
// which a handler answers, at once or later (after a map_reduce over the
// workers). Transport-free: daemon/admin_socket.hpp feeds it requests.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "admin/args.hpp"
#include "admin/protocol.hpp"
#include "base/unique_function.hpp"

namespace sp::daemon {

/// The one answer to one request. Move-only; answer exactly once, on the
/// control thread. A Reply destroyed unanswered answers "failed" itself, so
/// a handler that loses it cannot leave its client hanging. Once the client
/// is gone (it hung up, timed out, or the daemon stopped) answering is a
/// harmless no-op.
class Reply final {
public:
    /// Receives the encoded answer line; the transport's business.
    using Sink = UniqueFunction<void(std::string line)>;

    explicit Reply(Sink sink) noexcept : sink_(std::move(sink)) {}
    Reply(Reply&&) noexcept = default;
    Reply& operator=(Reply&&) = delete;
    Reply(const Reply&) = delete;
    Reply& operator=(const Reply&) = delete;
    ~Reply();

    /// {"ok":true,"data":data}.
    void ok(const admin::Json& data);
    void fail(admin::ErrorCode code, std::string_view message);
    void fail(const admin::Failure& f) { fail(f.code, f.message); }
    /// ok() or fail(), whichever `outcome` holds.
    void answer(const admin::Outcome<admin::Json>& outcome);

    [[nodiscard]] bool answered() const noexcept { return !sink_; }

private:
    void send(std::string line);

    Sink sink_;
};

class CommandRegistry final {
public:
    /// Answers at once: the command's data document, or a Failure.
    using Handler = std::function<admin::Outcome<admin::Json>(const admin::Args& args)>;
    /// Answers through `reply`, now or later (on the control thread).
    using AsyncHandler = std::function<void(const admin::Args& args, Reply reply)>;

    /// Control thread. Adds `name` (admin::valid_command_name must hold: a
    /// bad name is a bug and is refused with SP_BUG), replacing a command of
    /// the same name. `summary` is the one line `help` lists.
    void register_command(std::string name, Handler handler, std::string summary = {});
    void register_async(std::string name, AsyncHandler handler, std::string summary = {});

    /// Control thread: runs the command `request` names with its args and
    /// answers through `reply` (unknown-command when there is none). A
    /// handler that throws is answered "failed" and logged: handlers should
    /// not throw, but nothing escapes into the loop.
    void dispatch(const admin::Request& request, Reply reply) const;

    [[nodiscard]] bool has(std::string_view name) const { return commands_.contains(name); }
    /// Names and summaries, sorted by name.
    [[nodiscard]] std::vector<std::pair<std::string, std::string>> list() const;

private:
    struct Entry {
        AsyncHandler handler;
        std::string summary;
    };
    std::map<std::string, Entry, std::less<>> commands_;
};

}  // namespace sp::daemon
