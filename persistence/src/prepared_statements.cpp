// The hot statements, prepared on first use.
#include "prepared_statements.hpp"

namespace depot::persistence {

claim_statement::claim_statement(soci::session& sql, const std::string& text) : statement(sql) {
  resize(chunk);
  statement.exchange(soci::use(owner, "owner"));
  statement.exchange(soci::use(queue, "q"));
  statement.exchange(soci::use(limit, "n"));
  statement.exchange(soci::into(ids));
  statement.exchange(soci::into(queues));
  statement.exchange(soci::into(types));
  statement.exchange(soci::into(bodies));
  statement.exchange(soci::into(headers));
  statement.exchange(soci::into(execution_times));
  statement.exchange(soci::into(deliver_bys));
  statement.exchange(soci::into(attempts));
  statement.exchange(soci::into(priorities));
  statement.exchange(soci::into(received_ats));
  statement.exchange(soci::into(tenants));
  statement.alloc();
  statement.prepare(text);
  statement.define_and_bind();
}

void claim_statement::resize(std::size_t n) {
  for (auto* v : {&ids, &queues, &types, &bodies, &headers, &tenants})
    v->resize(n);
  for (auto* v : {&execution_times, &deliver_bys, &received_ats})
    v->resize(n);
  for (auto* v : {&attempts, &priorities})
    v->resize(n);
}

begin_handling_statement::begin_handling_statement(soci::session& sql, const std::string& text)
  : locked(1), statement(sql) {
  statement.exchange(soci::use(window, "w"));
  statement.exchange(soci::use(ids, "ids"));
  statement.exchange(soci::use(owner, "o"));
  statement.exchange(soci::into(locked));
  statement.alloc();
  statement.prepare(text);
  statement.define_and_bind();
}

insert_incoming_statement::insert_incoming_statement(soci::session& sql, const std::string& text)
  : statement(sql) {
  statement.exchange(soci::use(rows, "rows"));
  statement.exchange(soci::into(inserted));
  statement.alloc();
  statement.prepare(text);
  statement.define_and_bind();
}

claim_statement& prepared_statements::claim() {
  if (!claim_)
    claim_ = std::make_unique<claim_statement>(sql_, texts_.claim);
  return *claim_;
}

begin_handling_statement& prepared_statements::begin_handling() {
  if (!begin_handling_)
    begin_handling_ = std::make_unique<begin_handling_statement>(sql_, texts_.begin_handling);
  return *begin_handling_;
}

insert_incoming_statement& prepared_statements::insert_incoming() {
  if (!insert_incoming_)
    insert_incoming_ = std::make_unique<insert_incoming_statement>(sql_, texts_.insert_incoming);
  return *insert_incoming_;
}

} // namespace depot::persistence
