// Batch handling of a durable queue. A batch is claimed inside the transaction that handles it:
// the claim deletes the envelopes, so committing completes them and a crash or a rollback leaves
// them ready. The fast path runs the whole batch at once; when a handler fails, the batch is
// rolled back and claimed again, and runs with a savepoint per envelope so that one failure
// rolls back alone and is decided by the failure policy in the same transaction.
#include "inbox_processor.hpp"

#include "depot/persistence/outgoing.hpp"
#include "depot/persistence/unit_of_work.hpp"
#include "depot/runtime/failure_policy.hpp"
#include "depot/runtime/log.hpp"

namespace depot {

using persistence::db_error;
using persistence::failure_kind;
using persistence::unit_of_work;

struct inbox_processor::outcome {
  outgoing_envelopes sent;         ///< of the envelopes handled so far
  std::vector<envelope> put_back;  ///< retries for later, and envelopes requeued untouched
  std::size_t handled = 0;
  std::size_t expired = 0;
  std::size_t retried = 0;
  std::size_t dead = 0;
};

inbox_processor::inbox_processor(persistence::connection& conn, const routing& routes,
                                 const queue_definition& queue, const node_settings& settings,
                                 int node_number, dispatch_sink& sink)
  : conn_(conn)
  , inbox_(conn)
  , dead_letters_(conn)
  , routes_(routes)
  , queue_(queue)
  , settings_(settings)
  , node_number_(node_number)
  , sink_(sink)
  , handler_(queue.instantiate()) {}

std::size_t inbox_processor::process_batch() {
  std::vector<std::string> ids;
  {
    unit_of_work uow{conn_};
    auto batch = inbox_.claim(queue_.name, settings_.batch_size);
    if (batch.empty())
      return 0;
    if (handle(batch, uow, false))
      return batch.size();
    for (const auto& e : batch)
      ids.push_back(e.id);
  } // rolled back: the batch is ready again
  unit_of_work uow{conn_};
  handle(inbox_.claim_again(ids), uow, true);
  return ids.size();
}

void inbox_processor::run_one(const envelope& e, outcome& out) {
  outgoing_envelopes sent; // kept only when the handler succeeds
  context ctx{e, &conn_.session(), routes_, settings_.service, sent, &conn_.handler_statements()};
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

bool inbox_processor::handle(const std::vector<envelope>& batch, unit_of_work& uow,
                             bool isolate) {
  outcome out;
  auto now = now_micros();
  for (auto i = batch.begin(); i != batch.end(); ++i) {
    const auto& e = *i;
    if (e.deliver_by != 0 && e.deliver_by < now) {
      ++out.expired; // the claim deleted it: discarded unhandled
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
        requeue_rest(i, batch.end(), out, error);
        break;
      }
      decide_failure(e, error, out);
    }
  }
  inbox_.put_back(out.put_back);
  persistence::store_outgoing(conn_, out.sent, node_number_);
  uow.commit();
  if (out.expired > 0)
    log(log_level::info, "queue {}: {} envelope(s) expired unhandled (deliver-by passed)",
        queue_.name, out.expired);
  dispatch(out);
  return true;
}

void inbox_processor::decide_failure(const envelope& e, const std::exception_ptr& error,
                                     outcome& out) {
  auto d = decide(settings_.failures, e, error);
  if (d.what == failure_decision::action::retry) {
    auto again = e;
    again.status = envelope_status::scheduled;
    again.execution_time = d.retry_at;
    ++again.attempts;
    out.put_back.push_back(std::move(again));
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

void inbox_processor::requeue_rest(std::vector<envelope>::const_iterator first,
                                   std::vector<envelope>::const_iterator last, outcome& out,
                                   const std::exception_ptr& error) {
  auto n = last - first;
  out.put_back.insert(out.put_back.end(), first, last);
  log(log_level::info,
      "queue {}: {} envelope(s) requeued after a conflict with another transaction: {}",
      queue_.name, n, describe(error));
}

void inbox_processor::dispatch(outcome& out) {
  std::vector<std::string> woken;
  for (const auto& e : out.sent.inbox)
    if (e.status == envelope_status::incoming)
      woken.push_back(e.queue);
  for (const auto& e : out.put_back)
    if (e.status == envelope_status::incoming)
      woken.push_back(e.queue);
  if (!woken.empty())
    sink_.wake(woken);
  if (!out.sent.memory.empty())
    sink_.deliver_buffered(std::move(out.sent.memory));
  for (auto& r : out.sent.replies)
    sink_.deliver_reply(std::move(r));
  sink_.count(out.handled, out.expired, out.retried, out.dead);
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
        persistence::store_outgoing(conn_, out.sent, node_number_);
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
