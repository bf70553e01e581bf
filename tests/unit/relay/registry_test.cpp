// SPDX-License-Identifier: Apache-2.0
#include "relay/registry.hpp"

#include <algorithm>

#include <doctest/doctest.h>

using namespace sp::relay;
using Kind = ListenerAction::Kind;

namespace {

ServiceSpec svc(std::string name, const std::vector<std::string>& listen) {
    ServiceSpec s;
    s.name = std::move(name);
    for (const auto& l : listen) {
        s.listen.push_back(*sp::HostPorts::parse(l, true));
    }
    return s;
}

Registry make() {
    return Registry([](const sp::HostPorts& hp) { return hp.ports.first >= 1024; });
}

size_t count(const std::vector<ListenerAction>& a, Kind k) {
    return static_cast<size_t>(
        std::count_if(a.begin(), a.end(), [&](const auto& x) { return x.kind == k; }));
}

}  // namespace

TEST_SUITE("relay.registry") {
    TEST_CASE("registry: a new service opens every port of its listen set") {
        auto r = make();
        const auto out = r.apply(1, {svc("ftp", {"0.0.0.0:2021", "0.0.0.0:30000-30009"})});
        CHECK(count(out.actions, Kind::Open) == 11);
        CHECK(out.results.size() == 2);
        CHECK(out.results[0].status == ListenStatus::Ok);
        CHECK(r.listeners().size() == 11);
        CHECK(r.agents_of("ftp") == std::vector<uint64_t>{1});
    }

    TEST_CASE("registry: a second push of the same config changes nothing") {
        auto r = make();
        (void)r.apply(1, {svc("sftp", {"0.0.0.0:2222"}), svc("web", {"127.0.0.1:8443"})});
        const auto out =
            r.apply(1, {svc("sftp", {"0.0.0.0:2222"}), svc("web", {"127.0.0.1:8443"})});
        CHECK(out.actions.empty());
        CHECK(out.joined.empty());
        CHECK(out.left.empty());
    }

    TEST_CASE("registry: a push applies as a diff, closes before opens") {
        auto r = make();
        (void)r.apply(1, {svc("a", {"0.0.0.0:5000"}), svc("b", {"0.0.0.0:5001"})});
        const auto out = r.apply(1, {svc("b", {"0.0.0.0:5001"}), svc("c", {"0.0.0.0:5002"})});
        REQUIRE(out.actions.size() == 2);
        CHECK(out.actions[0].kind == Kind::Close);
        CHECK(out.actions[0].address.port() == 5000);
        CHECK(out.actions[1].kind == Kind::Open);
        CHECK(out.actions[1].address.port() == 5002);
        CHECK(out.left == std::vector<std::string>{"a"});
        CHECK(out.joined == std::vector<std::string>{"c"});
    }

    TEST_CASE("registry: the same agent may move a service to another port") {
        auto r = make();
        (void)r.apply(1, {svc("a", {"0.0.0.0:5000-5001"})});
        const auto out = r.apply(1, {svc("a", {"0.0.0.0:5001-5002"})});
        CHECK(count(out.actions, Kind::Close) == 2);
        CHECK(count(out.actions, Kind::Open) == 2);
        CHECK(out.results[0].status == ListenStatus::Ok);
    }

    TEST_CASE("registry: agents with the same service form one pool") {
        auto r = make();
        (void)r.apply(1, {svc("sftp", {"0.0.0.0:2222"})});
        const auto out = r.apply(2, {svc("sftp", {"0.0.0.0:2222"})});
        CHECK(out.actions.empty());
        CHECK(out.results[0].status == ListenStatus::Ok);
        CHECK(r.agents_of("sftp") == std::vector<uint64_t>{1, 2});
        CHECK(r.remove_agent(1).empty());
        const auto closes = r.remove_agent(2);
        CHECK(count(closes, Kind::Close) == 1);
        CHECK(r.service_count() == 0);
        CHECK(r.listeners().empty());
    }

    TEST_CASE("registry: rules pushed again with the same listen set replace the old ones") {
        auto r = make();
        (void)r.apply(1, {svc("sftp", {"0.0.0.0:2222"})});
        auto tighter = svc("sftp", {"0.0.0.0:2222"});
        tighter.deny_clients.push_back(*sp::Cidr::parse("203.0.113.0/24"));
        tighter.max_sessions = 7;
        const auto out = r.apply(1, {tighter});
        CHECK(out.actions.empty());  // the listener stays open
        REQUIRE(r.service("sftp") != nullptr);
        CHECK(r.service("sftp")->deny_clients.size() == 1);
        CHECK(r.service("sftp")->max_sessions == 7);
        // A second agent joining the pool brings the rules that apply from then on.
        (void)r.apply(2, {svc("sftp", {"0.0.0.0:2222"})});
        CHECK(r.service("sftp")->deny_clients.empty());
        CHECK(r.service("sftp")->max_sessions == 0);
    }

    TEST_CASE("registry: conflicting claims are refused and change nothing") {
        auto r = make();
        (void)r.apply(1, {svc("sftp", {"0.0.0.0:2222"})});
        SUBCASE("same name, other listen set") {
            const auto out = r.apply(2, {svc("sftp", {"0.0.0.0:2223"})});
            CHECK(out.results[0].status == ListenStatus::Conflict);
            CHECK(out.actions.empty());
            CHECK(r.agents_of("sftp") == std::vector<uint64_t>{1});
        }
        SUBCASE("other name, overlapping port via wildcard") {
            const auto out = r.apply(2, {svc("ssh", {"127.0.0.1:2220-2230"})});
            CHECK(out.results[0].status == ListenStatus::Conflict);
            CHECK(out.results[0].message.find("sftp") != std::string::npos);
            CHECK(out.actions.empty());
        }
        SUBCASE("IPv6 does not collide with IPv4") {
            const auto out = r.apply(2, {svc("ssh6", {"[::]:2222"})});
            CHECK(out.results[0].status == ListenStatus::Ok);
        }
    }

    TEST_CASE("registry: one refused entry refuses the whole service") {
        auto r = make();
        const auto out = r.apply(1, {svc("ftp", {"0.0.0.0:2021", "0.0.0.0:21"})});
        REQUIRE(out.results.size() == 2);
        CHECK(out.results[1].status == ListenStatus::NotAllowed);
        CHECK(out.results[0].status == ListenStatus::NotAllowed);
        CHECK(out.results[0].message.find("0.0.0.0:21") != std::string::npos);
        CHECK(out.actions.empty());
        CHECK(r.service("ftp") == nullptr);
    }

    TEST_CASE("registry: a listener that failed to bind drops its service") {
        auto r = make();
        (void)r.apply(1, {svc("ftp", {"0.0.0.0:3000-3002"})});
        const auto closes = r.drop_service("ftp");
        CHECK(count(closes, Kind::Close) == 3);
        CHECK(r.listeners().empty());
        CHECK(r.services_of(1).empty());
    }

    TEST_CASE("registry: overlap rules") {
        const auto hp = [](const char* s) { return *sp::HostPorts::parse(s, true); };
        CHECK(overlaps(hp("0.0.0.0:80"), hp("10.0.0.1:80")));
        CHECK(overlaps(hp("10.0.0.1:70-90"), hp("10.0.0.1:80")));
        CHECK_FALSE(overlaps(hp("10.0.0.1:80"), hp("10.0.0.2:80")));
        CHECK_FALSE(overlaps(hp("10.0.0.1:80"), hp("10.0.0.1:81")));
        CHECK(overlaps(hp("[::]:80"), hp("[::1]:80")));
    }

    TEST_CASE("registry: held on the last agent's departure, an orphan keeps its listeners") {
        auto r = make();
        (void)r.apply(1, {svc("ftp", {"0.0.0.0:2021", "0.0.0.0:30000-30001"})});
        CHECK(r.remove_agent(1, true).empty());
        CHECK(r.listeners().size() == 3);
        CHECK(r.orphans() == std::vector<std::string>{"ftp"});
        CHECK(r.agents_of("ftp").empty());
        // The agent is back with the same service: it joins, nothing moves.
        const auto back = r.apply(2, {svc("ftp", {"0.0.0.0:2021", "0.0.0.0:30000-30001"})});
        CHECK(back.actions.empty());
        CHECK(back.results.size() == 2);
        CHECK(back.results[0].status == ListenStatus::Ok);
        CHECK(r.agents_of("ftp") == std::vector<uint64_t>{2});
        CHECK(r.orphans().empty());
        CHECK(r.close_orphan("ftp").empty());  // not an orphan any more
    }

    TEST_CASE("registry: an orphan's grace ends with close_orphan") {
        auto r = make();
        (void)r.apply(1, {svc("web", {"0.0.0.0:8443"}), svc("ssh", {"0.0.0.0:2222"})});
        (void)r.apply(2, {svc("ssh", {"0.0.0.0:2222"})});
        (void)r.remove_agent(1, true);
        CHECK(r.orphans() == std::vector<std::string>{"web"});  // ssh still has agent 2
        const auto closes = r.close_orphan("web");
        CHECK(count(closes, Kind::Close) == 1);
        CHECK(r.listeners().size() == 1);
        CHECK(r.service("web") == nullptr);
    }

    TEST_CASE("registry: without hold the last agent's departure closes at once") {
        auto r = make();
        (void)r.apply(1, {svc("web", {"0.0.0.0:8443"})});
        CHECK(count(r.remove_agent(1), Kind::Close) == 1);
        CHECK(r.orphans().empty());
    }

    TEST_CASE("registry: an orphan yields to a changed or overlapping service") {
        auto r = make();
        (void)r.apply(1, {svc("web", {"0.0.0.0:8443"}), svc("old", {"0.0.0.0:9000"})});
        (void)r.remove_agent(1, true);
        // Same name, other port: the orphan closes, the new set opens.
        // Other name, overlapping port: the orphan closes, the new one opens.
        const auto out = r.apply(2, {svc("web", {"0.0.0.0:8444"}), svc("new", {"127.0.0.1:9000"})});
        CHECK(count(out.actions, Kind::Close) == 2);
        CHECK(count(out.actions, Kind::Open) == 2);
        for (const auto& res : out.results) {
            CHECK(res.status == ListenStatus::Ok);
        }
        CHECK(r.orphans().empty());
        CHECK(r.service("old") == nullptr);
    }

    TEST_CASE("registry: an orphan a narrowed allow_listen no longer permits closes") {
        bool wide = true;
        Registry r([&](const sp::HostPorts& hp) { return wide || hp.ports.first < 9000; });
        (void)r.apply(1, {svc("a", {"0.0.0.0:8443"}), svc("b", {"0.0.0.0:9443"})});
        (void)r.remove_agent(1, true);
        CHECK(r.close_disallowed_orphans().empty());
        wide = false;
        const auto closes = r.close_disallowed_orphans();
        REQUIRE(closes.size() == 1);
        CHECK(closes[0].service == "b");
        CHECK(r.orphans() == std::vector<std::string>{"a"});
    }
}
