// The message context a handler receives: the open database session of its transaction and the
// ways to send messages that commit with it. Nothing sent through it leaves before the commit.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "depot/runtime/endpoint.hpp"
#include "depot/runtime/envelope.hpp"
#include "depot/runtime/message.hpp"
#include "depot/runtime/statement_cache.hpp"

namespace soci {
class session;
}

namespace depot {

class routing;
struct saga_definition;
struct saga_row;

/// What a handler's context asks of the store beyond its SQL session, in the handling
/// transaction: implemented by the persistence layer.
class store_access {
public:
  virtual ~store_access() = default;
  /// Removes the waiting envelope `id` (scheduled, or ready and not claimed); false when there
  /// is none.
  virtual bool cancel_scheduled(const std::string& id) = 0;
  /// The saga `id` as this transaction sees it; nullopt when it does not exist.
  virtual std::optional<saga_row> load_saga(const saga_definition& saga, const std::string& id) = 0;
  /// Stores `row`: inserts it when it is new (version 0), else updates it; bumps its version.
  virtual void save_saga(const saga_definition& saga, saga_row& row) = 0;
};

/// Options of one send.
struct send_options {
  /// Discard the message unhandled when it is not handled within this time; 0 = never.
  std::chrono::microseconds deliver_within{0};
  /// Higher priorities are claimed first.
  std::int32_t priority = 0;
  /// Extra headers carried with the envelope.
  std::map<std::string, std::string> headers{};
};

/// How an outgoing message is addressed.
enum class dispatch { send, publish };

/// A handler's view of the transaction it runs in. One per handled envelope.
class context {
public:
  /// Made by the runtime: `incoming` is the envelope being handled, `db` the session of its open
  /// transaction (null outside a handler), `out` where what it sends is collected, `statements`
  /// the prepared statements of db's connection, `store` the store's side of the transaction.
  context(const envelope& incoming, soci::session* db, const routing& routes, std::string source,
          outgoing_envelopes& out, statement_cache* statements = nullptr,
          store_access* store = nullptr);

  /// The open session of the handling transaction: write your own data through it.
  [[nodiscard]] soci::session& db();

  /// Statements prepared once per connection, for SQL a handler runs on every message: parsed
  /// and planned once, then only executed. S is constructible from `soci::session&` and
  /// prepares its statements there, bound to its own members:
  ///
  ///     struct debit_sql {
  ///       explicit debit_sql(soci::session& db)
  ///         : save((db.prepare << "UPDATE accounts SET balance = :b WHERE id = :id",
  ///                 soci::use(balance), soci::use(id))) {}
  ///       long long balance = 0;
  ///       std::string id;
  ///       soci::statement save;
  ///     };
  ///     auto& sql = ctx.prepared<debit_sql>();
  ///     sql.id = ...; sql.balance = ...; sql.save.execute(true);
  ///
  /// The same S serves every envelope handled on this connection; it is made again after a
  /// reconnect.
  template <class S>
  [[nodiscard]] S& prepared() {
    return statements().get<S>(db());
  }
  /// The envelope being handled.
  [[nodiscard]] const envelope& incoming() const { return incoming_; }

  /// Sends `m` to the queue that handles its type; throws no_route when none does.
  template <message T>
  void send(const T& m, send_options options = {}) {
    enqueue(type_name_of<T>(), to_json(m), std::move(options), 0, dispatch::send, key_of(m));
  }

  /// Sends `m` to every queue subscribed to its type; none is fine.
  template <message T>
  void publish(const T& m, send_options options = {}) {
    enqueue(type_name_of<T>(), to_json(m), std::move(options), 0, dispatch::publish, key_of(m));
  }

  /// Sends `m` to be handled after `delay` (persisted; survives restarts). Returns its
  /// envelope id, for cancel.
  template <message T, class Rep, class Period>
  std::string schedule(const T& m, std::chrono::duration<Rep, Period> delay,
                       send_options options = {}) {
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(delay).count();
    return enqueue(type_name_of<T>(), to_json(m), std::move(options), now_micros() + us,
                   dispatch::send, key_of(m));
  }

  /// Sends `m` to be handled at `at` (persisted; survives restarts). Returns its envelope id.
  template <message T>
  std::string schedule(const T& m, std::chrono::system_clock::time_point at,
                       send_options options = {}) {
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(at.time_since_epoch()).count();
    return enqueue(type_name_of<T>(), to_json(m), std::move(options), us, dispatch::send,
                   key_of(m));
  }

  /// Cancels the scheduled envelope `id` (a schedule's result) with this transaction: it will
  /// not be handled. False when it no longer waits (handled, being handled, or unknown).
  bool cancel(const std::string& id);

  /// Answers the request being handled; ignored when the sender asked for no reply.
  template <message T>
  void reply(const T& m) {
    set_reply(type_name_of<T>(), to_json(m));
  }

  /// Adds an envelope of any registered type from its JSON body (used by the CLI and bridges);
  /// `key` is its message key (routing::validate returns it), "" for none. Returns the id of
  /// the last envelope made ("" when a publish reached no endpoint).
  std::string enqueue(std::string_view type, std::string body, send_options options, micros at,
                      dispatch how, std::string key = {});
  /// Answers the request being handled with a JSON body of `type`.
  void set_reply(std::string_view type, std::string body);
  /// Adds header `name` to every envelope this handling sends from now on (middleware
  /// propagates a trace or a tenant this way); a header given in send_options wins.
  void propagate(std::string name, std::string value);

  /// The store's side of the handling transaction; throws outside a handler.
  [[nodiscard]] store_access& store();
  [[nodiscard]] const routing& routes() const { return routes_; }

private:
  statement_cache& statements();

  const envelope& incoming_;
  soci::session* db_;
  const routing& routes_;
  std::string source_;
  outgoing_envelopes& out_;
  statement_cache* statements_;
  store_access* store_;
  std::map<std::string, std::string> propagated_;
};

} // namespace depot
