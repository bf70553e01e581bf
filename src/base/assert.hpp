// SPDX-License-Identifier: Apache-2.0
// Three tiers of invariant checks (STYLE section 3.4). None of them may guard
// anything the network or a config file can cause: those are errors, not bugs.
#pragma once

namespace sp::detail {
[[noreturn]] void check_failed(const char* expr, const char* file, int line) noexcept;
void bug_hit(const char* what, const char* file, int line) noexcept;
}  // namespace sp::detail

/// Debug-only local invariant.
#ifdef NDEBUG
#define SP_ASSERT(expr) ((void)0)
#else
#define SP_ASSERT(expr) ((expr) ? (void)0 : ::sp::detail::check_failed(#expr, __FILE__, __LINE__))
#endif

/// Always fatal: continuing would lose or corrupt bytes.
#define SP_CHECK(expr) ((expr) ? (void)0 : ::sp::detail::check_failed(#expr, __FILE__, __LINE__))

/// A bug we can survive: aborts in debug builds; in release builds prints one
/// line to stderr and returns, and the caller recovers (ends that one
/// session, stops that one listener) and counts it where its owner keeps
/// counters (io: WorkerStats::bugs), so status can report it per worker.
#define SP_BUG(what) ::sp::detail::bug_hit(what, __FILE__, __LINE__)
