// The hot statements, prepared on first use.
#include "prepared_statements.hpp"

#include "row_codec.hpp"

namespace depot::persistence {

namespace {

/// Prepares `statement` on `text` once its parameters and columns are exchanged.
void prepare(soci::statement& statement, const std::string& text) {
  statement.alloc();
  statement.prepare(text, soci::details::st_repeatable_query);
  statement.define_and_bind();
}

} // namespace

void claimed_rows::bind(soci::statement& statement) {
  resize(chunk);
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
  statement.exchange(soci::into(seqs));
  statement.exchange(soci::into(tenants));
  statement.exchange(soci::into(keys));
}

void claimed_rows::resize(std::size_t n) {
  for (auto* v : {&ids, &queues, &types, &bodies, &headers, &tenants, &keys})
    v->resize(n);
  for (auto* v : {&execution_times, &deliver_bys, &received_ats, &seqs})
    v->resize(n);
  for (auto* v : {&attempts, &priorities})
    v->resize(n);
}

std::vector<envelope> claimed_rows::fetch_all(soci::statement& statement) {
  resize(chunk); // a fetch shrinks them to what it got
  std::vector<envelope> result;
  for (bool more = statement.execute(true); more; more = statement.fetch()) {
    for (std::size_t i = 0; i < ids.size(); ++i) {
      auto& e = result.emplace_back();
      e.id = std::move(ids[i]);
      e.queue = std::move(queues[i]);
      e.message_type = std::move(types[i]);
      e.body = std::move(bodies[i]);
      e.headers = parse_headers(headers[i]);
      e.execution_time = execution_times[i];
      e.deliver_by = deliver_bys[i];
      e.attempts = attempts[i];
      e.priority = priorities[i];
      e.received_at = received_ats[i];
      e.seq = seqs[i];
      e.tenant = std::move(tenants[i]);
      e.key = std::move(keys[i]);
    }
  }
  return result;
}

claim_statement::claim_statement(soci::session& sql, const std::string& text, bool keyed)
  : statement(sql) {
  statement.exchange(soci::use(queue, "q"));
  statement.exchange(soci::use(limit, "n"));
  if (keyed)
    statement.exchange(soci::use(look_ahead, "w"));
  statement.exchange(soci::use(priority, after, "p"));
  statement.exchange(soci::use(after_seq, after, "s"));
  rows.bind(statement);
  prepare(statement, text);
}

void claim_statement::continue_from(const std::optional<claim_position>& position) {
  after = position ? soci::i_ok : soci::i_null;
  priority = position ? position->priority : 0;
  after_seq = position ? position->seq : 0;
}

claim_again_statement::claim_again_statement(soci::session& sql, const std::string& text)
  : statement(sql) {
  statement.exchange(soci::use(queue, "q"));
  statement.exchange(soci::use(look_ahead, "w"));
  statement.exchange(soci::use(ids, "ids"));
  rows.bind(statement);
  prepare(statement, text);
}

insert_incoming_statement::insert_incoming_statement(soci::session& sql, const std::string& text)
  : statement(sql) {
  statement.exchange(soci::use(rows, "rows"));
  statement.exchange(soci::use(window, "w"));
  statement.exchange(soci::into(inserted));
  prepare(statement, text);
}

claim_statement& prepared_statements::claim(bool keyed) {
  auto& st = keyed ? claim_keyed_ : claim_;
  if (!st)
    st = std::make_unique<claim_statement>(sql_, keyed ? texts_.claim_keyed : texts_.claim, keyed);
  return *st;
}

claim_again_statement& prepared_statements::claim_again() {
  if (!claim_again_)
    claim_again_ = std::make_unique<claim_again_statement>(sql_, texts_.claim_again);
  return *claim_again_;
}

insert_incoming_statement& prepared_statements::insert_incoming() {
  if (!insert_incoming_)
    insert_incoming_ = std::make_unique<insert_incoming_statement>(sql_, texts_.insert_incoming);
  return *insert_incoming_;
}

} // namespace depot::persistence
