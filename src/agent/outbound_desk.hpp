// SPDX-License-Identifier: Apache-2.0
// The control thread's book of forward-proxy requests: which relay a new
// request goes to (among Ready links, the one with the fewest outbound
// sessions, open or asked for), the request_id it travels under, and who is
// waiting for the answer. Pure bookkeeping: no sockets, no clock; the
// caller sends the frames and posts the answers to the workers.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "agent/link_id.hpp"

namespace sp::agent {

/// A worker's handle on one of its requests.
struct OutboundTicket {
    unsigned shard = 0;
    uint64_t id = 0;  // unique on that shard
    friend bool operator==(const OutboundTicket&, const OutboundTicket&) = default;
    friend bool operator<(const OutboundTicket& a, const OutboundTicket& b) noexcept {
        return a.shard != b.shard ? a.shard < b.shard : a.id < b.id;
    }
};

class OutboundDesk final {
public:
    /// Open requests at once, over all links: a relay that never answers
    /// cannot make the table grow without bound.
    static constexpr size_t kMaxPending = 65536;

    /// The link among `ready` with the fewest sessions (pending requests
    /// plus sessions the relay accepted and that have not ended); ties go
    /// to the first in `ready`. nullopt when `ready` is empty.
    [[nodiscard]] std::optional<LinkId> choose(const std::vector<LinkId>& ready) const;

    /// Enters a request sent on `link`; returns its request_id (never 0),
    /// or nullopt when kMaxPending requests are open already.
    [[nodiscard]] std::optional<uint32_t> open(OutboundTicket t, LinkId link);

    /// The relay of `link` answered `request_id`: the ticket waiting for
    /// it, or nullopt for an id that is not open on that link (a late or
    /// forged answer: dropped). `ok`: the relay accepted; the session then
    /// counts for the link until ended().
    [[nodiscard]] std::optional<OutboundTicket> answer(LinkId link, uint32_t request_id, bool ok);

    /// The worker gave up on its request (client gone, timeout): the answer,
    /// when it comes, is dropped. Its count stays until then.
    void cancel(OutboundTicket t);

    /// A session the relay accepted ended (or failed after the answer).
    void ended(LinkId link);

    /// `link` left Ready: every request still open on it, removed.
    [[nodiscard]] std::vector<OutboundTicket> link_down(LinkId link);

    [[nodiscard]] size_t pending() const noexcept { return pending_.size(); }
    /// Pending plus accepted sessions of `link`.
    [[nodiscard]] uint64_t load(LinkId link) const;

private:
    struct Pending {
        OutboundTicket ticket;
        LinkId link{};
        bool cancelled = false;
    };
    std::map<uint32_t, Pending> pending_;
    std::map<OutboundTicket, uint32_t> by_ticket_;
    std::map<LinkId, uint64_t> load_;
    uint32_t next_ = 1;
};

}  // namespace sp::agent
