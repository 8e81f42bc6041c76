// The message context: turns sends into envelopes that commit with the handling transaction.
#include "depot/runtime/context.hpp"

#include <stdexcept>

#include "depot/runtime/routing.hpp"

namespace depot {

context::context(const envelope& incoming, soci::session* db, const routing& routes,
                 std::string source, outgoing_envelopes& out, statement_cache* statements,
                 store_access* store)
  : incoming_(incoming)
  , db_(db)
  , routes_(routes)
  , source_(std::move(source))
  , out_(out)
  , statements_(statements)
  , store_(store) {}

soci::session& context::db() {
  if (db_ == nullptr)
    throw std::logic_error{"this context has no database session"};
  return *db_;
}

statement_cache& context::statements() {
  if (statements_ == nullptr)
    throw std::logic_error{"this context has no prepared statements"};
  return *statements_;
}

store_access& context::store() {
  if (store_ == nullptr)
    throw std::logic_error{"this context has no store: it is not a handler's"};
  return *store_;
}

bool context::cancel(const std::string& id) {
  // Scheduled by this very transaction: it is not stored yet.
  for (auto* kept : {&out_.inbox, &out_.outbox})
    if (auto n = std::erase_if(*kept, [&](const envelope& e) { return e.id == id; }); n > 0)
      return true;
  return store().cancel_scheduled(id);
}

std::string context::enqueue(std::string_view type, std::string body, send_options options,
                             micros at, dispatch how, std::string key) {
  auto now = now_micros();
  std::string id;
  for (const auto& to : routes_.targets_of(type, how)) {
    if (to.mode == endpoint_mode::buffered && at > now)
      throw std::logic_error{"queue '" + to.name +
                             "' is buffered: it cannot hold scheduled "
                             "messages; make it durable"};
    envelope e;
    e.id = new_envelope_id();
    e.message_type = std::string{type};
    e.body = body;
    e.headers = options.headers;
    e.headers.insert(propagated_.begin(), propagated_.end()); // keeps what options gave
    e.headers[header::source] = source_;
    if (!incoming_.id.empty()) {
      e.headers[header::causation_id] = incoming_.id;
      const auto& correlation = incoming_.header_value(header::correlation_id);
      e.headers[header::correlation_id] = correlation.empty() ? incoming_.id : correlation;
    }
    e.status = at > now ? envelope_status::scheduled : envelope_status::incoming;
    e.execution_time = at;
    e.deliver_by = options.deliver_within.count() > 0 ? now + options.deliver_within.count() : 0;
    e.priority = options.priority;
    e.tenant = incoming_.tenant;
    e.key = key;
    id = e.id;
    out_.add(to, std::move(e));
  }
  return id;
}

void context::propagate(std::string name, std::string value) {
  propagated_.insert_or_assign(std::move(name), std::move(value));
}

void context::set_reply(std::string_view type, std::string body) {
  const auto& to = incoming_.header_value(header::reply_to);
  if (to.empty())
    return;
  // A requester waits under the correlation id it gave its request.
  const auto& correlation = incoming_.header_value(header::correlation_id);
  out_.replies.push_back(
    {to, correlation.empty() ? incoming_.id : correlation, std::string{type}, std::move(body)});
}

} // namespace depot
