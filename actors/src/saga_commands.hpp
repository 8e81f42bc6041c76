// The `sagas` commands every node binary has: list, show, cancel.
#pragma once

#include <vector>

#include "dead_letter_commands.hpp"

namespace depot {

/// The sagas commands, working on stores `open` gives.
[[nodiscard]] std::vector<command> saga_commands(store_opener open);

} // namespace depot
