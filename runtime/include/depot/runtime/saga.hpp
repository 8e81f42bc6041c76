// Sagas: long-running processes written as a state struct plus handlers. Each step loads the
// saga's state row, runs its handler, and saves the state (checking the version it loaded) with
// the messages it sent and the completion of its envelope, in one transaction. Steps record
// their compensations; on failure, cancel or timeout the saga runs them in reverse order, each
// as a durable envelope. Timeouts are durable scheduled envelopes.
//
//     struct transfer { std::string transfer_id, from, to; std::int64_t amount = 0; };
//     DEPOT_MESSAGE(transfer, "transfer.state", transfer_id, from, to, amount)
//
//     app.saga<transfer>("transfer")
//       .starts<start_transfer>([](const start_transfer& m, transfer& s, auto& ctx) {
//         ...  // reserve the amount on the source
//         ctx.compensate_with(release_reservation{m.transfer_id});
//         ctx.send(credit_target{m.transfer_id});
//       })
//       .handles<credit_target>(...)         // throws: its error policy, then compensation
//       .handles<release_reservation>(...)   // a compensation run by the saga itself
//       .deadline(1min);                     // not done by then: compensated
//
// The saga id of a message is its message key (DEPOT_MESSAGE_KEY): every message a saga handles
// declares one, so the messages of one saga are handled one at a time, in order, on every node.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "depot/runtime/context.hpp"
#include "depot/runtime/message.hpp"
#include "depot/runtime/routing.hpp"
#include "depot/runtime/saga_definition.hpp"

namespace depot {

/// Where a saga stands.
enum class saga_status {
  running,      ///< started, moving on step by step
  completed,    ///< a step completed it
  compensating, ///< running its compensations, last recorded first
  compensated,  ///< every compensation ran
  stuck,        ///< a compensation failed for good (dead letter): replaying it resumes
};

[[nodiscard]] const char* to_string(saga_status s);
/// The status named `text`, or nullopt.
[[nodiscard]] std::optional<saga_status> saga_status_from(std::string_view text);

/// A compensation a step recorded: the message sent when the saga compensates.
struct saga_compensation {
  std::string type;
  std::string body;
  std::string key;
  std::string step; ///< the message type of the step that recorded it
};
DEPOT_MESSAGE(saga_compensation, "depot.saga-compensation", type, body, key, step)

/// A timeout the saga waits for: a scheduled envelope of the saga.
struct saga_timeout {
  std::string envelope_id;
  std::string type;
  std::int64_t at = 0; ///< due, microseconds since the epoch
  /// Message types whose handling ends the timeout (the step it guards); none: it lasts until
  /// the saga completes or compensates, or a handler cancels it.
  std::vector<std::string> until;
};
DEPOT_MESSAGE(saga_timeout, "depot.saga-timeout", envelope_id, type, at, until)

/// A handled step, for `sagas show`.
struct saga_step {
  std::string type;
  std::string envelope_id;
  std::string kind; ///< start, step, timeout, compensation, cancel, failed, ignored
  std::int64_t at = 0;
  std::string note; ///< why it failed or was ignored
};
DEPOT_MESSAGE(saga_step, "depot.saga-step", type, envelope_id, kind, at, note)

/// One saga as stored.
struct saga_row {
  std::string id;
  std::string state; ///< the state struct's JSON
  std::int64_t version = 0;
  saga_status status = saga_status::running;
  std::string reason;                           ///< why it compensates or is stuck
  std::vector<saga_compensation> compensations; ///< recorded so far; the last runs first
  std::vector<saga_timeout> timeouts;           ///< pending
  std::vector<saga_step> steps;                 ///< handled, oldest first
  micros created = 0;
  micros updated = 0;
  micros keep_until = 0; ///< a finished saga is removed after this; 0 = kept
};

/// The body of a saga's internal messages (deadline, cancel).
struct saga_signal {
  std::string saga_id;
  std::string reason;
};
DEPOT_MESSAGE(saga_signal, "depot.saga-signal", saga_id, reason)

/// A saga handler's context: the handling transaction (send, publish, db) plus the saga.
class saga_context : public context {
public:
  saga_context(const context& base, const saga_definition& saga, saga_row& row);

  [[nodiscard]] const std::string& saga_id() const { return row_.id; }
  [[nodiscard]] saga_status status() const { return row_.status; }

  /// Records the compensation of this step: `m` is sent (durably) when the saga compensates,
  /// once the compensations recorded later were handled. A message the saga handles itself runs
  /// as a step of the saga; any other is handled where it is routed, and the saga learns in that
  /// handling's transaction that it is done; one routed to a transport (Kafka) is done once it
  /// is in the outbox. One that fails for good is a dead letter and the saga is stuck until it
  /// is replayed.
  template <message T>
  void compensate_with(const T& m) {
    record_compensation(type_name_of<T>(), to_json(m), key_of(m));
  }
  /// Marks the saga completed once this step commits: no compensation, timeouts cancelled.
  void complete() { complete_ = true; }
  /// Starts compensation once this step commits (its compensations included).
  void compensate(std::string reason) { compensate_ = std::move(reason); }

  /// Schedules `m`, a message the saga handles, after `after`; it is cancelled when the saga
  /// handles a message of one of Until (the step it guards), completes or compensates. A new
  /// timeout of the same type replaces the pending one. Returns its envelope id.
  template <message... Until, message T, class Rep, class Period>
  std::string request_timeout(const T& m, std::chrono::duration<Rep, Period> after) {
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(after).count();
    return add_timeout(type_name_of<T>(), to_json(m), key_of(m), us,
                       {std::string{type_name_of<Until>()}...});
  }
  /// Cancels the pending timeout of type T, if any.
  template <message T>
  void cancel_timeout() {
    cancel_timeout(type_name_of<T>());
  }
  void cancel_timeout(std::string_view type);

  // -- used by the saga host ------------------------------------------------------------------
  [[nodiscard]] bool completing() const { return complete_; }
  [[nodiscard]] const std::optional<std::string>& compensation_asked() const { return compensate_; }
  [[nodiscard]] std::vector<saga_compensation>& recorded() { return compensations_; }

private:
  /// Throws no_route when nothing would handle the compensation: better the step fails now
  /// than the saga cannot compensate later.
  void record_compensation(std::string_view type, std::string body, std::string key);
  std::string add_timeout(std::string_view type, std::string body, std::string key, micros after,
                          std::vector<std::string> until);

  const saga_definition& saga_;
  saga_row& row_;
  std::vector<saga_compensation> compensations_;
  bool complete_ = false;
  std::optional<std::string> compensate_;
};

namespace detail {

/// Runs one message of a saga: loads (or starts) the saga, runs `call` on its state, applies
/// what the step asked for and saves it.
void run_saga_step(const saga_definition& saga, const std::string& saga_id, const envelope& e,
                   context& ctx, const saga_call& call);
/// After `e` was handled on a queue (running saga `queue_saga`, or null): when `e` is a
/// compensation of another saga, tells that saga it is done, in `ctx`'s transaction.
void report_compensation(const saga_definition* queue_saga, const envelope& e, context& ctx);
/// What a saga does when the handling of `e` on a queue (running `queue_saga`, or null) failed
/// for good: a step of a running saga starts its compensation (true: no dead letter); a
/// compensation makes its saga stuck (false: dead-lettered, and a replay resumes the saga).
bool saga_step_failed(const saga_definition* queue_saga, const envelope& e,
                      const std::string& reason, context& ctx);

template <class F, class M, class S>
void call_saga_handler(F& f, const M& m, std::string& state, saga_context& ctx) {
  auto s = state.empty() ? S{} : from_json<S>(state); // empty: a saga starting
  f(m, s, ctx);
  state = to_json(s);
}

} // namespace detail

/// Declares a saga type: `app.saga<State>("name").starts<M>(f).handles<N>(g)`.
template <message S>
class saga_builder {
public:
  saga_builder(routing& r, saga_definition& d) : routing_(r), saga_(d) {}

  /// M starts a saga with a default State, then runs `f(const M&, State&, saga_context&)`. A
  /// start for a saga that exists is ignored: a redelivered start is harmless.
  template <keyed_message M, class F>
  saga_builder& starts(F f) {
    saga_.starts.emplace(type_name_of<M>());
    return handles<M>(std::move(f));
  }
  /// M moves an existing saga on: `f(const M&, State&, saga_context&)`. M for a saga that does
  /// not exist goes to the not-found handler, or is logged and dropped.
  template <keyed_message M, class F>
  saga_builder& handles(F f) {
    saga_.handled.emplace(type_name_of<M>());
    const auto* saga = &saga_;
    routing_.add_type<M>();
    routing_.add_saga_handler(
      saga_, std::string{type_name_of<M>()},
      [f, saga](const envelope& e, context& ctx, void*) mutable {
        auto m = from_json<M>(e.body);
        detail::run_saga_step(*saga, key_of(m), e, ctx, [&](std::string& state, saga_context& c) {
          detail::call_saga_handler<F, M, S>(f, m, state, c);
        });
      });
    return *this;
  }
  /// Runs `f(const envelope&, context&)` for a message of the saga whose saga does not exist.
  template <class F>
  saga_builder& on_not_found(F f) {
    saga_.not_found = std::move(f);
    return *this;
  }
  /// The saga compensates when it has not completed `after` its start (a durable timeout), or
  /// runs `f(State&, saga_context&)` instead when given, which chooses another path.
  template <class Rep, class Period>
  saga_builder& deadline(std::chrono::duration<Rep, Period> after) {
    saga_.deadline = std::chrono::duration_cast<std::chrono::microseconds>(after);
    return *this;
  }
  template <class F>
  saga_builder& on_deadline(F f) {
    saga_.on_deadline = [f](std::string& state, saga_context& ctx) mutable {
      auto s = from_json<S>(state);
      f(s, ctx);
      state = to_json(s);
    };
    return *this;
  }
  /// The saga's queue: concurrency, middleware and error policies of all its steps.
  queue_builder queue() { return routing_.queue(saga_.name); }
  /// The error policies of the handler of M alone (a step or a compensation), tried before the
  /// queue's: `saga.policies_of<credit_target>().on_exception<no_account>().retry_times(2)`.
  template <message M>
  error_policies& policies_of() {
    return routing_.handler_policies(std::string{type_name_of<M>()});
  }

private:
  routing& routing_;
  saga_definition& saga_;
};

template <message S>
saga_builder<S> routing::saga(const std::string& name) {
  return saga_builder<S>{*this, define_saga(name, std::string{type_name_of<S>()})};
}

} // namespace depot
