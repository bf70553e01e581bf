// SPDX-License-Identifier: Apache-2.0
// Data-channel tokens: where they come from and how they are compared. Kept
// apart from the pure codec in frame.hpp because it reads the kernel RNG.
#pragma once

#include "base/result.hpp"
#include "control/frame.hpp"

namespace sp::control {

/// 256 bits from getrandom(2). Blocks only until the kernel RNG is seeded
/// at boot; fails (ENOSYS, EFAULT) only when the kernel cannot supply them.
[[nodiscard]] Result<Token> random_token();

/// Constant-time equality, so comparing a presented token leaks nothing
/// about where it first differs from an issued one.
[[nodiscard]] bool token_equal(const Token& a, const Token& b) noexcept;

}  // namespace sp::control
