// SPDX-License-Identifier: Apache-2.0
#include "json.hpp"

#include <fmt/format.h>

namespace sp::bench {

std::string json_str(std::string_view s) {
    std::string out = "\"";
    for (const char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
        } else {
            out += c;
        }
    }
    return out + "\"";
}

std::string hist_json(const Histogram& h) {
    std::string cdf;
    for (const auto& [v, f] : h.cdf()) {
        cdf += fmt::format("{}[{:.3f},{:.6f}]", cdf.empty() ? "" : ",",
                           static_cast<double>(v) / 1e3, f);
    }
    return fmt::format(
        "\"latency_us\":{{\"count\":{},\"min\":{:.3f},\"mean\":{:.3f},\"p50\":{:.3f},"
        "\"p90\":{:.3f},\"p99\":{:.3f},\"p999\":{:.3f},\"max\":{:.3f}}},\"cdf_us\":[{}]",
        h.count(), static_cast<double>(h.min()) / 1e3, h.mean() / 1e3,
        static_cast<double>(h.quantile(0.5)) / 1e3, static_cast<double>(h.quantile(0.9)) / 1e3,
        static_cast<double>(h.quantile(0.99)) / 1e3, static_cast<double>(h.quantile(0.999)) / 1e3,
        static_cast<double>(h.max()) / 1e3, cdf);
}

}  // namespace sp::bench
