// SPDX-License-Identifier: Apache-2.0
#include "ctl/format.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include <fmt/format.h>

namespace sp::ctl {

using admin::Json;

namespace {

struct Unit {
    std::string_view suffix;
    enum class Kind { Bytes, Seconds, Millis } kind;
};

// Longest first: "_seconds" before "_s".
constexpr std::array<Unit, 4> kUnits = {{
    {"_seconds", Unit::Kind::Seconds},
    {"_bytes", Unit::Kind::Bytes},
    {"_ms", Unit::Kind::Millis},
    {"_s", Unit::Kind::Seconds},
}};

const Unit* unit_of(std::string_view key) {
    for (const auto& u : kUnits) {
        if (key.size() > u.suffix.size() && key.ends_with(u.suffix)) {
            return &u;
        }
    }
    return nullptr;
}

bool is_scalar(const Json& v) {
    return !v.is_object() && !v.is_array();
}

bool is_table(const Json& v) {
    return v.is_array() &&
           std::all_of(v.begin(), v.end(), [](const Json& e) { return e.is_object(); }) &&
           !v.empty();
}

std::string plain(const Json& v) {
    if (v.is_string()) {
        return v.get<std::string>();
    }
    if (v.is_null()) {
        return "-";
    }
    if (v.is_boolean()) {
        return v.get<bool>() ? "yes" : "no";
    }
    return v.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// An object inside a list cell (an agent's backends): its first member's
// value, then the others as "label value" in parentheses.
std::string compact(const Json& obj) {
    std::string head;
    std::string rest;
    for (const auto& [k, v] : obj.items()) {
        const std::string text = is_scalar(v) ? format_value(k, v) : plain(v);
        if (head.empty()) {
            head = text;
        } else {
            rest += fmt::format("{}{} {}", rest.empty() ? "" : ", ", label(k, false), text);
        }
    }
    return rest.empty() ? head : fmt::format("{} ({})", head, rest);
}

void append_table(std::string& out, const Json& rows, size_t indent) {
    std::vector<std::string> keys;
    for (const auto& row : rows) {
        for (const auto& [k, v] : row.items()) {
            if (std::find(keys.begin(), keys.end(), k) == keys.end()) {
                keys.push_back(k);
            }
        }
    }
    std::vector<std::vector<std::string>> cells;
    std::vector<size_t> width(keys.size());
    std::vector<bool> numeric(keys.size(), true);
    cells.emplace_back();
    for (size_t c = 0; c < keys.size(); ++c) {
        cells[0].push_back(label(keys[c], true));
        width[c] = cells[0][c].size();
    }
    for (const auto& row : rows) {
        std::vector<std::string> line;
        for (size_t c = 0; c < keys.size(); ++c) {
            const auto it = row.find(keys[c]);
            const Json v = it == row.end() ? Json() : *it;
            if (!v.is_number() && !v.is_null()) {
                numeric[c] = false;
            }
            line.push_back(format_value(keys[c], v));
            width[c] = std::max(width[c], line.back().size());
        }
        cells.push_back(std::move(line));
    }
    for (const auto& line : cells) {
        std::string text(indent, ' ');
        for (size_t c = 0; c < line.size(); ++c) {
            const bool last = c + 1 == line.size();
            if (numeric[c]) {
                text += fmt::format("{:>{}}", line[c], width[c]);
            } else if (last) {
                text += line[c];
            } else {
                text += fmt::format("{:<{}}", line[c], width[c]);
            }
            if (!last) {
                text += "  ";
            }
        }
        while (!text.empty() && text.back() == ' ') {
            text.pop_back();
        }
        out += text;
        out += '\n';
    }
}

void append_object(std::string& out, const Json& obj, size_t indent) {
    size_t width = 0;
    for (const auto& [k, v] : obj.items()) {
        if (is_scalar(v) || (v.is_array() && !is_table(v))) {
            width = std::max(width, label(k, false).size() + 1);
        }
    }
    for (const auto& [k, v] : obj.items()) {
        const std::string name = label(k, false) + ":";
        if (is_scalar(v) || (v.is_array() && !is_table(v))) {
            out += fmt::format("{}{:<{}} {}\n", std::string(indent, ' '), name, width,
                               format_value(k, v));
        } else if (v.is_object()) {
            out += fmt::format("{}{}\n", std::string(indent, ' '), name);
            append_object(out, v, indent + 2);
        } else {
            out += fmt::format("{}{}\n", std::string(indent, ' '), name);
            append_table(out, v, indent + 2);
        }
    }
}

}  // namespace

std::string format_bytes(uint64_t bytes) {
    if (bytes < 1024) {
        return fmt::format("{} B", bytes);
    }
    constexpr std::array<std::string_view, 6> kPrefix = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double v = static_cast<double>(bytes) / 1024;
    size_t i = 0;
    while (v >= 1024 && i + 1 < kPrefix.size()) {
        v /= 1024;
        ++i;
    }
    // Three significant digits, as ss and wg show do.
    if (v < 10) {
        return fmt::format("{:.2f} {}", v, kPrefix[i]);
    }
    if (v < 100) {
        return fmt::format("{:.1f} {}", v, kPrefix[i]);
    }
    return fmt::format("{:.0f} {}", v, kPrefix[i]);
}

std::string format_seconds(double seconds) {
    if (!std::isfinite(seconds) || seconds < 0) {
        return "-";
    }
    auto s = static_cast<uint64_t>(seconds);
    if (s < 60) {
        return fmt::format("{}s", s);
    }
    if (s < 3600) {
        return fmt::format("{}m{:02}s", s / 60, s % 60);
    }
    if (s < 86400) {
        return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
    }
    return fmt::format("{}d{:02}h", s / 86400, (s % 86400) / 3600);
}

std::string format_millis(double ms) {
    if (!std::isfinite(ms) || ms < 0) {
        return "-";
    }
    if (ms < 10) {
        return fmt::format("{:.1f} ms", ms);
    }
    if (ms < 1000) {
        return fmt::format("{:.0f} ms", ms);
    }
    return fmt::format("{:.2f} s", ms / 1000);
}

std::string label(std::string_view key, bool upper) {
    if (const Unit* u = unit_of(key)) {
        key.remove_suffix(u->suffix.size());
    }
    std::string out(key);
    for (char& c : out) {
        if (c == '_') {
            c = upper ? '_' : ' ';
        } else if (upper && c >= 'a' && c <= 'z') {
            c = static_cast<char>(c - 'a' + 'A');
        }
    }
    return out;
}

std::string format_value(std::string_view key, const Json& value) {
    if (value.is_array()) {
        std::string out;
        for (const auto& e : value) {
            if (!out.empty()) {
                out += ",";
            }
            out += is_scalar(e) ? format_value(key, e) : e.is_object() ? compact(e) : plain(e);
        }
        return out.empty() ? "-" : out;
    }
    if (value.is_object()) {
        return plain(value);
    }
    const Unit* u = unit_of(key);
    if (u == nullptr || !value.is_number()) {
        return plain(value);
    }
    switch (u->kind) {
        case Unit::Kind::Bytes:
            if (value.is_number_unsigned()) {
                return format_bytes(value.get<uint64_t>());
            }
            return value.get<double>() >= 0
                       ? format_bytes(static_cast<uint64_t>(value.get<double>()))
                       : plain(value);
        case Unit::Kind::Seconds:
            return format_seconds(value.get<double>());
        case Unit::Kind::Millis:
            return format_millis(value.get<double>());
    }
    return plain(value);
}

std::string format_document(const Json& data) {
    if (!data.is_object()) {
        if (is_table(data)) {
            std::string out;
            append_table(out, data, 0);
            return out;
        }
        return plain(data) + "\n";
    }
    if (data.empty()) {
        return "OK\n";
    }
    // A document that is one list ({"sessions": [...]}) prints as the bare
    // table, as ss does; an empty one says so.
    if (data.size() == 1 && data.begin().value().is_array()) {
        const auto& rows = data.begin().value();
        if (rows.empty()) {
            return fmt::format("no {}\n", label(data.begin().key(), false));
        }
        if (is_table(rows)) {
            std::string out;
            append_table(out, rows, 0);
            return out;
        }
    }
    std::string out;
    append_object(out, data, 0);
    return out;
}

}  // namespace sp::ctl
