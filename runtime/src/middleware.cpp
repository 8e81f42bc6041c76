// The middleware shapes and the built-ins: authorization, structured logging, tracing and rate
// limiting. Runs on the worker that handles the envelope, inside its transaction.
#include "depot/runtime/middleware.hpp"

#include <algorithm>
#include <charconv>
#include <mutex>
#include <random>
#include <unordered_map>

#include <fmt/format.h>

#include "depot/runtime/failure_policy.hpp"

namespace depot {

middleware around(std::string name, around_call f) {
  return {std::move(name), stage::user, std::move(f)};
}

middleware before(std::string name, before_call f) {
  return {std::move(name), stage::user,
          [f = std::move(f)](const envelope& e, context& ctx, const next_step& next) {
            f(e, ctx);
            next();
          }};
}

middleware after(std::string name, after_call f) {
  return {std::move(name), stage::user,
          [f = std::move(f)](const envelope& e, context& ctx, const next_step& next) {
            next();
            f(e, ctx);
          }};
}

middleware authorization(std::function<access(const envelope&)> check) {
  return before("authorization",
                [check = std::move(check)](const envelope& e, context&) {
                  auto answer = check(e);
                  if (!answer.granted)
                    throw not_authorized{
                      fmt::format("{} {} refused: {}", e.message_type, e.id,
                                  answer.reason.empty() ? "access denied" : answer.reason)};
                })
    .at(stage::authorization);
}

namespace {

long long micros_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
                                                               start)
    .count();
}

} // namespace

middleware handling_log(log_level level) {
  return around("logging",
                [level](const envelope& e, context&, const next_step& next) {
                  auto start = std::chrono::steady_clock::now();
                  auto line = [&](log_level l, std::string_view outcome) {
                    log(l, "handling type={} id={} queue={} attempt={} duration_us={} outcome={}",
                        e.message_type, e.id, e.queue, e.attempts + 1, micros_since(start),
                        outcome);
                  };
                  try {
                    next();
                  } catch (const deferral& d) {
                    line(level, fmt::format("deferred until={}", iso8601(d.until)));
                    throw;
                  } catch (...) {
                    line(log_level::warning,
                         fmt::format("failed error=\"{}\"", describe(std::current_exception())));
                    throw;
                  }
                  line(level, "handled");
                })
    .at(stage::logging);
}

// -- tracing ----------------------------------------------------------------------------------

namespace {

bool lower_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool all_zero(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == '0'; });
}

std::string random_hex(std::size_t bytes) {
  thread_local std::mt19937_64 random{std::random_device{}()};
  std::string out;
  while (out.size() < bytes * 2)
    out += fmt::format("{:016x}", random());
  out.resize(bytes * 2);
  if (all_zero(out)) // all zero is invalid: astronomically rare, but cheap to exclude
    out.back() = '1';
  return out;
}

} // namespace

std::string trace_context::traceparent() const {
  return fmt::format("00-{}-{}-{}", trace_id, span_id, flags);
}

std::optional<trace_context> trace_context::parse(std::string_view h) {
  // version 00: 2 + 1 + 32 + 1 + 16 + 1 + 2 characters
  if (h.size() != 55 || h.substr(0, 3) != "00-" || h[35] != '-' || h[52] != '-')
    return std::nullopt;
  trace_context t{std::string{h.substr(3, 32)}, std::string{h.substr(36, 16)},
                  std::string{h.substr(53, 2)}};
  if (!lower_hex(t.trace_id) || !lower_hex(t.span_id) || !lower_hex(t.flags) ||
      all_zero(t.trace_id) || all_zero(t.span_id))
    return std::nullopt;
  return t;
}

middleware tracing(log_level level) {
  return around("tracing",
                [level](const envelope& e, context& ctx, const next_step& next) {
                  auto parent = trace_context::parse(e.header_value(header::traceparent));
                  trace_context span{parent ? parent->trace_id : random_hex(16), random_hex(8),
                                     parent ? parent->flags : "01"};
                  ctx.propagate(header::traceparent, span.traceparent());
                  auto start = std::chrono::steady_clock::now();
                  auto record = [&](std::string_view status) {
                    log(level,
                        "span trace_id={} span_id={} parent_span_id={} name={} queue={} "
                        "envelope_id={} duration_us={} status={}",
                        span.trace_id, span.span_id, parent ? parent->span_id : "none",
                        e.message_type, e.queue, e.id, micros_since(start), status);
                  };
                  try {
                    next();
                  } catch (const deferral&) {
                    record("deferred");
                    throw;
                  } catch (...) {
                    record("error");
                    throw;
                  }
                  record("ok");
                })
    .at(stage::tracing);
}

// -- rate limiting ----------------------------------------------------------------------------

namespace {

/// The header a deferred envelope carries: "<attempts>/<slot>", the time its token was reserved
/// for. It is admitted then without taking another token; a later attempt takes a new one.
constexpr const char* rate_slot_header = "depot-rate-slot";

/// Token buckets by the generic cell rate algorithm: per bucket, the theoretical arrival time
/// of the next handling. Each handling moves it on by one interval; a handling that would come
/// more than the burst tolerance early is deferred to its slot, which it reserves, so a backlog
/// is spread at the rate and each envelope is deferred once.
class token_buckets {
public:
  token_buckets(int n, std::chrono::milliseconds per, bool per_key)
    : interval_(
        std::max<micros>(1, std::chrono::duration_cast<std::chrono::microseconds>(per).count() / n))
    , tolerance_(std::chrono::duration_cast<std::chrono::microseconds>(per).count() - interval_)
    , per_key_(per_key) {}

  /// 0 when `e` may be handled now, else the time it is deferred to.
  micros admit(const envelope& e, micros now) {
    if (holds_its_slot(e, now))
      return 0;
    auto bucket = per_key_ ? e.queue + '\n' + e.key : e.queue;
    std::lock_guard lock{mutex_};
    if (next_.size() > 4096) // forget idle buckets
      std::erase_if(next_, [now](const auto& b) { return b.second < now; });
    auto& next = next_.try_emplace(bucket, now).first->second;
    auto arrival = std::max(next, now);
    next = arrival + interval_;
    return arrival - now <= tolerance_ ? 0 : arrival - tolerance_;
  }

private:
  // Came back at the slot it reserved, and not much later: promotion of scheduled envelopes lags
  // by up to heartbeat-interval, a busy queue by its backlog; a reservation older than
  // max(per, 30 s) is stale (an outage, a node down) and takes a token like any other envelope.
  bool holds_its_slot(const envelope& e, micros now) const {
    const auto& h = e.header_value(rate_slot_header);
    auto slash = h.find('/');
    if (slash == std::string::npos)
      return false;
    int attempts = -1;
    micros slot = 0;
    std::from_chars(h.data(), h.data() + slash, attempts);
    std::from_chars(h.data() + slash + 1, h.data() + h.size(), slot);
    constexpr micros stale_after = 30'000'000;
    return attempts == e.attempts && now + 1'000 >= slot &&
           now <= slot + std::max(tolerance_ + interval_, stale_after);
  }

  micros interval_;
  micros tolerance_;
  bool per_key_;
  std::mutex mutex_; // shared by the workers of every queue it applies to
  std::unordered_map<std::string, micros> next_;
};

middleware limit(int n, std::chrono::milliseconds per, bool per_key) {
  if (n < 1 || per.count() < 1)
    throw std::invalid_argument{"a rate limit takes at least 1 handling per at least 1 ms"};
  auto buckets = std::make_shared<token_buckets>(n, per, per_key);
  auto name = fmt::format("rate limit {} per {}ms{}", n, per.count(), per_key ? " per key" : "");
  return around(std::move(name),
                [buckets, name](const envelope& e, context&, const next_step& next) {
                  auto until = buckets->admit(e, now_micros());
                  if (until == 0)
                    return next();
                  throw deferral{
                    until, name, {{rate_slot_header, fmt::format("{}/{}", e.attempts, until)}}};
                })
    .at(stage::rate_limit);
}

} // namespace

middleware rate_limit(int n, std::chrono::milliseconds per) {
  return limit(n, per, false);
}

middleware rate_limit_per_key(int n, std::chrono::milliseconds per) {
  return limit(n, per, true);
}

} // namespace depot
