// LISTEN on the store's channel with libpq (SOCI has no notification API).
#include "depot/persistence/notification_listener.hpp"

#include <poll.h>

#include <fmt/format.h>
#include <libpq-fe.h>

#include "depot/persistence/db_error.hpp"

namespace depot::persistence {

wake_notice parse_wake_notice(const std::string& payload) {
  wake_notice n;
  auto bar = payload.find('|');
  if (bar == std::string::npos)
    return n;
  n.sender = std::atoi(payload.substr(0, bar).c_str());
  std::size_t start = bar + 1;
  while (start < payload.size()) {
    auto comma = payload.find(',', start);
    auto end = comma == std::string::npos ? payload.size() : comma;
    if (end > start)
      n.queues.push_back(payload.substr(start, end - start));
    start = end + 1;
  }
  return n;
}

notification_listener::notification_listener(std::string db, std::string channel)
  : db_(std::move(db)), channel_(std::move(channel)) {
  connect();
}

notification_listener::~notification_listener() {
  if (conn_ != nullptr)
    PQfinish(conn_);
}

void notification_listener::connect() {
  if (conn_ != nullptr)
    PQfinish(conn_);
  conn_ = PQconnectdb(db_.c_str());
  if (PQstatus(conn_) != CONNECTION_OK)
    throw db_error{failure_kind::connection_lost, "",
                   fmt::format("listener cannot connect: {}", PQerrorMessage(conn_))};
  auto* quoted = PQescapeIdentifier(conn_, channel_.c_str(), channel_.size());
  auto* res = PQexec(conn_, fmt::format("LISTEN {}", quoted).c_str());
  PQfreemem(quoted);
  auto ok = PQresultStatus(res) == PGRES_COMMAND_OK;
  PQclear(res);
  if (!ok)
    throw db_error{failure_kind::connection_lost, "",
                   fmt::format("LISTEN failed: {}", PQerrorMessage(conn_))};
}

std::vector<wake_notice> notification_listener::wait(std::chrono::milliseconds timeout) {
  std::vector<wake_notice> result;
  if (PQstatus(conn_) != CONNECTION_OK)
    connect();
  pollfd fd{PQsocket(conn_), POLLIN, 0};
  if (::poll(&fd, 1, static_cast<int>(timeout.count())) > 0 && PQconsumeInput(conn_) == 0)
    connect(); // lost: reconnect; notifications sent meanwhile are covered by polling
  while (auto* n = PQnotifies(conn_)) {
    result.push_back(parse_wake_notice(n->extra));
    PQfreemem(n);
  }
  return result;
}

} // namespace depot::persistence
