// depot's diagnostics: one line per event on stderr, prefixed with the level. DEPOT_LOG=debug
// shows debug lines; DEPOT_LOG=warning hides info lines.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

namespace depot {

enum class log_level { debug, info, warning, error };

/// True when lines of `level` are printed.
[[nodiscard]] bool log_enabled(log_level level);
/// `text` as one line: line breaks, tabs and runs of blanks (libpq's multi-line messages)
/// become single spaces.
[[nodiscard]] std::string one_line(std::string_view text);
/// Prints `text` as one line (thread-safe).
void log_line(log_level level, const std::string& text);

template <class... Ts>
void log(log_level level, fmt::format_string<Ts...> format, Ts&&... args) {
  if (log_enabled(level))
    log_line(level, fmt::format(format, std::forward<Ts>(args)...));
}

} // namespace depot
