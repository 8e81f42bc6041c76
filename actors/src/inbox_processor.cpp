// Batch handling of a durable queue. A batch is claimed inside the transaction that handles it:
// the claim deletes the envelopes, so committing completes them and a crash or a rollback leaves
// them ready. The fast path runs the whole batch at once; when a handler fails, the batch is
// rolled back and claimed again, and runs with a savepoint per envelope so that one failure
// rolls back alone and is decided by the failure policy in the same transaction.
#include "inbox_processor.hpp"

#include <thread>

#include "depot/persistence/outgoing.hpp"
#include "depot/persistence/unit_of_work.hpp"
#include "depot/runtime/failure_policy.hpp"
#include "depot/runtime/log.hpp"
#include "depot/runtime/saga.hpp"

namespace depot {

using persistence::db_error;
using persistence::failure_kind;
using persistence::unit_of_work;

struct inbox_processor::outcome {
  outgoing_envelopes sent;        ///< of the envelopes handled so far, and faults published
  std::vector<envelope> put_back; ///< retries for later, and envelopes requeued untouched
  handling_counts counts;
  micros pause_until = 0; ///< an error policy paused the queue until then
  std::string pause_reason;
  int failures = 0; ///< failed handlings the breaker counts (not bad input, not conflicts)
  /// message type → handlings (succeeded, failed) that its handler's breaker counts
  std::unordered_map<std::string, std::pair<int, int>> handler_results;
  /// probes of handler breakers taken for this batch; those not reported go back at the end
  std::vector<circuit_breaker*> probes;
  /// changes of handler breakers seen while handling: logged and recorded after the commit
  std::vector<std::pair<circuit_breaker::transition, std::string>> moved;

  outcome() = default;
  outcome(const outcome&) = delete;
  outcome& operator=(const outcome&) = delete;
  ~outcome() {
    for (auto* b : probes)
      b->give_back_probe();
  }
};

inbox_processor::inbox_processor(persistence::connection& conn, const routing& routes,
                                 const queue_definition& queue, const node_settings& settings,
                                 int node_number, dispatch_sink& sink, claim_frontier& frontier,
                                 queue_breakers breakers)
  : conn_(conn)
  , inbox_(conn)
  , dead_letters_(conn)
  , sagas_(conn)
  , routes_(routes)
  , queue_(queue)
  , settings_(settings)
  , node_number_(node_number)
  , sink_(sink)
  , handler_(routes.instantiate(queue))
  , fallback_(routes.instantiate(queue, true))
  , default_policy_(default_error_policy(settings.failures))
  , breaker_(breakers.queue)
  , handler_breakers_(std::move(breakers.handlers))
  , frontier_(frontier) {}

std::size_t inbox_processor::process_batch() {
  using kind = circuit_breaker::permit::kind;
  auto permit = kind::claim;
  if (breaker_ != nullptr) {
    std::optional<circuit_breaker::transition> moved;
    permit = breaker_->take(now_micros(), moved).what;
    if (moved)
      breaker_moved(*moved);
    if (permit == kind::none)
      return 0; // open: the queue's envelopes wait, untouched
  }
  return claim_and_handle(permit == kind::probe, permit == kind::fallback);
}

std::size_t inbox_processor::claim_and_handle(bool probe, bool fallback) {
  try {
    return claim_and_handle_from(probe, fallback);
  } catch (...) {
    frontier_.clear(); // what this worker took is ready again behind it
    throw;
  }
}

std::size_t inbox_processor::claim_and_handle_from(bool probe, bool fallback) {
  std::vector<std::string> ids;
  keyed_batch_ = false;
  {
    unit_of_work uow{conn_};
    const int limit = probe ? 1 : settings_.batch_size;
    auto batch = inbox_.claim(queue_.name, limit, keys_seen_, next_claim_start());
    sink_.count({.claims = 1, .empty_claims = batch.empty() ? 1U : 0U});
    if (batch.empty()) {
      frontier_.clear(); // the next claim looks at the whole queue: rows may wait before it
      if (probe)
        breaker_->give_back_probe();
      return 0;
    }
    keyed_batch_ =
      std::any_of(batch.begin(), batch.end(), [](const envelope& e) { return !e.key.empty(); });
    if (keyed_batch_ && !keys_seen_) {
      // The claim for queues without keys took them without their keys' locks: the batch goes
      // back untouched, and the queue is claimed with the claim that takes them from now on.
      keys_seen_ = true;
      uow.rollback();
      return claim_and_handle_from(probe, fallback);
    }
    // The queue's next claims on this node continue past this batch while it is handled.
    frontier_.claimed(batch, limit);
    if (handle(batch, uow, false, fallback))
      return batch.size();
    for (const auto& e : batch)
      ids.push_back(e.id);
  } // rolled back: the batch is ready again
  frontier_.clear();
  unit_of_work uow{conn_};
  handle(inbox_.claim_again(queue_.name, ids), uow, true, fallback);
  return ids.size();
}

std::optional<persistence::claim_position> inbox_processor::next_claim_start() {
  auto position = frontier_.position();
  if (!position || ++continued_ >= claims_per_full_claim) {
    continued_ = 0;
    return std::nullopt;
  }
  return position;
}

void claim_frontier::claimed(const std::vector<envelope>& batch, int limit) {
  std::lock_guard guard{mutex_};
  if (batch.empty() || static_cast<int>(batch.size()) < limit)
    position_.reset();
  else
    position_ = persistence::claim_position{batch.back().priority, batch.back().seq + 1};
}

void claim_frontier::clear() {
  std::lock_guard guard{mutex_};
  position_.reset();
}

std::optional<persistence::claim_position> claim_frontier::position() const {
  std::lock_guard guard{mutex_};
  return position_;
}

namespace {

/// The store as the handlers of a batch see it: an envelope an earlier handling of the batch
/// scheduled is not stored yet, and is cancelled where it waits.
/// Forgets the saga rows a transaction read when it ends, committed or not.
struct saga_rows_of_transaction {
  explicit saga_rows_of_transaction(persistence::saga_store& s) : store(s) {}
  persistence::saga_store& store;
  saga_rows_of_transaction(const saga_rows_of_transaction&) = delete;
  saga_rows_of_transaction& operator=(const saga_rows_of_transaction&) = delete;
  ~saga_rows_of_transaction() { store.clear(); }
};

class batch_store final : public store_access {
public:
  batch_store(persistence::saga_store& store, outgoing_envelopes& batch)
    : store_(store), batch_(batch) {}
  bool cancel_scheduled(const std::string& id) override {
    for (auto* kept : {&batch_.inbox, &batch_.outbox})
      if (std::erase_if(*kept, [&](const envelope& e) { return e.id == id; }) > 0)
        return true;
    return store_.cancel_scheduled(id);
  }
  std::optional<saga_row> load_saga(const saga_definition& saga, const std::string& id) override {
    return store_.load_saga(saga, id);
  }
  void save_saga(const saga_definition& saga, saga_row& row) override {
    store_.save_saga(saga, row);
  }

private:
  persistence::saga_store& store_;
  outgoing_envelopes& batch_;
};

} // namespace

void inbox_processor::run_one(const envelope& e, outcome& out, bool fallback) {
  outgoing_envelopes sent; // kept only when the handler succeeds
  batch_store store{sagas_, out.sent};
  context ctx{
    e, &conn_.session(), routes_, settings_.service, sent, &conn_.handler_statements(), &store};
  try {
    (fallback ? fallback_ : handler_)->invoke(e, ctx);
    if (!routes_.sagas().empty()) // without sagas there is no compensation to report
      detail::report_compensation(queue_.saga, e, ctx);
  } catch (...) {
    sagas_.discard(); // what it saved rolls back with it
    throw;
  }
  sagas_.accept();
  out.sent.append(std::move(sent));
  ++out.counts.handled;
}

void inbox_processor::report_to_handler_breakers(outcome& out) {
  for (const auto& [t, type] : out.moved)
    breaker_moved(t, type);
  auto now = now_micros();
  for (const auto& [type, result] : out.handler_results) {
    auto* b = handler_breakers_.at(type);
    if (auto moved = b->record(result.first, result.second, now))
      breaker_moved(*moved, type);
    std::erase(out.probes, b);
  }
}

inbox_processor::gate inbox_processor::pass_handler_breaker(const envelope& e, outcome& out) {
  if (handler_breakers_.empty()) // most queues: no hashing per envelope
    return gate::run;
  auto i = handler_breakers_.find(e.message_type);
  if (i == handler_breakers_.end())
    return gate::run;
  auto* b = i->second;
  std::optional<circuit_breaker::transition> moved;
  using kind = circuit_breaker::permit::kind;
  auto permit = b->take(now_micros(), moved).what;
  if (moved)
    out.moved.emplace_back(std::move(*moved), e.message_type);
  switch (permit) {
    case kind::claim: return gate::run;
    case kind::probe: out.probes.push_back(b); return gate::run;
    case kind::fallback: return gate::fallback;
    case kind::none: break;
  }
  // Open, or its probe is out: the envelope waits for the pause to end, attempts unchanged.
  defer(
    e, {std::max(b->open_until(), now_micros() + 100'000), "its handler's circuit breaker is open"},
    out);
  return gate::deferred;
}

void inbox_processor::report_to_breaker(const outcome& out) {
  if (breaker_ == nullptr)
    return;
  if (auto moved =
        breaker_->record(static_cast<int>(out.counts.handled), out.failures, now_micros()))
    breaker_moved(*moved);
}

void inbox_processor::breaker_moved(const circuit_breaker::transition& t, const std::string& type) {
  auto whose = type.empty() ? fmt::format("queue {}", queue_.name)
                            : fmt::format("handler of {} on queue {}", type, queue_.name);
  if (t.to == circuit_breaker::state::open)
    log(log_level::warning, "{}: circuit breaker open until {} ({}){}", whose, iso8601(t.until),
        t.reason,
        type.empty() ? (fallback_ ? ": running its fallbacks" : ": claiming nothing")
        : queue_.fallbacks.contains(type) ? ": running its fallback"
                                          : ": deferring its envelopes");
  else
    log(log_level::info, "{}: circuit breaker {} ({})", whose, to_string(t.to), t.reason);
  try {
    inbox_.record_breaker(queue_.name, type, node_number_, to_string(t.to), t.until, t.reason);
  } catch (const db_error& e) {
    // What operators see lags; the breaker itself decides in memory.
    log(log_level::warning, "{}: could not record its breaker state: {}", whose, e.what());
  }
}

namespace {

// A handler failure is the handler's unless the connection died under it.
void rethrow_if_connection_lost(persistence::connection& conn) {
  if (!conn.connected())
    throw db_error{failure_kind::connection_lost, "", "connection lost while handling"};
}

} // namespace

bool inbox_processor::handle(const std::vector<envelope>& batch, unit_of_work& uow, bool isolate,
                             bool fallback) {
  saga_rows_of_transaction sagas{sagas_};
  if (queue_.saga != nullptr) {
    std::vector<std::string> ids;
    for (const auto& e : batch)
      ids.push_back(e.key);
    sagas_.preload(*queue_.saga, ids);
  }
  outcome out;
  auto now = now_micros();
  for (auto i = batch.begin(); i != batch.end(); ++i) {
    const auto& e = *i;
    if (e.deliver_by != 0 && e.deliver_by < now) {
      ++out.counts.expired; // the claim deleted it: discarded unhandled
      continue;
    }
    auto passed = pass_handler_breaker(e, out);
    if (passed == gate::deferred)
      continue;
    const bool use_fallback = fallback || passed == gate::fallback;
    // What the handler's breaker counts: handlings of the handler, not of its fallback.
    auto count_for_handler = [&](bool ok) {
      if (!use_fallback && !handler_breakers_.empty() &&
          handler_breakers_.contains(e.message_type)) {
        auto& r = out.handler_results[e.message_type];
        ++(ok ? r.first : r.second);
      }
    };
    if (!isolate) {
      try {
        run_one(e, out, use_fallback);
        count_for_handler(true);
      } catch (const deferral& d) {
        defer(e, d, out);
      } catch (...) {
        rethrow_if_connection_lost(conn_);
        return false;
      }
      continue;
    }
    // Under a savepoint, so that a failure rolls back this envelope alone; an inline retry runs
    // it again from the same savepoint, one attempt more.
    auto current = e;
    bool stop = false; // the rest of the batch goes back untouched
    uow.savepoint("depot_envelope");
    for (;;) {
      try {
        run_one(current, out, use_fallback);
        uow.release("depot_envelope");
        count_for_handler(true);
        break;
      } catch (const deferral& d) {
        uow.rollback_to("depot_envelope");
        defer(current, d, out);
        break;
      } catch (...) {
        auto error = std::current_exception();
        rethrow_if_connection_lost(conn_);
        uow.rollback_to("depot_envelope");
        if (persistence::is_transient(error)) {
          // A deadlock or serialization failure with another transaction, which waits for the
          // locks this batch holds: commit what is done to free them, and requeue the rest
          // untouched.
          requeue_rest(i, batch.end(), out, error);
          stop = true;
          break;
        }
        auto d = decide_failure(current, error);
        if (!d.bad_input) { // bad input says nothing about what the handler needs
          if (!fallback)
            ++out.failures;
          count_for_handler(false);
        }
        if (d.what == failure_action::retry_inline) {
          ++out.counts.retried;
          log(log_level::warning, "{} {} on queue {} failed (attempt {}): {}: {}; retrying at once",
              current.message_type, current.id, current.queue, current.attempts + 1,
              d.exception_type, d.reason);
          ++current.attempts;
          continue;
        }
        carry_out(current, d, out);
        if (d.what == failure_action::pause_queue) {
          requeue_rest(std::next(i), batch.end(), out, error);
          stop = true;
        }
        break;
      }
    }
    if (stop)
      break;
  }
  inbox_.put_back(out.put_back);
  if (out.pause_until != 0)
    inbox_.pause_queue(queue_.name, out.pause_until, out.pause_reason);
  sagas_.flush();
  persistence::store_outgoing(conn_, out.sent, node_number_);
  uow.commit();
  if (!fallback)
    report_to_breaker(out);
  report_to_handler_breakers(out);
  if (out.counts.expired > 0)
    log(log_level::info, "queue {}: {} envelope(s) expired unhandled (deliver-by passed)",
        queue_.name, out.counts.expired);
  dispatch(out);
  return true;
}

failure_decision inbox_processor::decide_failure(const envelope& e,
                                                 const std::exception_ptr& error) const {
  const auto* chain = routes_.error_policy_for(e.queue, e.message_type, error);
  return decide(chain != nullptr ? *chain : default_policy_, e, error);
}

void inbox_processor::carry_out(const envelope& e, const failure_decision& d, outcome& out) {
  auto again = e; // back to the inbox as the next attempt
  ++again.attempts;
  auto failed = [&](const char* then) {
    log(log_level::warning, "{} {} on queue {} failed (attempt {}): {}: {}; {}", e.message_type,
        e.id, e.queue, e.attempts + 1, d.exception_type, d.reason, then);
  };
  switch (d.what) {
    case failure_action::retry_inline: // handled by the caller
    case failure_action::retry_later:
      again.status = envelope_status::scheduled;
      again.execution_time = d.retry_at;
      out.put_back.push_back(std::move(again));
      ++out.counts.retried;
      failed(fmt::format("retrying at {}", iso8601(d.retry_at)).c_str());
      return;
    case failure_action::requeue:
      again.seq = 0; // a new place, after what waits
      out.put_back.push_back(std::move(again));
      ++out.counts.retried;
      failed("requeued");
      return;
    case failure_action::pause_queue: {
      out.put_back.push_back(std::move(again)); // keeps its place
      ++out.counts.retried;
      auto until =
        now_micros() + std::chrono::duration_cast<std::chrono::microseconds>(d.pause).count();
      if (until > out.pause_until) {
        out.pause_until = until;
        out.pause_reason = fmt::format("{}: {}", d.exception_type, d.reason);
      }
      failed(fmt::format("pausing queue {} until {}", queue_.name, iso8601(until)).c_str());
      return;
    }
    case failure_action::dead_letter:
      if (saga_compensates(e, d, out))
        return;
      dead_letters_.add(e, d.exception_type, d.reason);
      ++out.counts.dead;
      log(log_level::warning, "{} {} on queue {} dead-lettered after {} attempt(s): {}: {}",
          e.message_type, e.id, e.queue, e.attempts + 1, d.exception_type, d.reason);
      publish_fault(e, d, out);
      return;
    case failure_action::discard:
      if (saga_compensates(e, d, out))
        return;
      ++out.counts.discarded;
      log(log_level::warning, "{} {} on queue {} discarded after {} attempt(s): {}: {}",
          e.message_type, e.id, e.queue, e.attempts + 1, d.exception_type, d.reason);
      publish_fault(e, d, out);
      return;
  }
}

bool inbox_processor::saga_compensates(const envelope& e, const failure_decision& d, outcome& out) {
  if (routes_.sagas().empty())
    return false;
  outgoing_envelopes sent;
  batch_store store{sagas_, out.sent};
  context ctx{e, &conn_.session(), routes_, settings_.service, sent, nullptr, &store};
  // Bad input of a step is a dead letter like any other; of a compensation it makes its saga
  // stuck all the same.
  auto compensates = detail::saga_step_failed(
    d.bad_input ? nullptr : queue_.saga, e, fmt::format("{}: {}", d.exception_type, d.reason), ctx);
  sagas_.accept();
  out.sent.append(std::move(sent));
  if (!compensates)
    return false;
  ++out.counts.handled;
  log(log_level::warning,
      "{} {} of saga {} failed after {} attempt(s): {}: {}; the saga compensates", e.message_type,
      e.id, queue_.name, e.attempts + 1, d.exception_type, d.reason);
  return true;
}

void inbox_processor::defer(const envelope& e, const deferral& d, outcome& out) {
  auto later = e; // attempts unchanged: a deferral is no failure
  later.status = envelope_status::scheduled;
  later.execution_time = d.until;
  d.mark(later);
  out.put_back.push_back(std::move(later));
  ++out.counts.deferred;
  log(log_level::debug, "{} {} on queue {} deferred until {} ({})", e.message_type, e.id, e.queue,
      iso8601(d.until), d.reason);
}

void inbox_processor::publish_fault(const envelope& e, const failure_decision& d, outcome& out) {
  if (!routes_.publishes_faults_of(e.message_type))
    return;
  outgoing_envelopes sent;
  context ctx{e, &conn_.session(), routes_, settings_.service, sent};
  // A subscriber of faults joins the trace of the failed envelope.
  if (const auto& trace = e.header_value(header::traceparent); !trace.empty())
    ctx.propagate(header::traceparent, trace);
  ctx.publish(fault{e.id, e.message_type, e.queue, d.exception_type, d.reason, e.attempts + 1,
                    iso8601(now_micros()), e.header_value(header::correlation_id),
                    to_string(d.what)});
  out.sent.append(std::move(sent));
}

void inbox_processor::requeue_rest(std::vector<envelope>::const_iterator first,
                                   std::vector<envelope>::const_iterator last, outcome& out,
                                   const std::exception_ptr& error) {
  auto n = last - first;
  if (n == 0)
    return;
  out.put_back.insert(out.put_back.end(), first, last);
  log(log_level::info, "queue {}: {} envelope(s) requeued untouched after {}", queue_.name, n,
      describe(error));
}

void inbox_processor::dispatch(outcome& out) {
  std::vector<std::string> woken; // queues, and outbox destinations for their relays
  for (const auto* stored : {&out.sent.inbox, &out.sent.outbox})
    for (const auto& e : *stored)
      if (e.status == envelope_status::incoming)
        woken.push_back(e.queue);
  for (const auto& e : out.put_back)
    if (e.status == envelope_status::incoming)
      woken.push_back(e.queue);
  if (!woken.empty())
    sink_.committed(woken);
  if (!out.sent.memory.empty())
    sink_.deliver_buffered(std::move(out.sent.memory));
  for (auto& r : out.sent.replies)
    sink_.deliver_reply(std::move(r));
  sink_.count(out.counts);
}

void inbox_processor::process_buffered(const envelope& incoming) {
  auto e = incoming;
  for (;;) {
    outcome out;
    std::exception_ptr error;
    {
      saga_rows_of_transaction sagas{sagas_};
      unit_of_work uow{conn_};
      try {
        run_one(e, out, false);
        sagas_.flush();
        persistence::store_outgoing(conn_, out.sent, node_number_);
        uow.commit();
      } catch (const db_error&) {
        throw;
      } catch (const deferral& d) {
        // No row to schedule: this worker waits for the time it was given (buffered queues
        // are for memory-only work that may block its worker).
        d.mark(e);
        std::this_thread::sleep_for(std::chrono::microseconds{d.until - now_micros()});
        continue;
      } catch (...) {
        error = std::current_exception();
        rethrow_if_connection_lost(conn_);
      }
    }
    if (!error) {
      dispatch(out);
      return;
    }
    auto d = decide_failure(e, error);
    if (d.what == failure_action::dead_letter || d.what == failure_action::discard) {
      outcome failed;
      saga_rows_of_transaction sagas{sagas_};
      unit_of_work uow{conn_};
      carry_out(e, d, failed);
      sagas_.flush();
      persistence::store_outgoing(conn_, failed.sent, node_number_);
      uow.commit();
      dispatch(failed);
      return;
    }
    // Buffered envelopes have no row to schedule or requeue: every retry is inline.
    ++e.attempts;
    sink_.count({.retried = 1});
  }
}

} // namespace depot
