// SPDX-License-Identifier: Apache-2.0
// Feeds arbitrary bytes to the HTTP CONNECT parser, whole and split at a
// byte the input chooses, with and without users.
#include <cstddef>
#include <cstdint>
#include <span>

#include "fuzz.hpp"
#include "outbound/http_connect.hpp"

namespace {

void check(bool ok) {
    if (!ok) {
        __builtin_trap();
    }
}

sp::outbound::HttpConnectParser::Status run(std::span<const uint8_t> in, size_t cut,
                                            const sp::outbound::Users* users) {
    sp::outbound::HttpConnectParser p(users);
    auto a = p.feed(in.subspan(0, cut));
    if (a.status != sp::outbound::HttpConnectParser::Status::NeedMore) {
        return a.status;
    }
    auto b = p.feed(in.subspan(cut));
    if (b.status == sp::outbound::HttpConnectParser::Status::Connect) {
        check(sp::outbound::valid_host(p.target().host));
        check(p.target().port != 0);
    }
    if (b.status == sp::outbound::HttpConnectParser::Status::Failed) {
        check(b.response.substr(0, 9) == "HTTP/1.1 ");
    }
    return b.status;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) {
        return 0;
    }
    const std::span<const uint8_t> in(data + 1, size - 1);
    const size_t cut = in.empty() ? 0 : data[0] % (in.size() + 1);
    static const auto users = sp::outbound::Users::parse("alice:s3cret\n", "fuzz");
    const auto whole = run(in, in.size(), nullptr);
    const auto split = run(in, cut, nullptr);
    if (in.size() <= sp::outbound::HttpConnectParser::kMaxHead) {
        check(whole == split);
    }
    (void)run(in, cut, &*users);
    return 0;
}
