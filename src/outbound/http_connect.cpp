// SPDX-License-Identifier: Apache-2.0
#include "outbound/http_connect.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace sp::outbound {

namespace {

bool iequals(std::string_view a, std::string_view b) noexcept {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
        s.remove_suffix(1);
    }
    return s;
}

int b64_value(char c) noexcept {
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    if (c == '/') {
        return 63;
    }
    return -1;
}

}  // namespace

bool base64_decode(std::string_view text, std::string& out) {
    out.clear();
    while (!text.empty() && text.back() == '=') {
        text.remove_suffix(1);
    }
    if (text.size() % 4 == 1) {
        return false;
    }
    uint32_t acc = 0;
    int bits = 0;
    for (const char c : text) {
        const int v = b64_value(c);
        if (v < 0) {
            return false;
        }
        acc = ((acc << 6) | static_cast<uint32_t>(v)) & 0xffffffU;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xffU));
        }
    }
    return true;
}

bool parse_authority(std::string_view text, Target& out) {
    std::string_view host;
    std::string_view port;
    if (!text.empty() && text.front() == '[') {
        const size_t close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
            return false;
        }
        host = text.substr(1, close - 1);
        port = text.substr(close + 2);
        if (host.find(':') == std::string_view::npos) {
            return false;  // brackets are for IPv6 literals only
        }
    } else {
        const size_t colon = text.rfind(':');
        if (colon == std::string_view::npos) {
            return false;
        }
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
        if (host.find(':') != std::string_view::npos) {
            return false;  // an IPv6 literal needs its brackets
        }
    }
    unsigned p = 0;
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (port.empty() || port.size() > 5 || ec != std::errc() || end != port.data() + port.size() ||
        p == 0 || p > 65535 || !valid_host(host)) {
        return false;
    }
    out.host = std::string(host);
    out.port = static_cast<uint16_t>(p);
    return true;
}

HttpConnectParser::Step HttpConnectParser::fail(std::string_view why, std::string_view response) {
    done_ = true;
    why_ = why;
    return Step{Status::Failed, response};
}

HttpConnectParser::Step HttpConnectParser::feed(std::span<const uint8_t> in) {
    if (done_) {
        return Step{Status::Failed, {}};
    }
    const size_t old = buf_.size();
    buf_.append(reinterpret_cast<const char*>(in.data()), in.size());
    // The blank line may straddle the old and new bytes: search from a
    // little before them.
    const size_t from = old >= 3 ? old - 3 : 0;
    size_t end = buf_.find("\r\n\r\n", from);
    size_t skip = 4;
    if (const size_t lf = buf_.find("\n\n", from);
        lf != std::string::npos && (end == std::string::npos || lf < end)) {
        end = lf;
        skip = 2;
    }
    if (end == std::string::npos) {
        if (buf_.size() > kMaxHead) {
            return fail("request head too long", kResponse400);
        }
        return Step{Status::NeedMore, {}};
    }
    if (end + skip > kMaxHead) {
        return fail("request head too long", kResponse400);
    }
    early_.assign(buf_.begin() + static_cast<std::ptrdiff_t>(end + skip), buf_.end());
    buf_.resize(end + skip);
    Step s = parse_head(std::string_view(buf_).substr(0, end));
    buf_.clear();
    if (s.status != Status::Connect) {
        early_.clear();
    }
    done_ = true;
    return s;
}

HttpConnectParser::Step HttpConnectParser::parse_head(std::string_view head) {
    // Request line: METHOD SP TARGET SP VERSION.
    size_t eol = head.find('\n');
    const std::string_view line = trim(head.substr(0, eol));
    const size_t sp1 = line.find(' ');
    const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp1 == std::string_view::npos || sp2 == std::string_view::npos ||
        line.find(' ', sp2 + 1) != std::string_view::npos) {
        return fail("malformed request line", kResponse400);
    }
    const std::string_view method = line.substr(0, sp1);
    const std::string_view authority = line.substr(sp1 + 1, sp2 - sp1 - 1);
    const std::string_view version = line.substr(sp2 + 1);
    if (version.substr(0, 5) != "HTTP/") {
        return fail("not HTTP", kResponse400);
    }
    if (version != "HTTP/1.1" && version != "HTTP/1.0") {
        return fail("HTTP version not supported", kResponse505);
    }
    if (method != "CONNECT") {
        return fail("method not allowed (CONNECT only)", kResponse405);
    }
    if (!parse_authority(authority, target_)) {
        return fail("bad CONNECT target", kResponse400);
    }
    std::string_view credentials;
    bool have_credentials = false;
    while (eol != std::string_view::npos) {
        const size_t start = eol + 1;
        eol = head.find('\n', start);
        const std::string_view raw =
            head.substr(start, eol == std::string_view::npos ? eol : eol - start);
        const std::string_view h = trim(raw);
        if (h.empty()) {
            continue;
        }
        // Obsolete line folding (a line starting with blanks) is refused,
        // as RFC 9112 section 5.2 allows a proxy to.
        const size_t colon = h.find(':');
        if (colon == std::string_view::npos || colon == 0 || raw.front() == ' ' ||
            raw.front() == '\t') {
            target_ = {};
            return fail("malformed header line", kResponse400);
        }
        if (iequals(h.substr(0, colon), "Proxy-Authorization")) {
            credentials = trim(h.substr(colon + 1));
            have_credentials = true;
        }
    }
    if (!use_auth()) {
        return Step{Status::Connect, {}};
    }
    std::string decoded;
    if (have_credentials && credentials.size() > 6 && iequals(credentials.substr(0, 6), "Basic ") &&
        base64_decode(trim(credentials.substr(6)), decoded)) {
        const size_t colon = decoded.find(':');
        if (colon != std::string::npos &&
            users_->check(std::string_view(decoded).substr(0, colon),
                          std::string_view(decoded).substr(colon + 1))) {
            user_ = decoded.substr(0, colon);
            return Step{Status::Connect, {}};
        }
    }
    auth_refused_ = true;
    return fail(have_credentials ? "wrong user or password" : "no credentials", kResponse407);
}

}  // namespace sp::outbound
