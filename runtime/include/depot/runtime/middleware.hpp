// The middleware pipeline: an ordered chain of steps around each handler. A middleware has a
// name (what describe shows), a position (lower runs outer, i.e. first) and one of three
// shapes: around (calls next() to go on), before (runs first, throws to refuse) and after
// (runs once the handler returned). It is declared for the application, a queue or a handler:
//
//     app.use(depot::tracing());
//     app.queue("bank.debit-account").use(depot::rate_limit_per_key(20, 1s));
//     app.handle<debit_account>(debit).use(depot::before("audit", audit).at(stage::user - 1));
//
// The chain of a handler merges the three scopes by position; at one position the
// application's come first, then the queue's, then the handler's, each in the order declared.
// Middleware runs inside the handling transaction: what it writes through ctx.db() commits or
// rolls back with the handler, and a throw is a handler failure decided by the error policy.
// Must never block the worker on anything but the database it shares with the handler.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "depot/runtime/context.hpp"
#include "depot/runtime/envelope.hpp"
#include "depot/runtime/error.hpp"
#include "depot/runtime/log.hpp"

namespace depot {

/// The next step of the handling pipeline.
using next_step = std::function<void()>;
/// Wraps the rest of the chain: call `next()` to go on, throw to fail, return without calling
/// it to complete the envelope unhandled.
using around_call = std::function<void(const envelope&, context&, const next_step& next)>;
/// Runs before the rest of the chain; throws to refuse the envelope.
using before_call = std::function<void(const envelope&, context&)>;
/// Runs after the rest of the chain returned (not when it threw).
using after_call = std::function<void(const envelope&, context&)>;

/// Where the built-ins sit. A user's middleware picks any position, between or around them
/// (`stage::validation + 1` runs just inside validation).
namespace stage {
inline constexpr int tracing = 100;       ///< outermost: the span covers everything
inline constexpr int logging = 200;       ///< sees the outcome of all that follows
inline constexpr int authorization = 300; ///< refuses before anything is checked or done
inline constexpr int validation = 400;    ///< the validators of the message type
inline constexpr int rate_limit = 500;    ///< only valid, authorized envelopes take a token
inline constexpr int user = 1000;         ///< the default of a user's middleware
} // namespace stage

/// One step of the chain.
struct middleware {
  std::string name; ///< shown by describe
  int position = stage::user;
  around_call call;

  /// The same middleware at `p`.
  [[nodiscard]] middleware at(int p) const {
    auto m = *this;
    m.position = p;
    return m;
  }
};

/// A middleware of shape around.
[[nodiscard]] middleware around(std::string name, around_call f);
/// A middleware of shape before.
[[nodiscard]] middleware before(std::string name, before_call f);
/// A middleware of shape after.
[[nodiscard]] middleware after(std::string name, after_call f);

// -- authorization ----------------------------------------------------------------------------

/// The answer of an authorization check.
struct access {
  bool granted = false;
  std::string reason; ///< why it was denied

  [[nodiscard]] static access allow() { return {true, {}}; }
  [[nodiscard]] static access deny(std::string reason) { return {false, std::move(reason)}; }
};

/// Thrown when an authorization check denies an envelope: dead-lettered at once with the reason,
/// never retried. Code errc::unauthorized.
class not_authorized : public error {
public:
  explicit not_authorized(const std::string& what) : error(errc::unauthorized, what) {}
};

/// Checks each envelope, typically its headers (header::principal), before it is handled.
[[nodiscard]] middleware authorization(std::function<access(const envelope&)> check);

// -- structured logging -----------------------------------------------------------------------

/// Logs one line per handling at `level`: message type, envelope id, queue, attempt, duration
/// and outcome (handled, deferred, failed with the exception). A failure is logged at warning.
[[nodiscard]] middleware handling_log(log_level level = log_level::info);

// -- tracing ----------------------------------------------------------------------------------

/// A W3C trace context (traceparent "00-<trace id>-<parent id>-<flags>").
struct trace_context {
  std::string trace_id; ///< 32 lowercase hex digits, not all zero
  std::string span_id;  ///< 16 lowercase hex digits, not all zero
  std::string flags;    ///< 2 hex digits

  /// The traceparent header value.
  [[nodiscard]] std::string traceparent() const;
  /// The context in `header`, or none when it is not a valid version-00 traceparent.
  [[nodiscard]] static std::optional<trace_context> parse(std::string_view header);
};

/// Continues the trace of the envelope's traceparent (or starts one when it has none or an
/// invalid one), gives the handling a new span id, propagates the handling's traceparent to
/// every envelope the handler sends, and logs the span at `level` when it ends (trace and span
/// ids, parent, message type, queue, envelope id, duration, status).
[[nodiscard]] middleware tracing(log_level level = log_level::info);

// -- rate limiting ----------------------------------------------------------------------------

/// Thrown by middleware to defer an envelope: it goes back to its queue with execution time
/// `until`, its attempts unchanged. Not a failure: no error policy, no breaker, no dead letter.
/// Not derived from std::exception, so a handler's catch of std::exception lets it pass.
struct deferral {
  micros until = 0;
  std::string reason;
  std::map<std::string, std::string> headers{}; ///< set on the envelope as it goes back

  /// Sets `headers` on the deferred envelope.
  void mark(envelope& e) const {
    for (const auto& [name, value] : headers)
      e.headers.insert_or_assign(name, value);
  }
};

/// At most `n` handlings per `per` of each queue it applies to, on each node (a token bucket of
/// n tokens: bursts of n, then one every per/n). The excess is deferred to the time its token is
/// free, never failed or dropped.
[[nodiscard]] middleware rate_limit(int n, std::chrono::milliseconds per);
/// The same limit for each message key of a queue (envelopes without a key share one bucket).
[[nodiscard]] middleware rate_limit_per_key(int n, std::chrono::milliseconds per);

} // namespace depot
