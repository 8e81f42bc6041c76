// The `dead-letters` commands every node binary has: list, show, replay, purge.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "depot/actors/cli.hpp"
#include "depot/persistence/connection.hpp"

namespace depot {

/// A usage error: the CLI prints it and exits 2.
class usage_error : public error {
public:
  explicit usage_error(const std::string& what) : error(errc::invalid_command_line, what) {}
};

/// Opens the store of a command, provisioned.
using store_opener = std::function<std::unique_ptr<persistence::connection>(const node_settings&)>;

/// The dead-letters commands, working on stores `open` gives.
[[nodiscard]] std::vector<command> dead_letter_commands(store_opener open);

} // namespace depot
