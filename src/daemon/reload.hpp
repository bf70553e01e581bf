// SPDX-License-Identifier: Apache-2.0
// What a reload could not change. Each daemon lists the keys of its file
// that only a restart applies and that the new file changed; they keep
// their running values, the rest of the file applies, and the admin is told
// which keys and why (reload-failed REASON=restart-only, and the reply to
// `sallyportctl reload`) - never a silent ignore.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/result.hpp"

namespace sp::daemon {

struct KeptKey {
    std::string key;  // dotted path, "relay.threads"
    std::string why;  // "the worker threads are created at start"
};

/// Logs reload-failed naming every kept key, and returns the error for the
/// reload's caller; nullopt (and nothing logged) when `kept` is empty.
[[nodiscard]] std::optional<Error> report_kept_keys(const std::vector<KeptKey>& kept);

}  // namespace sp::daemon
