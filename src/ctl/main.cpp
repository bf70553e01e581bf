// SPDX-License-Identifier: Apache-2.0
// sallyportctl: sends one command to a daemon's status socket and prints the
// answer, as columns or as the daemon's JSON document. Exit status as the
// daemons': 0 ok, 1 unreachable or failed, 2 usage (or a refused reload).
#include <unistd.h>

#include <cstdio>
#include <span>
#include <string>

#include "admin/client.hpp"
#include "config.h"
#include "ctl/cli.hpp"
#include "ctl/format.hpp"

namespace {

using sp::admin::ErrorCode;

/// Refusals that are the caller's to fix exit 2, like a usage error.
int exit_code_for(ErrorCode code) {
    switch (code) {
        case ErrorCode::BadArgs:
        case ErrorCode::UnknownCommand:
        case ErrorCode::ConfigRejected:
            return 2;
        default:
            return 1;
    }
}

std::string default_socket() {
    std::string relay(sp::ctl::kRelaySocket);
    if (::access(relay.c_str(), F_OK) == 0) {
        return relay;
    }
    return std::string(sp::ctl::kAgentSocket);
}

}  // namespace

int main(int argc, char** argv) {
    const std::span<const char* const> args(argv + 1, static_cast<size_t>(argc > 0 ? argc - 1 : 0));
    auto opt = sp::ctl::parse_args(args);
    if (!opt) {
        std::fprintf(stderr, "sallyportctl: %s\n", opt.error().describe().c_str());
        return 2;
    }
    if (opt->help) {
        std::fputs(sp::ctl::help_text().c_str(), stdout);
        return 0;
    }
    if (opt->version) {
        std::printf("sallyportctl %s\n", SP_VERSION);
        return 0;
    }
    const std::string socket = opt->socket.empty() ? default_socket() : opt->socket;
    auto answer = sp::admin::call(socket, opt->request, opt->timeout);
    if (!answer) {
        std::fprintf(stderr, "sallyportctl: %s\n", answer.error().describe().c_str());
        return 1;
    }
    if (!answer->ok) {
        std::fprintf(stderr, "sallyportctl: %s: %s\n", opt->request.cmd.c_str(),
                     answer->failure.message.c_str());
        return exit_code_for(answer->failure.code);
    }
    const auto& data = answer->data;
    if (opt->json) {
        std::puts(data.dump(2, ' ', false, sp::admin::Json::error_handler_t::replace).c_str());
        return 0;
    }
    // metrics is already text meant for people and programs alike.
    if (opt->request.cmd == "metrics" && data.is_object() && data.contains("text") &&
        data["text"].is_string()) {
        std::fputs(data["text"].get_ref<const std::string&>().c_str(), stdout);
        return 0;
    }
    std::fputs(sp::ctl::format_document(data).c_str(), stdout);
    return 0;
}
