// Batch handling of a durable queue. The fast path runs a whole batch in one transaction; when a
// handler fails, the batch runs again with a savepoint per envelope so that one failure rolls
// back alone and is decided by the failure policy in the same transaction.
#include "inbox_processor.hpp"

#include <unordered_set>

#include "depot/persistence/outgoing.hpp"
#include "depot/persistence/unit_of_work.hpp"
#include "depot/runtime/failure_policy.hpp"
#include "depot/runtime/log.hpp"

namespace depot {

using persistence::db_error;
using persistence::failure_kind;
using persistence::unit_of_work;

struct inbox_processor::outcome {
  outgoing_envelopes sent; ///< of the envelopes handled so far
  std::vector<std::string> expired;
  std::size_t handled = 0;
  std::size_t retried = 0;
  std::size_t dead = 0;
};

inbox_processor::inbox_processor(persistence::connection& conn, const routing& routes,
                                 const queue_definition& queue, const node_settings& settings,
                                 int owner, dispatch_sink& sink,
                                 std::vector<std::string>& in_flight)
  : conn_(conn)
  , inbox_(conn)
  , dead_letters_(conn)
  , routes_(routes)
  , queue_(queue)
  , settings_(settings)
  , owner_(owner)
  , sink_(sink)
  , handler_(queue.instantiate())
  , in_flight_(in_flight) {}

std::size_t inbox_processor::process_batch() {
  recover(); // what an earlier failure left claimed
  auto batch = inbox_.claim(queue_.name, owner_, settings_.batch_size);
  if (batch.empty())
    return 0;
  for (const auto& e : batch)
    in_flight_.push_back(e.id);
  if (!handle(batch, false))
    handle(batch, true);
  in_flight_.clear();
  return batch.size();
}

void inbox_processor::recover() {
  if (in_flight_.empty())
    return;
  inbox_.release(in_flight_, owner_);
  in_flight_.clear();
}

void inbox_processor::run_one(const envelope& e, outcome& out) {
  outgoing_envelopes sent; // kept only when the handler succeeds
  context ctx{e, &conn_.session(), routes_, settings_.service, sent};
  routes_.run_pipeline(*handler_, e, ctx);
  out.sent.append(std::move(sent));
  ++out.handled;
}

namespace {

// A handler failure is the handler's unless the connection died under it.
void rethrow_if_connection_lost(persistence::connection& conn) {
  if (!conn.connected())
    throw db_error{failure_kind::connection_lost, "", "connection lost while handling"};
}

} // namespace

bool inbox_processor::handle(const std::vector<envelope>& batch, bool isolate) {
  outcome out;
  unit_of_work uow{conn_};
  std::vector<std::string> ids;
  for (const auto& e : batch)
    ids.push_back(e.id);
  auto locked_ids = inbox_.begin_handling(ids, owner_);
  std::unordered_set<std::string> locked{locked_ids.begin(), locked_ids.end()};
  auto now = now_micros();
  for (auto i = batch.begin(); i != batch.end(); ++i) {
    const auto& e = *i;
    if (!locked.contains(e.id))
      continue; // recovered by another node meanwhile: not ours to handle
    if (e.deliver_by != 0 && e.deliver_by < now) {
      out.expired.push_back(e.id);
      continue;
    }
    if (!isolate) {
      try {
        run_one(e, out);
      } catch (...) {
        rethrow_if_connection_lost(conn_);
        return false;
      }
      continue;
    }
    uow.savepoint("depot_envelope");
    try {
      run_one(e, out);
      uow.release("depot_envelope");
    } catch (...) {
      auto error = std::current_exception();
      rethrow_if_connection_lost(conn_);
      uow.rollback_to("depot_envelope");
      if (persistence::is_transient(error)) {
        // A deadlock or serialization failure with another transaction, which waits for the locks
        // this batch holds: commit what is done to free them, and requeue the rest untouched.
        requeue_rest(i, batch.end(), locked, error);
        break;
      }
      auto d = decide(settings_.failures, e, error);
      if (d.what == failure_decision::action::retry) {
        inbox_.retry_at(e.id, d.retry_at);
        ++out.retried;
        log(log_level::warning, "{} {} on queue {} failed (attempt {}): {}: {}; retrying",
            e.message_type, e.id, e.queue, e.attempts + 1, d.exception_type, d.reason);
      } else {
        dead_letters_.add(e, d.exception_type, d.reason);
        ++out.dead;
        log(log_level::warning, "{} {} on queue {} dead-lettered after {} attempt(s): {}: {}",
            e.message_type, e.id, e.queue, e.attempts + 1, d.exception_type, d.reason);
      }
    }
  }
  inbox_.mark_expired(out.expired);
  persistence::store_outgoing(conn_, out.sent, owner_);
  uow.commit();
  dispatch(out);
  return true;
}

void inbox_processor::requeue_rest(std::vector<envelope>::const_iterator first,
                                   std::vector<envelope>::const_iterator last,
                                   const std::unordered_set<std::string>& locked,
                                   const std::exception_ptr& error) {
  std::vector<std::string> rest;
  for (; first != last; ++first)
    if (locked.contains(first->id))
      rest.push_back(first->id);
  inbox_.requeue(rest, owner_);
  log(log_level::info,
      "queue {}: {} envelope(s) requeued after a conflict with another "
      "transaction: {}",
      queue_.name, rest.size(), describe(error));
}

void inbox_processor::dispatch(outcome& out) {
  std::vector<std::string> woken;
  for (const auto& e : out.sent.inbox)
    if (e.status == envelope_status::incoming)
      woken.push_back(e.queue);
  if (!woken.empty())
    sink_.wake(woken);
  if (!out.sent.memory.empty())
    sink_.deliver_buffered(std::move(out.sent.memory));
  for (auto& r : out.sent.replies)
    sink_.deliver_reply(std::move(r));
  sink_.count(out.handled, out.expired.size(), out.retried, out.dead);
}

void inbox_processor::process_buffered(const envelope& incoming) {
  auto e = incoming;
  for (;;) {
    outcome out;
    std::exception_ptr error;
    {
      unit_of_work uow{conn_};
      try {
        run_one(e, out);
        persistence::store_outgoing(conn_, out.sent, owner_);
        uow.commit();
      } catch (const db_error&) {
        throw;
      } catch (...) {
        error = std::current_exception();
        rethrow_if_connection_lost(conn_);
      }
    }
    if (!error) {
      dispatch(out);
      return;
    }
    auto d = decide(settings_.failures, e, error);
    if (d.what == failure_decision::action::dead_letter) {
      unit_of_work uow{conn_};
      dead_letters_.add(e, d.exception_type, d.reason);
      uow.commit();
      sink_.count(0, 0, 0, 1);
      log(log_level::warning, "{} {} on buffered queue {} dead-lettered: {}: {}", e.message_type,
          e.id, e.queue, d.exception_type, d.reason);
      return;
    }
    ++e.attempts; // buffered envelopes retry inline: there is no row to schedule
    sink_.count(0, 0, 1, 0);
  }
}

} // namespace depot
