// Envelope helpers: wall-clock micros and time-ordered ids.
#include "depot/runtime/envelope.hpp"

#include <cctype>

#include <array>
#include <ctime>
#include <random>

#include <fmt/format.h>

namespace depot {

micros now_micros() {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

std::string iso8601(micros at) {
  auto seconds = static_cast<std::time_t>(at / 1'000'000);
  auto fraction = at % 1'000'000;
  if (fraction < 0) { // before the epoch: the second below, plus a positive fraction
    --seconds;
    fraction += 1'000'000;
  }
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", utc.tm_year + 1900,
                     utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, fraction);
}

bool is_uuid(std::string_view s) {
  if (s.size() != 36)
    return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !std::isxdigit(static_cast<unsigned char>(s[i])))
      return false;
  }
  return true;
}

std::string new_envelope_id() {
  // RFC 9562 version 7: 48 bits of milliseconds, then random bits. Ids of envelopes sent
  // close together sort close together, which keeps the primary-key index compact.
  thread_local std::mt19937_64 random{std::random_device{}()};
  auto ms = static_cast<std::uint64_t>(now_micros() / 1000);
  auto r1 = random();
  auto r2 = random();
  auto hi = (ms << 16) | 0x7000 | (r1 & 0x0fff);
  auto lo = (r2 & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
  return fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", hi >> 32, (hi >> 16) & 0xffff,
                     hi & 0xffff, lo >> 48, lo & 0xffffffffffffULL);
}

const char* to_string(envelope_status status) {
  switch (status) {
    case envelope_status::incoming: return "incoming";
    case envelope_status::scheduled: return "scheduled";
  }
  return "incoming";
}

const std::string& envelope::header_value(const std::string& name) const {
  static const std::string none;
  auto i = headers.find(name);
  return i == headers.end() ? none : i->second;
}

} // namespace depot
