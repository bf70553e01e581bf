// SPDX-License-Identifier: Apache-2.0
#include "agent/channel_policy.hpp"

#include <string>
#include <vector>

#include <doctest/doctest.h>

using namespace sp::agent;
using namespace std::chrono_literals;
using sp::control::Binding;

namespace {

const ChannelBudget::Clock::time_point kT0{};

bool known(std::string_view s) {
    return s == "sftp";
}

std::vector<uint8_t> header(const std::string& service, const std::string& client = "1.2.3.4:5",
                            const std::string& listen = "0.0.0.0:22") {
    return *sp::control::encode_binding(Binding{42, service, client, listen});
}

}  // namespace

TEST_SUITE("agent.channel_policy") {
    TEST_CASE("channel_policy: the link cap is pool plus one OPEN_CHANNELS, split over shards") {
        CHECK(link_limits(8, 1).max_open == 8 + kOnDemandChannels);
        CHECK(link_limits(8, 2).max_open == (8 + kOnDemandChannels + 1) / 2);
        CHECK(link_limits(0, 4096).max_open == 1);
        CHECK(link_limits(8, 2).refill_per_s == doctest::Approx(kWastedChannelsPerSecond / 2.0));
    }

    TEST_CASE("channel_policy: dials stop at the cap until a channel binds or drops") {
        ChannelBudget b({3, 100, 1}, kT0);
        CHECK(b.take(kT0) == ChannelBudget::Verdict::Dial);
        CHECK(b.take(kT0) == ChannelBudget::Verdict::Dial);
        CHECK(b.take(kT0) == ChannelBudget::Verdict::Dial);
        CHECK(b.take(kT0) == ChannelBudget::Verdict::OverCap);
        b.bound();
        CHECK(b.take(kT0) == ChannelBudget::Verdict::Dial);
        b.dropped();
        CHECK(b.open() == 2);
    }

    TEST_CASE("channel_policy: channels that carry sessions are never rate limited") {
        ChannelBudget b({2, 2, 1}, kT0);
        for (int i = 0; i < 1000; ++i) {
            REQUIRE(b.take(kT0) == ChannelBudget::Verdict::Dial);
            b.bound();
        }
        CHECK(b.open() == 0);
    }

    TEST_CASE("channel_policy: wasted channels are paid from a bucket that refills slowly") {
        ChannelBudget b({100, 4, 2}, kT0);
        for (int i = 0; i < 4; ++i) {
            REQUIRE(b.take(kT0) == ChannelBudget::Verdict::Dial);
            b.dropped();  // died on arrival
        }
        CHECK(b.take(kT0) == ChannelBudget::Verdict::OverRate);
        CHECK(b.take(kT0 + 400ms) == ChannelBudget::Verdict::OverRate);
        CHECK(b.take(kT0 + 500ms) == ChannelBudget::Verdict::Dial);  // 2 per second
        b.dropped();
        // A storm over 20 s costs at most burst + rate x 20 s dials.
        int dials = 0;
        for (int ms = 0; ms <= 20000; ms += 10) {
            if (b.take(kT0 + 500ms + std::chrono::milliseconds(ms)) ==
                ChannelBudget::Verdict::Dial) {
                ++dials;
                b.dropped();
            }
        }
        CHECK(dials <= 4 + 2 * 20 + 1);
        CHECK(dials >= 2 * 20 - 1);
    }

    TEST_CASE("channel_policy: a binding header is final once decoded") {
        const auto ok = header("sftp");
        SUBCASE("need more, never past the header") {
            const auto v = judge_binding(std::span(ok).first(3), known);
            CHECK(v.kind == BindingVerdict::Kind::NeedMore);
            CHECK(v.need == sp::control::kBindingFixedSize);
            const auto w = judge_binding(std::span(ok).first(10), known);
            CHECK(w.kind == BindingVerdict::Kind::NeedMore);
            CHECK(w.need == ok.size());
        }
        SUBCASE("bound") {
            const auto v = judge_binding(ok, known);
            REQUIRE(v.kind == BindingVerdict::Kind::Bound);
            CHECK(v.binding.session_id == 42);
            CHECK(v.client->port() == 5);
            CHECK(v.listen->port() == 22);
        }
        SUBCASE("empty service is refused, not taken for incomplete") {
            const auto v = judge_binding(header(""), known);
            CHECK(v.kind == BindingVerdict::Kind::Refused);
            CHECK(v.refusal == BindingRefusal::UnknownService);
        }
        SUBCASE("unknown service") {
            const auto v = judge_binding(header("ssh"), known);
            CHECK(v.kind == BindingVerdict::Kind::Refused);
            CHECK(to_string(v.refusal) == "unknown-service");
        }
        SUBCASE("addresses that do not parse") {
            const auto v = judge_binding(header("sftp", "nobody"), known);
            CHECK(v.kind == BindingVerdict::Kind::Refused);
            CHECK(v.refusal == BindingRefusal::BadAddress);
        }
        SUBCASE("garbage") {
            const std::vector<uint8_t> junk = {'H', 'T', 'T', 'P', '/', '1'};
            const auto v = judge_binding(junk, known);
            CHECK(v.kind == BindingVerdict::Kind::Refused);
            CHECK(v.refusal == BindingRefusal::Malformed);
        }
    }
}
