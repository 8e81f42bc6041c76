// The demo's side of the Kafka wire, as an outside client would be: it produces DebitAccount
// commands to bank.commands as binary CloudEvents and reads bank.events back.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bank.hpp"

namespace bank {

class kafka_client {
public:
  explicit kafka_client(const std::string& brokers);
  ~kafka_client();
  kafka_client(const kafka_client&) = delete;
  kafka_client& operator=(const kafka_client&) = delete;

  /// Produces `debits` to bank.commands as binary CloudEvents (each its own id), and the first
  /// one a second time with the same id, as a broker redelivers. Returns the records produced.
  std::int64_t produce(const std::vector<debit_account>& debits);

  /// What bank.events held.
  struct events {
    std::map<std::string, std::int64_t> by_type; ///< distinct events per ce_type
    std::int64_t distinct = 0, duplicates = 0;
    std::int64_t malformed = 0; ///< a required attribute missing, or key != ce_partitionkey
  };
  /// Reads bank.events from its start until `expected` distinct events arrived or `timeout`
  /// passed.
  events read_events(std::int64_t expected, std::chrono::seconds timeout);

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace bank
