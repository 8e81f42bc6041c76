// Retrying a transaction that failed for a reason retrying can fix: a transient conflict or a
// lost connection (reconnected first). A connection lost during COMMIT is resolved by asking the
// server whether the transaction committed, so work that did commit is never done twice. For
// work done outside a handler (sends from the node's callers, the CLI): inside a handler the
// handling loop decides.
// Blocks on Postgres, sleeping between attempts.
#pragma once

#include <chrono>
#include <thread>

#include "depot/persistence/connection.hpp"
#include "depot/persistence/unit_of_work.hpp"

namespace depot::persistence {

/// Runs `work(conn)` in a transaction on `conn` and commits; on a retryable db_error, or a
/// commit that turned out not to have happened, runs it again after 50 ms, doubling to 2 s,
/// until `patience` has passed, then throws the last error.
/// Permanent errors and anything else `work` throws go to the caller at once.
template <class Work>
void retry_transaction(connection& conn, Work&& work,
                       std::chrono::milliseconds patience = std::chrono::seconds{30}) {
  using namespace std::chrono;
  auto deadline = steady_clock::now() + patience;
  milliseconds backoff{50};
  for (;;) {
    try {
      if (!conn.connected())
        conn.reconnect();
      unit_of_work uow{conn};
      work(conn);
      if (uow.commit_or_find_out(duration_cast<milliseconds>(deadline - steady_clock::now())))
        return;
    } catch (const db_error& e) {
      if (!e.retryable() || steady_clock::now() + backoff > deadline)
        throw;
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, milliseconds{2000});
  }
}

} // namespace depot::persistence
