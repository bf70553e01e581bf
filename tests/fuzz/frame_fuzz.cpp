// SPDX-License-Identifier: Apache-2.0
// Feeds arbitrary bytes to every decoder of the control protocol: as a
// stream of control frames, as a data-channel hello and as a binding header.
// Whatever decodes must re-encode to exactly the bytes it came from, which
// holds only if decoding is strict (one encoding per value).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "control/frame.hpp"
#include "fuzz.hpp"

namespace {

void check(bool ok) {
    if (!ok) {
        __builtin_trap();
    }
}

void fuzz_frames(std::span<const uint8_t> in) {
    for (int i = 0; i < 4096 && !in.empty(); ++i) {
        const auto r = sp::control::decode(in);
        if (r.status == sp::control::DecodeStatus::NeedMore) {
            check(r.needed > in.size());
            return;
        }
        if (r.status == sp::control::DecodeStatus::Error) {
            check(!r.error.empty());
            return;
        }
        check(r.consumed >= sp::control::kFrameHeaderSize && r.consumed <= in.size());
        std::vector<uint8_t> out;
        check(static_cast<bool>(sp::control::encode(r.message, out)));
        check(out.size() == r.consumed && std::equal(out.begin(), out.end(), in.begin()));
        in = in.subspan(r.consumed);
    }
}

void fuzz_channel(std::span<const uint8_t> in) {
    (void)sp::control::classify_first_bytes(in);
    const auto h = sp::control::decode_channel_hello(in);
    if (h.status == sp::control::DecodeStatus::Ok) {
        check(sp::control::classify_first_bytes(in) == sp::control::FirstBytes::DataChannel);
        const auto again = sp::control::encode_channel_hello(h.token);
        check(std::equal(again.begin(), again.end(), in.begin()));
    }
    const auto b = sp::control::decode_binding(in);
    if (b.status == sp::control::DecodeStatus::Ok) {
        const auto again = sp::control::encode_binding(b.binding);
        check(static_cast<bool>(again));
        check(again->size() == b.consumed && std::equal(again->begin(), again->end(), in.begin()));
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::span<const uint8_t> in(data, size);
    fuzz_frames(in);
    fuzz_channel(in);
    return 0;
}
