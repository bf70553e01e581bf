// SPDX-License-Identifier: Apache-2.0
// The status socket's wire protocol (src/admin/docs/admin-protocol.md): one
// JSON request per line in, one JSON answer per line out. Pure code: bytes
// in, values out, no sockets and no clock. The daemons' admin socket and
// sallyportctl both speak it; tests/fuzz/admin_fuzz.cpp feeds it garbage.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>
#include <tl/expected.hpp>

#include "base/result.hpp"

namespace sp::admin {

/// Objects keep their members in insertion order, so a command's document
/// reads (and sallyportctl's columns come) in the order the daemon wrote it.
using Json = nlohmann::ordered_json;

/// The protocol version this code speaks ("v" in every request and answer).
inline constexpr int64_t kVersion = 1;
/// Most bytes one request line may hold, its '\n' included.
inline constexpr size_t kMaxRequestBytes = size_t{64} * 1024;
/// Deepest nesting of objects and arrays in a request; the request object
/// itself is level 1, its "args" object level 2.
inline constexpr int kMaxDepth = 8;
/// Longest command name.
inline constexpr size_t kMaxCommandLength = 32;

/// Why a request failed; on the wire as the kebab-case string of
/// to_string(). A client that meets a code it does not know treats it as
/// Failed.
enum class ErrorCode : uint8_t {
    BadRequest,          // not JSON, or not the shape of a request
    TooLarge,            // the request line is longer than kMaxRequestBytes
    UnsupportedVersion,  // "v" is a version this daemon does not speak
    UnknownCommand,      // no such command on this daemon
    BadArgs,             // the command refused its "args"
    NotFound,            // the object named (a session id, ...) does not exist
    ConfigRejected,      // reload: the new configuration is invalid
    Busy,                // too many clients at once; try again
    Timeout,             // the request came too slowly, or the answer took too long
    AnswerTooLarge,      // the answer is over the daemon's bound; narrow the query
    Failed,              // the command failed for another reason
};

[[nodiscard]] std::string_view to_string(ErrorCode c) noexcept;
/// Failed for a string this version does not know.
[[nodiscard]] ErrorCode error_code_from(std::string_view s) noexcept;

/// A refused request or a failed command: the code and a message for a human.
struct Failure {
    ErrorCode code = ErrorCode::Failed;
    std::string message;
};

template <typename T>
using Outcome = tl::expected<T, Failure>;

[[nodiscard]] inline tl::unexpected<Failure> fail(ErrorCode code, std::string message) {
    return tl::unexpected<Failure>(Failure{code, std::move(message)});
}

struct Request {
    std::string cmd;
    Json args = Json::object();  // always an object (empty when the line had none)
};

/// Decodes one request line (`line` may end in "\n" or "\r\n", nothing may
/// follow). Strict: one JSON object with exactly "v" (the integer
/// kVersion), "cmd" (1-32 of [a-z0-9-], starting with a letter) and
/// optionally "args" (an object); no other member, no member twice, nesting
/// at most kMaxDepth, at most kMaxRequestBytes. Returns the code the answer
/// must carry: TooLarge, UnsupportedVersion (for any other integer "v"),
/// else BadRequest.
[[nodiscard]] Outcome<Request> decode_request(std::string_view line);

/// One request line, "\n" included. `r.cmd` must be a valid command name
/// and `r.args` an object (the caller's contract; not checked here).
[[nodiscard]] std::string encode_request(const Request& r);

/// True for a valid command name (the "cmd" rule above).
[[nodiscard]] bool valid_command_name(std::string_view name) noexcept;

/// A decoded answer: `data` when ok, else `failure`.
// clang-tidy 14 sees a throw inside nlohmann's noexcept move constructor
// and blames every implicit move of a struct holding a Json.
struct Response {  // NOLINT(bugprone-exception-escape)
    bool ok = false;
    Json data;
    Failure failure;
    std::string code_text;  // the code as the daemon spelled it (kept for unknown codes)
};

/// One answer line, "\n" included: {"v":1,"ok":true,"data":DATA}.
/// Never throws: invalid UTF-8 in strings is replaced by U+FFFD.
[[nodiscard]] std::string encode_ok(const Json& data);
/// {"v":1,"ok":false,"code":CODE,"error":MESSAGE} and "\n".
[[nodiscard]] std::string encode_error(ErrorCode code, std::string_view message);
[[nodiscard]] inline std::string encode_error(const Failure& f) {
    return encode_error(f.code, f.message);
}

/// Decodes one answer line (with or without its "\n"). Tolerates members it
/// does not know (a newer daemon may add some); insists on "v" == kVersion,
/// a boolean "ok", "data" when ok, string "code" and "error" when not. No
/// size bound here: the reader bounds the line.
[[nodiscard]] Result<Response> decode_response(std::string_view line);

/// A time as the protocol writes it: RFC 3339 in UTC, whole seconds
/// ("2026-11-21T09:30:00Z").
[[nodiscard]] std::string format_time(std::chrono::system_clock::time_point t);

}  // namespace sp::admin
