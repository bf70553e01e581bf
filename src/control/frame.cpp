// SPDX-License-Identifier: Apache-2.0
#include "control/frame.hpp"

#include <algorithm>
#include <cstring>
#include <type_traits>

namespace sp::control {

namespace {

// Encoding first builds the payload with a Writer that remembers the first
// broken limit; the frame is appended to the caller's buffer only if none was.
class Writer {
public:
    void u8(uint8_t v) { buf_.push_back(v); }
    void u16(uint16_t v) {
        buf_.push_back(static_cast<uint8_t>(v >> 8));
        buf_.push_back(static_cast<uint8_t>(v));
    }
    void u32(uint32_t v) {
        for (int s = 24; s >= 0; s -= 8) {
            buf_.push_back(static_cast<uint8_t>(v >> s));
        }
    }
    void u64(uint64_t v) {
        for (int s = 56; s >= 0; s -= 8) {
            buf_.push_back(static_cast<uint8_t>(v >> s));
        }
    }
    void i32(int32_t v) { u32(static_cast<uint32_t>(v)); }
    void bytes(std::span<const uint8_t> b) { buf_.insert(buf_.end(), b.begin(), b.end()); }
    void str(const std::string& s, size_t max, const char* field) {
        if (s.size() > max) {
            fail(field, "string", s.size(), max);
            return;
        }
        u16(static_cast<uint16_t>(s.size()));
        buf_.insert(buf_.end(), s.begin(), s.end());
    }
    // Returns false (and records why) when the list is too long; the caller
    // then writes no items.
    bool count(size_t n, size_t max, const char* field) {
        if (n > max) {
            fail(field, "list", n, max);
            return false;
        }
        u16(static_cast<uint16_t>(n));
        return true;
    }
    void fail(const char* field, const char* what, size_t n, size_t max) {
        if (error_.empty()) {
            error_ = fmt::format("{} {} has {} elements, limit {}", what, field, n, max);
        }
    }
    void fail_text(std::string e) {
        if (error_.empty()) {
            error_ = std::move(e);
        }
    }
    [[nodiscard]] const std::string& error() const { return error_; }
    [[nodiscard]] std::vector<uint8_t>& buf() { return buf_; }

private:
    std::vector<uint8_t> buf_;
    std::string error_;
};

// Strict reader: every accessor fails once the input is short, and the first
// failure sticks, so decoders can read a whole message and check ok() once.
class Reader {
public:
    explicit Reader(std::span<const uint8_t> in) : in_(in) {}

    uint8_t u8() {
        if (!take(1)) {
            return 0;
        }
        return in_[pos_ - 1];
    }
    uint16_t u16() {
        if (!take(2)) {
            return 0;
        }
        return static_cast<uint16_t>((in_[pos_ - 2] << 8) | in_[pos_ - 1]);
    }
    uint32_t u32() {
        if (!take(4)) {
            return 0;
        }
        uint32_t v = 0;
        for (size_t i = pos_ - 4; i < pos_; ++i) {
            v = (v << 8) | in_[i];
        }
        return v;
    }
    uint64_t u64() {
        if (!take(8)) {
            return 0;
        }
        uint64_t v = 0;
        for (size_t i = pos_ - 8; i < pos_; ++i) {
            v = (v << 8) | in_[i];
        }
        return v;
    }
    int32_t i32() { return static_cast<int32_t>(u32()); }
    std::string str(size_t max, const char* field) {
        const uint16_t n = u16();
        if (!ok()) {
            return {};
        }
        if (n > max) {
            fail(fmt::format("string {} length {} over limit {}", field, n, max));
            return {};
        }
        if (!take(n)) {
            return {};
        }
        return std::string(reinterpret_cast<const char*>(in_.data() + pos_ - n), n);
    }
    void token(Token& t) {
        if (take(t.size())) {
            std::memcpy(t.data(), in_.data() + pos_ - t.size(), t.size());
        }
    }
    // Returns the count, or 0 after recording an error if it is over `max`.
    size_t count(size_t max, const char* field) {
        const uint16_t n = u16();
        if (ok() && n > max) {
            fail(fmt::format("list {} has {} elements, limit {}", field, n, max));
            return 0;
        }
        return ok() ? n : 0;
    }
    template <typename E>
    E enumeration(uint16_t lo, uint16_t hi, const char* field) {
        uint16_t v = 0;
        if constexpr (sizeof(std::underlying_type_t<E>) == 1) {
            v = u8();
        } else {
            v = u16();
        }
        if (ok() && (v < lo || v > hi)) {
            fail(fmt::format("{} value {} out of range", field, v));
        }
        return static_cast<E>(v);
    }
    void fail(std::string e) {
        if (error_.empty()) {
            error_ = std::move(e);
        }
    }
    // The payload must be consumed exactly.
    void finish() {
        if (ok() && pos_ != in_.size()) {
            fail(fmt::format("{} trailing bytes", in_.size() - pos_));
        }
    }
    [[nodiscard]] bool ok() const { return error_.empty(); }
    [[nodiscard]] const std::string& error() const { return error_; }

private:
    bool take(size_t n) {
        if (!ok()) {
            return false;
        }
        if (in_.size() - pos_ < n) {
            fail("truncated field");
            return false;
        }
        pos_ += n;
        return true;
    }

    std::span<const uint8_t> in_;
    size_t pos_ = 0;
    std::string error_;
};

// ---- per-message payload codecs ----------------------------------------------

void put(Writer& w, const Hello& m) {
    if (m.min_version == 0 || m.min_version > m.max_version) {
        w.fail_text("HELLO version range is empty");
    }
    w.u8(m.min_version);
    w.u8(m.max_version);
    w.str(m.agent_name, kMaxName, "agent_name");
    w.str(m.software_version, kMaxName, "software_version");
    w.u16(m.pool_size);
    w.u32(m.heartbeat_ms);
}
void get(Reader& r, Hello& m) {
    m.min_version = r.u8();
    m.max_version = r.u8();
    m.agent_name = r.str(kMaxName, "agent_name");
    m.software_version = r.str(kMaxName, "software_version");
    m.pool_size = r.u16();
    m.heartbeat_ms = r.u32();
    if (r.ok() && (m.min_version == 0 || m.min_version > m.max_version)) {
        r.fail("HELLO version range is empty");
    }
}

void put(Writer& w, const HelloAck& m) {
    w.u8(m.version);
    w.str(m.software_version, kMaxName, "software_version");
    w.u32(m.heartbeat_ms);
    w.u64(m.connection_id);
}
void get(Reader& r, HelloAck& m) {
    m.version = r.u8();
    m.software_version = r.str(kMaxName, "software_version");
    m.heartbeat_ms = r.u32();
    m.connection_id = r.u64();
}

void put_strings(Writer& w, const std::vector<std::string>& v, size_t max_items, size_t max_len,
                 const char* field) {
    if (w.count(v.size(), max_items, field)) {
        for (const auto& s : v) {
            w.str(s, max_len, field);
        }
    }
}
std::vector<std::string> get_strings(Reader& r, size_t max_items, size_t max_len,
                                     const char* field) {
    std::vector<std::string> v;
    const size_t n = r.count(max_items, field);
    for (size_t i = 0; i < n && r.ok(); ++i) {
        v.push_back(r.str(max_len, field));
    }
    return v;
}

void put(Writer& w, const Config& m) {
    w.u32(m.generation);
    size_t listeners = 0;
    for (const auto& s : m.services) {
        listeners += s.listen.size();
    }
    if (listeners > kMaxListeners) {
        w.fail("listen (all services)", "list", listeners, kMaxListeners);
    }
    if (!w.count(m.services.size(), kMaxServices, "services")) {
        return;
    }
    for (const auto& s : m.services) {
        w.str(s.name, kMaxName, "service name");
        put_strings(w, s.listen, kMaxListenPerService, kMaxAddress, "listen");
        put_strings(w, s.allow_clients, kMaxCidrsPerList, kMaxAddress, "allow_clients");
        put_strings(w, s.deny_clients, kMaxCidrsPerList, kMaxAddress, "deny_clients");
        w.u32(s.max_sessions);
        w.u32(s.affinity_s);
    }
}
void get(Reader& r, Config& m) {
    m.generation = r.u32();
    const size_t n = r.count(kMaxServices, "services");
    size_t listeners = 0;
    for (size_t i = 0; i < n && r.ok(); ++i) {
        ServiceSpec s;
        s.name = r.str(kMaxName, "service name");
        s.listen = get_strings(r, kMaxListenPerService, kMaxAddress, "listen");
        s.allow_clients = get_strings(r, kMaxCidrsPerList, kMaxAddress, "allow_clients");
        s.deny_clients = get_strings(r, kMaxCidrsPerList, kMaxAddress, "deny_clients");
        s.max_sessions = r.u32();
        s.affinity_s = r.u32();
        listeners += s.listen.size();
        if (r.ok() && listeners > kMaxListeners) {
            r.fail(fmt::format("more than {} listen strings", kMaxListeners));
        }
        m.services.push_back(std::move(s));
    }
}

void put(Writer& w, const ConfigResult& m) {
    w.u32(m.generation);
    if (!w.count(m.results.size(), kMaxListenResults, "results")) {
        return;
    }
    for (const auto& x : m.results) {
        w.str(x.service, kMaxName, "service");
        w.str(x.listen, kMaxAddress, "listen");
        w.u8(static_cast<uint8_t>(x.status));
        w.i32(x.error);
        w.str(x.message, kMaxString, "message");
    }
}
void get(Reader& r, ConfigResult& m) {
    m.generation = r.u32();
    const size_t n = r.count(kMaxListenResults, "results");
    for (size_t i = 0; i < n && r.ok(); ++i) {
        ListenResult x;
        x.service = r.str(kMaxName, "service");
        x.listen = r.str(kMaxAddress, "listen");
        x.status = r.enumeration<ListenStatus>(0, kMaxListenStatus, "listen status");
        x.error = r.i32();
        x.message = r.str(kMaxString, "message");
        m.results.push_back(std::move(x));
    }
}

void put(Writer& w, const OpenChannels& m) {
    if (m.tokens.empty()) {
        w.fail_text("OPEN_CHANNELS without tokens");
        return;
    }
    if (!w.count(m.tokens.size(), kMaxTokens, "tokens")) {
        return;
    }
    for (const auto& t : m.tokens) {
        w.bytes(t);
    }
}
void get(Reader& r, OpenChannels& m) {
    const size_t n = r.count(kMaxTokens, "tokens");
    if (r.ok() && n == 0) {
        r.fail("OPEN_CHANNELS without tokens");
    }
    for (size_t i = 0; i < n && r.ok(); ++i) {
        Token t{};
        r.token(t);
        m.tokens.push_back(t);
    }
}

void put(Writer& w, const Heartbeat& m) {
    w.u64(m.send_time_ms);
}
void get(Reader& r, Heartbeat& m) {
    m.send_time_ms = r.u64();
}

void put(Writer& w, const Goodbye& m) {
    const auto v = static_cast<uint16_t>(m.reason);
    if (v < 1 || v > kMaxGoodbyeReason) {
        w.fail_text(fmt::format("GOODBYE reason {} out of range", v));
    }
    w.u16(v);
    w.str(m.message, kMaxString, "message");
}
void get(Reader& r, Goodbye& m) {
    m.reason = r.enumeration<GoodbyeReason>(1, kMaxGoodbyeReason, "goodbye reason");
    m.message = r.str(kMaxString, "message");
}

void put(Writer& w, const BackendFailed& m) {
    w.u64(m.session_id);
    w.i32(m.error);
    w.str(m.backend, kMaxAddress, "backend");
}
void get(Reader& r, BackendFailed& m) {
    m.session_id = r.u64();
    m.error = r.i32();
    m.backend = r.str(kMaxAddress, "backend");
}

void put(Writer& w, const OutboundRequest& m) {
    w.u32(m.request_id);
    w.str(m.host, kMaxName, "host");
    w.u16(m.port);
}
void get(Reader& r, OutboundRequest& m) {
    m.request_id = r.u32();
    m.host = r.str(kMaxName, "host");
    m.port = r.u16();
}

void put(Writer& w, const OutboundResult& m) {
    w.u32(m.request_id);
    const auto v = static_cast<uint8_t>(m.status);
    if (v > kMaxOutboundStatus) {
        w.fail_text(fmt::format("outbound status {} out of range", v));
    }
    w.u8(v);
    w.i32(m.error);
    w.bytes(m.token);
}
void get(Reader& r, OutboundResult& m) {
    m.request_id = r.u32();
    m.status = r.enumeration<OutboundStatus>(0, kMaxOutboundStatus, "outbound status");
    m.error = r.i32();
    r.token(m.token);
}

void put(Writer& w, const AgentState& m) {
    w.u8(m.draining ? kAgentStateDraining : 0);
}
void get(Reader& r, AgentState& m) {
    const uint8_t flags = r.u8();
    // Unknown bits are refused, not ignored: every value has one encoding,
    // and a later flag must come with a version that announces it.
    if (r.ok() && (flags & ~kAgentStateDraining) != 0) {
        r.fail(fmt::format("AGENT_STATE flags {:#04x} has unknown bits", flags));
    }
    m.draining = (flags & kAgentStateDraining) != 0;
}

template <size_t I = 0>
void decode_payload(uint16_t type, Reader& r, Message& out) {
    if constexpr (I < std::variant_size_v<Message>) {
        if (type == I + 1) {
            std::variant_alternative_t<I, Message> m;
            get(r, m);
            out = std::move(m);
        } else {
            decode_payload<I + 1>(type, r, out);
        }
    }
}

uint32_t load_u32(const uint8_t* p) {
    return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

}  // namespace

MessageType type_of(const Message& m) noexcept {
    return static_cast<MessageType>(m.index() + 1);
}

std::optional<uint8_t> negotiate_version(const Hello& hello) noexcept {
    const uint8_t lo = std::max(hello.min_version, kMinProtocolVersion);
    const uint8_t hi = std::min(hello.max_version, kProtocolVersion);
    if (lo > hi) {
        return std::nullopt;
    }
    return hi;
}

uint32_t negotiate_heartbeat_ms(uint32_t requested_ms) noexcept {
    if (requested_ms == 0) {
        return kDefaultHeartbeatMs;
    }
    return std::clamp(requested_ms, kMinHeartbeatMs, kMaxHeartbeatMs);
}

std::string_view to_string(MessageType t) noexcept {
    switch (t) {
        case MessageType::Hello:
            return "HELLO";
        case MessageType::HelloAck:
            return "HELLO_ACK";
        case MessageType::Config:
            return "CONFIG";
        case MessageType::ConfigResult:
            return "CONFIG_RESULT";
        case MessageType::OpenChannels:
            return "OPEN_CHANNELS";
        case MessageType::Heartbeat:
            return "HEARTBEAT";
        case MessageType::Goodbye:
            return "GOODBYE";
        case MessageType::BackendFailed:
            return "BACKEND_FAILED";
        case MessageType::OutboundRequest:
            return "OUTBOUND_REQUEST";
        case MessageType::OutboundResult:
            return "OUTBOUND_RESULT";
        case MessageType::AgentState:
            return "AGENT_STATE";
    }
    return "unknown";
}

std::string_view to_string(GoodbyeReason r) noexcept {
    switch (r) {
        case GoodbyeReason::Shutdown:
            return "shutdown";
        case GoodbyeReason::Reload:
            return "reload";
        case GoodbyeReason::BadKey:
            return "bad-key";
        case GoodbyeReason::ProtocolError:
            return "protocol";
        case GoodbyeReason::Version:
            return "version";
        case GoodbyeReason::Timeout:
            return "timeout";
        case GoodbyeReason::Replaced:
            return "replaced";
        case GoodbyeReason::NotAllowed:
            return "not-allowed";
        case GoodbyeReason::Internal:
            return "internal";
    }
    return "unknown";
}

std::string_view to_string(ListenStatus s) noexcept {
    switch (s) {
        case ListenStatus::Ok:
            return "ok";
        case ListenStatus::BindFailed:
            return "bind-failed";
        case ListenStatus::NotAllowed:
            return "not-allowed";
        case ListenStatus::Conflict:
            return "conflict";
        case ListenStatus::Invalid:
            return "invalid";
    }
    return "unknown";
}

std::string_view to_string(OutboundStatus s) noexcept {
    switch (s) {
        case OutboundStatus::Ok:
            return "ok";
        case OutboundStatus::Denied:
            return "denied";
        case OutboundStatus::ResolveFailed:
            return "resolve-failed";
        case OutboundStatus::ConnectFailed:
            return "connect-failed";
        case OutboundStatus::Timeout:
            return "timeout";
        case OutboundStatus::Disabled:
            return "disabled";
        case OutboundStatus::Limit:
            return "limit";
    }
    return "unknown";
}

namespace {

// Payload bytes of a CONFIG_RESULT as put() lays it out: u32 generation, u16
// count, then per result three u16-prefixed strings, a u8 and an i32.
constexpr size_t kResultFixed = 4 + 2;
constexpr size_t kPerResult = 2 + 2 + 1 + 4 + 2;

size_t result_size(const ListenResult& x, size_t message_cap) {
    return kPerResult + x.service.size() + x.listen.size() +
           std::min(x.message.size(), message_cap);
}

size_t results_size(const ConfigResult& r, size_t message_cap) {
    size_t n = kResultFixed;
    for (const auto& x : r.results) {
        n += result_size(x, message_cap);
    }
    return n;
}

void truncate_utf8(std::string& s, size_t cap) {
    if (s.size() <= cap) {
        return;
    }
    size_t end = cap;
    // Never cut inside a multi-byte sequence: back off continuation bytes.
    while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0U) == 0x80U) {
        --end;
    }
    s.resize(end);
}

}  // namespace

size_t fit_to_frame(ConfigResult& r) {
    const size_t before = r.results.size();
    for (auto& x : r.results) {
        truncate_utf8(x.message, kMaxString);
    }
    if (r.results.size() > kMaxListenResults) {
        r.results.resize(kMaxListenResults);
    }
    if (results_size(r, kMaxString) > kMaxFrame) {
        std::erase_if(r.results,
                      [](const ListenResult& x) { return x.status == ListenStatus::Ok; });
    }
    while (!r.results.empty() && results_size(r, 0) > kMaxFrame) {
        r.results.pop_back();
    }
    if (results_size(r, kMaxString) > kMaxFrame) {
        // The largest per-message cap that fits: messages shorter than it
        // keep every byte, the rest are cut to it.
        size_t lo = 0;
        size_t hi = kMaxString;
        while (lo < hi) {
            const size_t mid = (lo + hi + 1) / 2;
            if (results_size(r, mid) <= kMaxFrame) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        for (auto& x : r.results) {
            truncate_utf8(x.message, lo);
        }
    }
    return before - r.results.size();
}

Result<void> encode(const Message& m, std::vector<uint8_t>& out) {
    Writer w;
    std::visit([&w](const auto& msg) { put(w, msg); }, m);
    if (!w.error().empty()) {
        return runtime_error(EINVAL, "cannot encode {}: {}", to_string(type_of(m)), w.error());
    }
    const auto& payload = w.buf();
    if (payload.size() > kMaxFrame) {
        return runtime_error(EMSGSIZE, "cannot encode {}: payload {} bytes over limit {}",
                             to_string(type_of(m)), payload.size(), kMaxFrame);
    }
    const auto len = static_cast<uint32_t>(payload.size());
    const auto type = static_cast<uint16_t>(type_of(m));
    const uint8_t header[kFrameHeaderSize] = {
        static_cast<uint8_t>(len >> 24),
        static_cast<uint8_t>(len >> 16),
        static_cast<uint8_t>(len >> 8),
        static_cast<uint8_t>(len),
        static_cast<uint8_t>(type >> 8),
        static_cast<uint8_t>(type),
        kProtocolVersion,
        0,
    };
    out.insert(out.end(), std::begin(header), std::end(header));
    out.insert(out.end(), payload.begin(), payload.end());
    return {};
}

DecodeResult decode(std::span<const uint8_t> in) {
    DecodeResult res;
    auto error = [&res](std::string e, GoodbyeReason reason = GoodbyeReason::ProtocolError) {
        res.status = DecodeStatus::Error;
        res.error = std::move(e);
        res.reason = reason;
        return std::move(res);
    };
    if (in.size() < kFrameHeaderSize) {
        res.needed = kFrameHeaderSize;
        return res;
    }
    const uint32_t len = load_u32(in.data());
    const auto type = static_cast<uint16_t>((in[4] << 8) | in[5]);
    const uint8_t version = in[6];
    const uint8_t flags = in[7];
    // Reject what the header alone condemns before asking for the payload,
    // so a peer cannot make us buffer up to kMaxFrame of junk.
    if (len > kMaxFrame) {
        return error(fmt::format("frame length {} over limit {}", len, kMaxFrame));
    }
    if (version != kProtocolVersion) {
        return error(fmt::format("frame version {} not supported", version),
                     GoodbyeReason::Version);
    }
    if (flags != 0) {
        return error(fmt::format("frame flags {:#04x} not zero", flags));
    }
    if (type < 1 || type > std::variant_size_v<Message>) {
        return error(fmt::format("unknown frame type {}", type));
    }
    const size_t total = kFrameHeaderSize + len;
    if (in.size() < total) {
        res.needed = total;
        return res;
    }
    Reader r(in.subspan(kFrameHeaderSize, len));
    decode_payload(type, r, res.message);
    r.finish();
    if (!r.ok()) {
        return error(fmt::format("{}: {}", to_string(static_cast<MessageType>(type)), r.error()));
    }
    res.status = DecodeStatus::Ok;
    res.consumed = total;
    return res;
}

// ---- data channel -------------------------------------------------------------

FirstBytes classify_first_bytes(std::span<const uint8_t> in) noexcept {
    if (in.empty()) {
        return FirstBytes::NeedMore;
    }
    if (in[0] == 0x16) {
        // TLS record header: content type handshake, legacy version 3.x. A
        // ClientHello record says 3.1 (OpenSSL) or 3.3; 3.4 is tolerated.
        if (in.size() < 2) {
            return FirstBytes::NeedMore;
        }
        if (in[1] != 0x03) {
            return FirstBytes::Garbage;
        }
        if (in.size() < 3) {
            return FirstBytes::NeedMore;
        }
        return in[2] >= 0x01 && in[2] <= 0x04 ? FirstBytes::Tls : FirstBytes::Garbage;
    }
    const size_t n = std::min(in.size(), kChannelMagic.size());
    if (!std::equal(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(n),
                    kChannelMagic.begin())) {
        return FirstBytes::Garbage;
    }
    return n == kChannelMagic.size() ? FirstBytes::DataChannel : FirstBytes::NeedMore;
}

std::array<uint8_t, kChannelHelloSize> encode_channel_hello(const Token& token) noexcept {
    std::array<uint8_t, kChannelHelloSize> out{};
    std::copy(kChannelMagic.begin(), kChannelMagic.end(), out.begin());
    out[4] = kChannelVersion;
    // out[5..7] stay zero (reserved)
    std::copy(token.begin(), token.end(), out.begin() + 8);
    return out;
}

ChannelHelloResult decode_channel_hello(std::span<const uint8_t> in) {
    ChannelHelloResult res;
    const size_t n = std::min(in.size(), kChannelMagic.size());
    if (!std::equal(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(n),
                    kChannelMagic.begin())) {
        res.status = DecodeStatus::Error;
        res.error = "bad data channel magic";
        return res;
    }
    if (in.size() < kChannelHelloSize) {
        res.needed = kChannelHelloSize;
        return res;
    }
    if (in[4] != kChannelVersion) {
        res.status = DecodeStatus::Error;
        res.error = fmt::format("data channel version {} not supported", in[4]);
        return res;
    }
    if (in[5] != 0 || in[6] != 0 || in[7] != 0) {
        res.status = DecodeStatus::Error;
        res.error = "data channel reserved bytes not zero";
        return res;
    }
    std::copy(in.begin() + 8, in.begin() + kChannelHelloSize, res.token.begin());
    res.status = DecodeStatus::Ok;
    return res;
}

Result<std::vector<uint8_t>> encode_binding(const Binding& b) {
    Writer w;
    w.u64(b.session_id);
    w.str(b.service, kMaxBindingPayload, "service");
    w.str(b.client_addr, kMaxBindingPayload, "client_addr");
    w.str(b.listen_addr, kMaxBindingPayload, "listen_addr");
    if (!w.error().empty()) {
        return runtime_error(EINVAL, "cannot encode binding: {}", w.error());
    }
    if (w.buf().size() > kMaxBindingPayload) {
        return runtime_error(EMSGSIZE, "cannot encode binding: payload {} bytes over limit {}",
                             w.buf().size(), kMaxBindingPayload);
    }
    std::vector<uint8_t> out(kBindingMagic.begin(), kBindingMagic.end());
    const auto len = static_cast<uint16_t>(w.buf().size());
    out.push_back(static_cast<uint8_t>(len >> 8));
    out.push_back(static_cast<uint8_t>(len));
    out.insert(out.end(), w.buf().begin(), w.buf().end());
    return out;
}

BindingResult decode_binding(std::span<const uint8_t> in) {
    BindingResult res;
    const size_t n = std::min(in.size(), kBindingMagic.size());
    if (!std::equal(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(n),
                    kBindingMagic.begin())) {
        res.status = DecodeStatus::Error;
        res.error = "bad binding header magic";
        return res;
    }
    if (in.size() < kBindingFixedSize) {
        res.needed = kBindingFixedSize;
        return res;
    }
    const size_t len = (size_t{in[4]} << 8) | in[5];
    if (len > kMaxBindingPayload) {
        res.status = DecodeStatus::Error;
        res.error = fmt::format("binding length {} over limit {}", len, kMaxBindingPayload);
        return res;
    }
    if (in.size() < kBindingFixedSize + len) {
        res.needed = kBindingFixedSize + len;
        return res;
    }
    Reader r(in.subspan(kBindingFixedSize, len));
    res.binding.session_id = r.u64();
    res.binding.service = r.str(kMaxBindingPayload, "service");
    res.binding.client_addr = r.str(kMaxBindingPayload, "client_addr");
    res.binding.listen_addr = r.str(kMaxBindingPayload, "listen_addr");
    r.finish();
    if (!r.ok()) {
        res.status = DecodeStatus::Error;
        res.error = fmt::format("binding: {}", r.error());
        res.binding = {};
        return res;
    }
    res.status = DecodeStatus::Ok;
    res.consumed = kBindingFixedSize + len;
    return res;
}

}  // namespace sp::control
