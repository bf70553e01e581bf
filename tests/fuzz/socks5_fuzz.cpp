// SPDX-License-Identifier: Apache-2.0
// Feeds arbitrary bytes to the SOCKS5 server handshake, whole and split at
// a byte the input chooses, with and without users: the parser must stay
// within its bounds and agree with itself however the bytes arrive.
#include <cstddef>
#include <cstdint>
#include <span>

#include "fuzz.hpp"
#include "outbound/socks5.hpp"

namespace {

void check(bool ok) {
    if (!ok) {
        __builtin_trap();
    }
}

sp::outbound::Socks5Server::Status run(std::span<const uint8_t> in, size_t cut,
                                       const sp::outbound::Users* users) {
    sp::outbound::Socks5Server s(users);
    auto a = s.feed(in.subspan(0, cut));
    if (a.status != sp::outbound::Socks5Server::Status::NeedMore) {
        return a.status;
    }
    auto b = s.feed(in.subspan(cut));
    if (b.status == sp::outbound::Socks5Server::Status::Connect) {
        check(sp::outbound::valid_host(s.target().host));
        check(s.target().port != 0);
        check(s.early().size() <= sp::outbound::Socks5Server::kMaxBuffered);
    }
    check(b.send.size() <= 64);
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
    // Under the size bound, how the bytes are split changes nothing.
    if (in.size() <= sp::outbound::Socks5Server::kMaxBuffered) {
        check(whole == split);
    }
    (void)run(in, cut, &*users);
    return 0;
}
