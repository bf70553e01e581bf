// SPDX-License-Identifier: Apache-2.0
#include "agent/link_policy.hpp"

#include <string>
#include <vector>

#include <doctest/doctest.h>

using namespace sp::agent;

namespace {

// "P" primary, "S" standby, then the phase letter: i(dle) b(ackoff) t(rying) r(eady).
std::vector<LinkView> links(const std::string& spec) {
    std::vector<LinkView> out;
    for (size_t i = 0; i + 1 < spec.size(); i += 3) {
        LinkView v;
        v.standby = spec[i] == 'S';
        switch (spec[i + 1]) {
            case 'b':
                v.phase = LinkPhase::Backoff;
                break;
            case 't':
                v.phase = LinkPhase::Trying;
                break;
            case 'r':
                v.phase = LinkPhase::Ready;
                break;
            default:
                v.phase = LinkPhase::Idle;
        }
        out.push_back(v);
    }
    return out;
}

// One letter per verdict: R(un), s(top: standby), x (stop: shutdown).
std::string verdicts(const std::vector<Want>& w) {
    std::string out;
    for (const Want v : w) {
        out += v == Want::Run ? 'R' : v == Want::StopStandby ? 's' : 'x';
    }
    return out;
}

struct Row {
    const char* what;
    const char* links;
    bool stopping;
    const char* want;
};

}  // namespace

TEST_SUITE("agent.link_policy") {
    TEST_CASE("link_policy: primaries always run, standbys only while no primary is Ready") {
        const std::vector<Row> rows = {
            {"no links", "", false, ""},
            {"one primary, idle", "Pi ", false, "R"},
            {"every primary runs in any phase", "Pi Pb Pt Pr ", false, "RRRR"},
            {"start-up: a standby waits while a primary tries", "Pt Si ", false, "Rs"},
            {"primary in backoff: the standby starts", "Pb Si ", false, "RR"},
            {"primary idle: it starts now, so the standby waits", "Pi Si ", false, "Rs"},
            {"primary Ready: an up standby hands back", "Pr Sr ", false, "Rs"},
            {"primary Ready: a trying standby stops", "Pr St ", false, "Rs"},
            {"primary Ready: a standby in backoff stops", "Pr Sb ", false, "Rs"},
            {"a trying standby is kept while a primary tries", "Pt St ", false, "RR"},
            {"an up standby is kept while a primary tries", "Pt Sr ", false, "RR"},
            {"a standby in backoff yields to a trying primary", "Pt Sb ", false, "Rs"},
            {"one of two primaries Ready is enough", "Pb Pr Sr ", false, "RRs"},
            {"standbys only: all run", "Si Sb ", false, "RR"},
            {"stopping: everything stops", "Pr Sr Pb ", true, "xxx"},
        };
        for (const auto& r : rows) {
            CAPTURE(r.what);
            const auto l = links(r.links);
            CHECK(verdicts(wanted_links(l, r.stopping)) == r.want);
        }
    }
}
