// Error policies: what happens to an envelope whose handler threw, declared per exception type
// on the application, a queue or a handler, as a chain of steps read like a sentence:
//
//     app.on_exception<ledger_unavailable>()
//       .retry_times(2)
//       .then_retry_with_cooldown(50ms, 250ms, 1s)
//       .then_dead_letter();
//
// Each step covers some failures of one envelope: failure k (its attempts + 1) falls on the
// step that covers it, and past the last step the envelope is dead-lettered.
#pragma once

#include <chrono>
#include <deque>
#include <exception>
#include <functional>
#include <string>
#include <typeinfo>
#include <vector>

namespace depot {

namespace detail {
/// The readable name of a type from its typeid name ("std::runtime_error").
[[nodiscard]] std::string demangle(const char* name);
} // namespace detail

/// What one step of an error policy does with a failed envelope.
enum class failure_action {
  retry_inline, ///< run the handler again at once, in the same transaction
  retry_later,  ///< back to the inbox, scheduled after a cooldown; the worker moves on
  requeue,      ///< back to the inbox, ready now, after what waits in its queue
  pause_queue,  ///< back to the inbox in its place; the queue claims nothing for a while
  dead_letter,  ///< to dead letters, with the reason
  discard,      ///< dropped, counted and logged
};

[[nodiscard]] const char* to_string(failure_action action);

/// One step of a chain.
struct policy_step {
  failure_action action = failure_action::dead_letter;
  int times = 1; ///< failures this step covers
  /// retry_later: the cooldown of each of its failures; the last one repeats.
  std::vector<std::chrono::milliseconds> cooldowns;
  /// retry_later with backoff: cooldown i is first * factor^i, at most cap, plus up to a
  /// quarter of it at random (when factor > 0, cooldowns is empty).
  std::chrono::milliseconds first{0}, cap{0};
  double factor = 0;
  std::chrono::milliseconds pause{0}; ///< pause_queue: how long the queue claims nothing
};

/// The chain of one exception type. Steps are appended in the order written.
class error_policy {
public:
  /// Runs the handler again at once, up to `n` more times, in the same transaction.
  error_policy& retry_times(int n);
  /// Schedules the envelope again after each cooldown in turn: one retry per cooldown.
  template <class... Rep, class... Period>
  error_policy& retry_with_cooldown(std::chrono::duration<Rep, Period>... cooldowns) {
    return add_cooldowns({std::chrono::duration_cast<std::chrono::milliseconds>(cooldowns)...});
  }
  /// Schedules the envelope again `n` times, after first, first * factor, ... (at most cap),
  /// each with up to a quarter more at random.
  error_policy& retry_with_backoff(int n, std::chrono::milliseconds first,
                                   std::chrono::milliseconds cap, double factor = 2.0);
  /// Puts the envelope back at the end of its queue, ready now, `n` times.
  error_policy& requeue(int n = 1);
  /// Pauses the queue for `duration` on every node (its envelopes wait, untouched) and puts the
  /// envelope back in its place; `n` times.
  error_policy& pause_queue(std::chrono::milliseconds duration, int n = 1);
  /// Moves the envelope to dead letters. Ends the chain.
  void dead_letter();
  /// Drops the envelope: counted, logged, never handled. Ends the chain.
  void discard();

  /// Synonyms that make a chain read as a sentence.
  template <class... Rep, class... Period>
  error_policy& then_retry_with_cooldown(std::chrono::duration<Rep, Period>... cooldowns) {
    return retry_with_cooldown(cooldowns...);
  }
  error_policy& then_retry_with_backoff(int n, std::chrono::milliseconds first,
                                        std::chrono::milliseconds cap, double factor = 2.0) {
    return retry_with_backoff(n, first, cap, factor);
  }
  error_policy& then_requeue(int n = 1) { return requeue(n); }
  error_policy& then_pause_queue(std::chrono::milliseconds duration, int n = 1) {
    return pause_queue(duration, n);
  }
  void then_dead_letter() { dead_letter(); }
  void then_discard() { discard(); }

  [[nodiscard]] const std::vector<policy_step>& steps() const { return steps_; }
  /// The step failure `k` (1 for the first) falls on; null past the chain.
  [[nodiscard]] const policy_step* step_of(int k) const;
  /// "retry 2 times, then retry after 50ms, 250ms, 1s, then dead-letter", for describe and logs.
  [[nodiscard]] std::string describe() const;

private:
  error_policy& add(policy_step step);
  error_policy& add_cooldowns(std::vector<std::chrono::milliseconds> cooldowns);

  std::vector<policy_step> steps_;
};

/// The rules of one scope (the application, a queue, a handler), tried in the order declared:
/// declare a derived exception type before its base.
class error_policies {
public:
  /// The chain for exceptions of type E (and types derived from it).
  template <class E>
  error_policy& on_exception() {
    return add(type_name<E>(), [](const std::exception_ptr& thrown) {
      try {
        std::rethrow_exception(thrown);
      } catch (const E&) {
        return true;
      } catch (...) {
        return false;
      }
    });
  }
  /// The chain for any exception this scope has no other rule for.
  error_policy& on_any_exception();

  /// The chain of the first rule matching `thrown`, or null.
  [[nodiscard]] const error_policy* match(const std::exception_ptr& thrown) const;
  [[nodiscard]] bool empty() const { return rules_.empty(); }
  /// "type: chain" per rule, in order.
  [[nodiscard]] std::vector<std::string> describe() const;

private:
  struct rule {
    std::string exception_type;
    std::function<bool(const std::exception_ptr&)> matches;
    error_policy policy;
  };

  template <class E>
  static std::string type_name() {
    return detail::demangle(typeid(E).name());
  }
  error_policy& add(std::string exception_type,
                    std::function<bool(const std::exception_ptr&)> matches);

  std::deque<rule> rules_; // deque: a returned error_policy& stays valid
};

} // namespace depot
