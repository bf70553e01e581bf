// SPDX-License-Identifier: Apache-2.0
// Feeds arbitrary bytes to the status socket's decoders, line by line as the
// daemon frames them and whole as sallyportctl reads an answer. Whatever
// decodes must satisfy the documented shape and survive an encode/decode
// round trip unchanged; nothing may throw or crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "admin/args.hpp"
#include "admin/protocol.hpp"
#include "fuzz.hpp"

namespace {

void check(bool ok) {
    if (!ok) {
        __builtin_trap();
    }
}

void fuzz_request(std::string_view line) {
    const auto r = sp::admin::decode_request(line);
    if (!r) {
        check(!r.error().message.empty());
        check(r.error().code == sp::admin::ErrorCode::BadRequest ||
              r.error().code == sp::admin::ErrorCode::TooLarge ||
              r.error().code == sp::admin::ErrorCode::UnsupportedVersion);
        // An error answer is one line whatever the message holds.
        const std::string answer = sp::admin::encode_error(r.error());
        check(answer.find('\n') == answer.size() - 1);
        return;
    }
    check(line.size() <= sp::admin::kMaxRequestBytes);
    check(sp::admin::valid_command_name(r->cmd));
    check(r->args.is_object());
    const std::string again = sp::admin::encode_request(*r);
    check(again.find('\n') == again.size() - 1);
    const auto back = sp::admin::decode_request(again);
    check(back.has_value() && back->cmd == r->cmd && back->args == r->args);
    // The typed getters must answer (a value or bad-args) for any member.
    const sp::admin::Args args(r->args);
    for (const auto& [key, value] : r->args.items()) {
        (void)args.string(key);
        (void)args.uint(key);
        (void)args.boolean(key);
    }
    (void)args.only({"service", "client", "id"});
}

void fuzz_response(std::string_view line) {
    const auto r = sp::admin::decode_response(line);
    if (!r) {
        return;
    }
    const std::string again =
        r->ok ? sp::admin::encode_ok(r->data) : sp::admin::encode_error(r->failure);
    check(again.find('\n') == again.size() - 1);
    const auto back = sp::admin::decode_response(again);
    check(back.has_value() && back->ok == r->ok);
    if (r->ok) {
        // Strings with invalid UTF-8 cannot come out of the decoder (it
        // validates), so the document survives byte for byte.
        check(back->data == r->data);
    } else {
        check(back->failure.code == r->failure.code && back->failure.message == r->failure.message);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    size_t start = 0;
    for (int i = 0; i < 64 && start < in.size(); ++i) {
        const size_t nl = in.find('\n', start);
        const size_t end = nl == std::string_view::npos ? in.size() : nl + 1;
        fuzz_request(in.substr(start, end - start));
        start = end;
    }
    fuzz_request(in);
    fuzz_response(in);
    return 0;
}
