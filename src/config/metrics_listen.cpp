// SPDX-License-Identifier: Apache-2.0
#include "config/metrics_listen.hpp"

namespace sp::config::detail {

Result<void> read_metrics_listen(const TableReader& r, std::optional<SocketAddress>& ret_addr) {
    auto item = r.string_item("metrics_listen");
    if (!item) {
        return Unexpected(item.error());
    }
    if (!*item || (*item)->value.empty()) {
        return {};
    }
    auto addr = SocketAddress::parse((*item)->value);
    if (!addr) {
        return relocate(r, **item, std::move(addr.error()));
    }
    ret_addr = *addr;
    return {};
}

}  // namespace sp::config::detail
