// The schema migrations compiled into the library, in version order.
#pragma once

#include <string_view>
#include <vector>

namespace depot::persistence {

struct migration {
  int version;
  std::string_view description;
  std::string_view sql;
};

/// Every migration, ascending by version. Each runs once, in its own transaction.
const std::vector<migration>& migrations();

} // namespace depot::persistence
