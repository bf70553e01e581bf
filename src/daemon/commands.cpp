// SPDX-License-Identifier: Apache-2.0
#include "daemon/commands.hpp"

#include <exception>

#include "base/assert.hpp"

namespace sp::daemon {

using admin::ErrorCode;

Reply::~Reply() {
    if (sink_) {
        send(admin::encode_error(ErrorCode::Failed, "the command gave no answer"));
    }
}

void Reply::send(std::string line) {
    if (!sink_) {
        SP_BUG("admin reply answered twice");
        return;
    }
    auto sink = std::move(sink_);
    sink_ = nullptr;
    sink(std::move(line));
}

void Reply::ok(const admin::Json& data) {
    send(admin::encode_ok(data));
}

void Reply::fail(ErrorCode code, std::string_view message) {
    send(admin::encode_error(code, message));
}

void Reply::answer(const admin::Outcome<admin::Json>& outcome) {
    if (outcome) {
        ok(*outcome);
    } else {
        fail(outcome.error());
    }
}

void CommandRegistry::register_command(std::string name, Handler handler, std::string summary) {
    register_async(
        std::move(name),
        [h = std::move(handler)](const admin::Args& args, Reply reply) { reply.answer(h(args)); },
        std::move(summary));
}

void CommandRegistry::register_async(std::string name, AsyncHandler handler, std::string summary) {
    if (!admin::valid_command_name(name)) {
        SP_BUG("admin command name is not valid");
        return;
    }
    commands_[std::move(name)] = Entry{std::move(handler), std::move(summary)};
}

void CommandRegistry::dispatch(const admin::Request& request, Reply reply) const {
    const auto it = commands_.find(request.cmd);
    if (it == commands_.end()) {
        reply.fail(ErrorCode::UnknownCommand,
                   fmt::format("no command \"{}\" on this daemon (try \"help\")", request.cmd));
        return;
    }
    const admin::Args args(request.args);
    // A handler receives the Reply by value; if it throws after that, its
    // Reply was destroyed on the way out and has answered "failed" already.
    try {
        it->second.handler(args, std::move(reply));
    } catch (const std::exception&) {
        SP_BUG("status socket command handler threw");
    }
}

std::vector<std::pair<std::string, std::string>> CommandRegistry::list() const {
    std::vector<std::pair<std::string, std::string>> out;
    out.reserve(commands_.size());
    for (const auto& [name, e] : commands_) {
        out.emplace_back(name, e.summary);
    }
    return out;
}

}  // namespace sp::daemon
