// The throughput baselines: the raw durable-queue cycle through libpq, no depot code, on the same
// database (the queue is raw_queue.hpp's). One producer thread COPYs batches (one transaction
// each); consumer threads, each with its own connection, claim batches at the same time:
//   noop: the claim alone, one transaction per batch.
//   bank: BEGIN; the claim; per claimed debit the database effects the bank sample's handlers
//         commit (the account's update, the account_events row of its AccountUpdated); COMMIT.
// With more than one consumer the accounts are partitioned: consumer i of n owns the accounts
// a with a % n == i, whose debits the producer writes to a queue of its own, so that consumers
// never wait on each other's row locks (what keys do for a node's workers).
// The producer wakes the consumers in memory after each commit (as a node wakes its own queue);
// a consumer sleeps only when it found nothing. The bank tables are made by the sample's own
// create_tables and seed (setup, not measured), so that their shape is the handlers'.
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "bank.hpp"
#include "bench.hpp"
#include "raw_queue.hpp"

namespace bench {

namespace {

using namespace std::chrono_literals;

/// COPY text format: escape backslash, tab, newline and carriage return.
void append_copy_field(std::string& out, std::string_view text) {
  for (char c : text) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\t': out += "\\t"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      default: out += c;
    }
  }
}

/// A body shaped like those depot's path sends for case `name`.
std::string body_of(const std::string& name, std::int64_t seq, int accounts) {
  if (name == "noop")
    return fmt::format("{{\"seq\":{}}}", seq);
  auto a = bank_account_of(seq, accounts);
  return fmt::format("{{\"account_id\":\"acct-{}\",\"amount\":{},\"seq\":{}}}", a,
                     bank_amount_of(a), seq);
}

/// The text of member `key` (e.g. `"account_id":"`) of a flat JSON body the baseline wrote.
std::string_view text_after(std::string_view body, std::string_view key) {
  auto at = body.find(key);
  if (at == std::string_view::npos)
    return {};
  auto begin = at + key.size();
  return body.substr(begin, body.find('"', begin) - begin);
}

/// What the bank sample's handlers commit per DebitAccount, done on the consumer's connection
/// inside its claim transaction. The account is read FOR UPDATE and then written with its new
/// balance, as the handler does (two statements and the same row lock, rather than a single
/// `UPDATE ... SET balance = balance - $2`), so that the ratio compares depot with the same
/// handler work and not with a cheaper handler. The account_events row is the one the handler
/// of the AccountUpdated cascade writes; here it is keyed by the debit's id.
class bank_effects {
public:
  explicit bank_effects(raw::connection& c) : c_(c) {
    c_.prepare("lock_account",
               fmt::format("SELECT balance FROM {}.accounts WHERE id = $1 FOR UPDATE", raw::schema),
               1);
    c_.prepare("save_account",
               fmt::format("UPDATE {}.accounts SET balance = $2 WHERE id = $1", raw::schema), 2);
    c_.prepare("record_event",
               fmt::format("INSERT INTO {}.account_events (envelope_id, message_type, account_id, "
                           "balance) VALUES ($1, $2, $3, $4)",
                           raw::schema),
               4);
  }

  /// Debits the accounts of every row of `claimed` (columns: id, message_type, body, ...).
  void apply(const PGresult* claimed) {
    for (int i = 0; i < PQntuples(claimed); ++i) {
      auto body = std::string_view{PQgetvalue(claimed, i, 2),
                                   static_cast<std::size_t>(PQgetlength(claimed, i, 2))};
      account_ = text_after(body, "\"account_id\":\"");
      auto amount = number_after(body, "\"amount\":");
      const char* account[1] = {account_.c_str()};
      auto* r = c_.run("lock_account", 1, account);
      if (PQntuples(r) != 1) {
        PQclear(r);
        throw std::runtime_error{fmt::format("baseline: no account {}", account_)};
      }
      balance_ = std::to_string(std::stoll(PQgetvalue(r, 0, 0)) - amount);
      PQclear(r);
      const char* save[2] = {account_.c_str(), balance_.c_str()};
      PQclear(c_.run("save_account", 2, save));
      const char* event[4] = {PQgetvalue(claimed, i, 0), updated_type, account_.c_str(),
                              balance_.c_str()};
      PQclear(c_.run("record_event", 4, event));
    }
  }

private:
  static constexpr const char* updated_type = "bank.account-updated";
  raw::connection& c_;
  std::string account_, balance_; // parameters of the current debit
};

/// The queue of consumer `part`'s rows.
std::string partition_queue(const std::string& queue, std::int64_t part) {
  return fmt::format("{}#{}", queue, part);
}

/// Wakes the consumers after each producer commit.
struct wake {
  std::mutex m;
  std::condition_variable cv;
  std::uint64_t commits = 0;
  bool done = false;
};

/// Creates the bank's tables in the baseline's schema, seeded as depot's path seeds them.
void create_bank_tables(const options& o) {
  auto session = depot::persistence::open_session(with_search_path(o.db, std::string{raw::schema}));
  soci::transaction tr{*session};
  bank::create_tables(*session);
  bank::seed(*session, o.accounts, bank_balance, bank_threshold);
  tr.commit();
}

/// Empty when the bank tables hold exactly the effects of every debit, else what is wrong.
std::string check_bank_tables(const options& o) {
  raw::connection c{o.db};
  auto* r = c.query(fmt::format(
    "SELECT (SELECT sum(balance) FROM {0}.accounts), (SELECT count(*) FROM {0}.account_events)",
    raw::schema));
  auto total = std::stoll(PQgetvalue(r, 0, 0));
  auto events = std::stoll(PQgetvalue(r, 0, 1));
  PQclear(r);
  auto expected = bank_balances_after(o.messages, o.accounts);
  if (total != expected)
    return fmt::format("baseline balances sum to {}, expected {}", total, expected);
  if (events != o.messages)
    return fmt::format("baseline recorded {} account events, expected {}", events, o.messages);
  return {};
}

} // namespace

measurement run_baseline(const options& o, const std::string& name, int consumers) {
  const bool bank_case = name == "bank";
  const std::string queue = bank_case ? "bank.debit-account" : "bench.noop";
  {
    raw::connection admin{o.db};
    raw::create_queue(admin);
  }
  if (bank_case)
    create_bank_tables(o);
  raw::connection producer{o.db};
  std::vector<std::unique_ptr<raw::connection>> connections;
  std::vector<std::unique_ptr<bank_effects>> effects;
  for (int i = 0; i < consumers; ++i) {
    auto& c = *connections.emplace_back(std::make_unique<raw::connection>(o.db));
    c.prepare("claim", raw::claim_sql(), 2);
    if (bank_case)
      effects.push_back(std::make_unique<bank_effects>(c));
  }
  const auto copy_sql =
    fmt::format("COPY {}.incoming (id, queue, message_type, body) FROM STDIN", raw::schema);

  latencies lat{o.messages};
  wake w;
  std::exception_ptr producer_error;
  measurement m;
  m.messages = o.messages;
  settle(o.db);
  const auto before = resources::sample(o.db);
  const auto t0 = now_ns();

  std::thread produce{[&] {
    try {
      raw::uuid_source ids;
      auto* conn = producer.native();
      std::string data;
      for (std::int64_t first = 0; first < o.messages; first += o.send_batch) {
        auto last = std::min(o.messages, first + o.send_batch);
        data.clear();
        for (auto seq = first; seq < last; ++seq) {
          data += ids.next();
          data += '\t';
          data += partition_queue(queue, bank_account_of(seq, o.accounts) % consumers);
          data += '\t';
          data += queue;
          data += '\t';
          append_copy_field(data, body_of(name, seq, o.accounts));
          data += '\n';
        }
        auto* r = PQexec(conn, copy_sql.c_str());
        auto st = PQresultStatus(r);
        PQclear(r);
        if (st != PGRES_COPY_IN)
          throw std::runtime_error{fmt::format("baseline COPY: {}", PQerrorMessage(conn))};
        if (PQputCopyData(conn, data.data(), static_cast<int>(data.size())) != 1 ||
            PQputCopyEnd(conn, nullptr) != 1)
          throw std::runtime_error{fmt::format("baseline COPY: {}", PQerrorMessage(conn))};
        r = PQgetResult(conn);
        st = PQresultStatus(r);
        std::string error = PQresultErrorMessage(r);
        PQclear(r);
        while ((r = PQgetResult(conn)) != nullptr)
          PQclear(r);
        if (st != PGRES_COMMAND_OK)
          throw std::runtime_error{fmt::format("baseline COPY: {}", error)};
        auto t = now_ns();
        for (auto seq = first; seq < last; ++seq)
          lat.sent(seq, t);
        {
          std::lock_guard guard{w.m};
          ++w.commits;
        }
        w.cv.notify_all();
      }
    } catch (...) {
      producer_error = std::current_exception();
    }
    std::lock_guard guard{w.m};
    w.done = true;
    w.cv.notify_all();
  }};

  const auto limit = std::to_string(o.batch_size);
  const auto deadline = clock::now() + std::chrono::seconds{o.timeout_s};
  std::atomic<std::int64_t> consumed = 0;
  std::atomic<std::int64_t> t_end = 0; // set by the consumer whose batch completes the count
  std::atomic<bool> failed = false;
  std::vector<std::exception_ptr> consumer_errors(static_cast<std::size_t>(consumers));
  auto consume = [&](int part) {
    auto& consumer = *connections[static_cast<std::size_t>(part)];
    const auto own_queue = partition_queue(queue, part);
    const char* params[2] = {own_queue.c_str(), limit.c_str()};
    std::uint64_t seen = 0;
    try {
      while (consumed < o.messages && !failed && clock::now() < deadline) {
        {
          std::lock_guard guard{w.m};
          seen = w.commits;
        }
        // noop: the claim commits on its own; bank: the claim and its effects commit together.
        if (bank_case)
          consumer.exec("BEGIN");
        auto* r = consumer.run("claim", 2, params);
        auto t = now_ns();
        auto rows = PQntuples(r);
        for (int i = 0; i < rows; ++i) {
          auto body =
            std::string_view{PQgetvalue(r, i, 2), static_cast<std::size_t>(PQgetlength(r, i, 2))};
          lat.started(seq_of(body), t);
        }
        if (bank_case) {
          try {
            effects[static_cast<std::size_t>(part)]->apply(r);
          } catch (...) {
            PQclear(r);
            throw;
          }
          consumer.exec("COMMIT");
          t = now_ns();
        }
        PQclear(r);
        auto before_batch = consumed.fetch_add(rows);
        if (before_batch < o.messages && before_batch + rows >= o.messages) {
          t_end = t;
          w.cv.notify_all(); // the other consumers stop
          break;
        }
        if (rows == 0) {
          std::unique_lock lock{w.m};
          if (w.done && w.commits == seen)
            break; // nothing more will come
          w.cv.wait_for(lock, 100ms, [&] {
            return w.commits != seen || w.done || consumed >= o.messages || failed;
          });
        }
      }
    } catch (...) {
      consumer_errors[static_cast<std::size_t>(part)] = std::current_exception();
      failed = true;
      w.cv.notify_all();
    }
  };
  std::vector<std::thread> consuming;
  for (int i = 1; i < consumers; ++i)
    consuming.emplace_back(consume, i);
  consume(0); // on this thread
  for (auto& c : consuming)
    c.join();
  if (t_end != 0)
    m.used = resources::sample(o.db) - before;
  produce.join();
  if (producer_error)
    std::rethrow_exception(producer_error);
  for (const auto& e : consumer_errors)
    if (e)
      std::rethrow_exception(e);
  if (t_end == 0) {
    m.note = fmt::format("timed out: {} of {} consumed", consumed.load(), o.messages);
  } else {
    m.seconds = static_cast<double>(t_end - t0) / 1e9;
    m.msgs_per_s = static_cast<double>(o.messages) / m.seconds;
    std::tie(m.p50_ms, m.p99_ms) = lat.percentiles();
    if (bank_case)
      m.note = check_bank_tables(o);
    m.ok = m.note.empty();
  }
  raw::drop_queue(o.db);
  return m;
}

} // namespace bench
