// SPDX-License-Identifier: Apache-2.0
#include "admin/protocol.hpp"

#include <time.h>

#include <array>
#include <ctime>
#include <set>
#include <utility>
#include <vector>

namespace sp::admin {

namespace {

constexpr std::array<std::pair<ErrorCode, std::string_view>, 11> kCodes = {{
    {ErrorCode::BadRequest, "bad-request"},
    {ErrorCode::TooLarge, "too-large"},
    {ErrorCode::UnsupportedVersion, "unsupported-version"},
    {ErrorCode::UnknownCommand, "unknown-command"},
    {ErrorCode::BadArgs, "bad-args"},
    {ErrorCode::NotFound, "not-found"},
    {ErrorCode::ConfigRejected, "config-rejected"},
    {ErrorCode::Busy, "busy"},
    {ErrorCode::Timeout, "timeout"},
    {ErrorCode::AnswerTooLarge, "answer-too-large"},
    {ErrorCode::Failed, "failed"},
}};

std::string dump(const Json& j) {
    // error_handler_t::replace: a handler that put bytes of a peer's input
    // into a string must not turn the answer into an exception.
    return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string_view strip_line_end(std::string_view line) {
    if (line.ends_with('\n')) {
        line.remove_suffix(1);
        if (line.ends_with('\r')) {
            line.remove_suffix(1);
        }
    }
    return line;
}

/// What the parser callback saw that nlohmann itself accepts.
struct Shape {
    bool too_deep = false;
    bool duplicate = false;
    std::string duplicate_key;
    std::vector<std::set<std::string>> keys;  // one set per open object
};

/// nlohmann's messages start with "[json.exception.parse_error.101] ".
std::string parse_message(const char* what) {
    std::string_view s(what);
    if (const auto pos = s.find("] "); pos != std::string_view::npos) {
        s.remove_prefix(pos + 2);
    }
    return std::string(s);
}

Outcome<Json> parse_strict(std::string_view text) {
    Shape shape;
    const Json::parser_callback_t cb = [&shape](int depth, nlohmann::json::parse_event_t ev,
                                                Json& parsed) {
        using E = nlohmann::json::parse_event_t;
        switch (ev) {
            case E::object_start:
                shape.too_deep = shape.too_deep || depth >= kMaxDepth;
                shape.keys.emplace_back();
                break;
            case E::array_start:
                shape.too_deep = shape.too_deep || depth >= kMaxDepth;
                break;
            case E::object_end:
                if (!shape.keys.empty()) {
                    shape.keys.pop_back();
                }
                break;
            case E::key:
                if (!shape.keys.empty() && parsed.is_string() &&
                    !shape.keys.back().insert(parsed.get_ref<const std::string&>()).second &&
                    !shape.duplicate) {
                    shape.duplicate = true;
                    shape.duplicate_key = parsed.get_ref<const std::string&>();
                }
                break;
            default:
                break;
        }
        // Always keep: the input is bounded, and discarding parts would
        // desynchronise the object_start/object_end pairs counted above.
        return true;
    };
    Json j;
    try {
        j = Json::parse(text.begin(), text.end(), cb, true, false);
    } catch (const nlohmann::json::exception& e) {
        return fail(ErrorCode::BadRequest, "not JSON: " + parse_message(e.what()));
    }
    if (shape.too_deep) {
        return fail(ErrorCode::BadRequest, fmt::format("nested deeper than {} levels", kMaxDepth));
    }
    if (shape.duplicate) {
        return fail(ErrorCode::BadRequest,
                    fmt::format("member \"{}\" appears twice", shape.duplicate_key));
    }
    return j;
}

}  // namespace

std::string_view to_string(ErrorCode c) noexcept {
    for (const auto& [code, name] : kCodes) {
        if (code == c) {
            return name;
        }
    }
    return "failed";
}

ErrorCode error_code_from(std::string_view s) noexcept {
    for (const auto& [code, name] : kCodes) {
        if (name == s) {
            return code;
        }
    }
    return ErrorCode::Failed;
}

bool valid_command_name(std::string_view name) noexcept {
    if (name.empty() || name.size() > kMaxCommandLength || name[0] < 'a' || name[0] > 'z') {
        return false;
    }
    for (const char c : name) {
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
            return false;
        }
    }
    return true;
}

Outcome<Request> decode_request(std::string_view line) {
    if (line.size() > kMaxRequestBytes) {
        return fail(ErrorCode::TooLarge,
                    fmt::format("request is longer than {} bytes", kMaxRequestBytes));
    }
    const std::string_view text = strip_line_end(line);
    if (text.find('\n') != std::string_view::npos) {
        return fail(ErrorCode::BadRequest, "a request is one line: newline inside it");
    }
    auto parsed = parse_strict(text);
    if (!parsed) {
        return tl::unexpected(std::move(parsed.error()));
    }
    const Json& j = *parsed;
    if (!j.is_object()) {
        return fail(ErrorCode::BadRequest, "a request is a JSON object");
    }
    // The version first: a newer client's request may have members this
    // version does not know, and "unsupported-version" is the useful answer.
    const auto v = j.find("v");
    if (v == j.end()) {
        return fail(ErrorCode::BadRequest, "missing \"v\" (protocol version)");
    }
    if (!v->is_number_integer()) {
        return fail(ErrorCode::BadRequest, "\"v\" must be an integer");
    }
    if (v->get<int64_t>() != kVersion) {
        return fail(ErrorCode::UnsupportedVersion,
                    fmt::format("protocol version {} is not supported (this daemon speaks {})",
                                v->dump(), kVersion));
    }
    for (const auto& [key, value] : j.items()) {
        if (key != "v" && key != "cmd" && key != "args") {
            return fail(ErrorCode::BadRequest, fmt::format("unknown member \"{}\"", key));
        }
    }
    const auto cmd = j.find("cmd");
    if (cmd == j.end()) {
        return fail(ErrorCode::BadRequest, "missing \"cmd\"");
    }
    if (!cmd->is_string() || !valid_command_name(cmd->get_ref<const std::string&>())) {
        return fail(ErrorCode::BadRequest,
                    "\"cmd\" must be a command name: 1-32 of a-z, 0-9 and '-', starting with "
                    "a letter");
    }
    Request r;
    r.cmd = cmd->get<std::string>();
    if (const auto args = j.find("args"); args != j.end()) {
        if (!args->is_object()) {
            return fail(ErrorCode::BadRequest, "\"args\" must be an object");
        }
        r.args = *args;
    }
    return r;
}

std::string encode_request(const Request& r) {
    Json j = Json::object();
    j["v"] = kVersion;
    j["cmd"] = r.cmd;
    if (r.args.is_object() && !r.args.empty()) {
        j["args"] = r.args;
    }
    std::string out = dump(j);
    out += '\n';
    return out;
}

std::string encode_ok(const Json& data) {
    Json j = Json::object();
    j["v"] = kVersion;
    j["ok"] = true;
    j["data"] = data;
    std::string out = dump(j);
    out += '\n';
    return out;
}

std::string encode_error(ErrorCode code, std::string_view message) {
    Json j = Json::object();
    j["v"] = kVersion;
    j["ok"] = false;
    j["code"] = to_string(code);
    j["error"] = message;
    std::string out = dump(j);
    out += '\n';
    return out;
}

Result<Response> decode_response(std::string_view line) {
    const std::string_view text = strip_line_end(line);
    Json j;
    try {
        j = Json::parse(text.begin(), text.end(), nullptr, true, false);
    } catch (const nlohmann::json::exception& e) {
        return runtime_error(0, "the daemon's answer is not JSON: {}", parse_message(e.what()));
    }
    if (!j.is_object()) {
        return runtime_error(0, "the daemon's answer is not a JSON object");
    }
    const auto v = j.find("v");
    if (v == j.end() || !v->is_number_integer()) {
        return runtime_error(0, "the daemon's answer has no protocol version");
    }
    if (v->get<int64_t>() != kVersion) {
        return runtime_error(0, "the daemon speaks protocol version {}, this program {}", v->dump(),
                             kVersion);
    }
    const auto ok = j.find("ok");
    if (ok == j.end() || !ok->is_boolean()) {
        return runtime_error(0, "the daemon's answer has no boolean \"ok\"");
    }
    Response r;
    r.ok = ok->get<bool>();
    if (r.ok) {
        const auto data = j.find("data");
        if (data == j.end()) {
            return runtime_error(0, "the daemon's answer has no \"data\"");
        }
        r.data = std::move(*data);
        return r;
    }
    const auto code = j.find("code");
    const auto error = j.find("error");
    if (code == j.end() || !code->is_string() || error == j.end() || !error->is_string()) {
        return runtime_error(0, "the daemon's error answer lacks \"code\" or \"error\"");
    }
    r.code_text = code->get<std::string>();
    r.failure = Failure{error_code_from(r.code_text), error->get<std::string>()};
    return r;
}

std::string format_time(std::chrono::system_clock::time_point t) {
    const time_t secs = std::chrono::system_clock::to_time_t(t);
    tm utc{};
    if (::gmtime_r(&secs, &utc) == nullptr) {
        return {};
    }
    char buf[32];
    const size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &utc);
    return std::string(buf, n);
}

}  // namespace sp::admin
