// Diagnostics to stderr with a level filter read once from DEPOT_LOG.
#include "depot/runtime/log.hpp"

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string_view>

namespace depot {

namespace {

log_level threshold() {
  static const log_level level = [] {
    const char* v = std::getenv("DEPOT_LOG");
    auto s = std::string_view{v ? v : ""};
    if (s == "debug")
      return log_level::debug;
    if (s == "warning")
      return log_level::warning;
    if (s == "error")
      return log_level::error;
    return log_level::info;
  }();
  return level;
}

const char* name(log_level level) {
  switch (level) {
    case log_level::debug: return "debug";
    case log_level::info: return "info";
    case log_level::warning: return "warning";
    case log_level::error: return "error";
  }
  return "info";
}

} // namespace

bool log_enabled(log_level level) {
  return level >= threshold();
}

std::string one_line(std::string_view text) {
  std::string result;
  for (char c : text) {
    auto blank = c == '\n' || c == '\r' || c == '\t' || c == ' ';
    if (blank && (result.empty() || result.back() == ' '))
      continue;
    result += blank ? ' ' : c;
  }
  while (!result.empty() && result.back() == ' ')
    result.pop_back();
  return result;
}

void log_line(log_level level, const std::string& text) {
  auto line = one_line(text);
  static std::mutex m;
  std::lock_guard guard{m};
  std::fprintf(stderr, "[depot] %s: %s\n", name(level), line.c_str());
}

} // namespace depot
