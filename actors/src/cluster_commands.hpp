// The cluster control commands every node binary has: cluster status and drain, queues pause
// and resume.
#pragma once

#include <vector>

#include "dead_letter_commands.hpp"

namespace depot {

/// The cluster commands, working on stores `open` gives.
[[nodiscard]] std::vector<command> cluster_commands(store_opener open);

} // namespace depot
