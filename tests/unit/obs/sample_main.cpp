// SPDX-License-Identifier: Apache-2.0
// Prints the sample set's exposition, for `promtool check metrics`.
#include <cstdio>

#include "obs/prometheus.hpp"
#include "sample.hpp"

int main() {
    std::fputs(sp::obs::render(sp::obs::test::sample_set()).c_str(), stdout);
    return 0;
}
