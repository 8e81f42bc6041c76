// The message of the noop, latency and recovery cases: a sequence number and nothing else, so
// that what is measured is depot's path and not a handler. Shared by the parent process and its
// child roles, which must agree on its type name.
#pragma once

#include <cstdint>

#include <depot/depot.hpp>

namespace bench {

struct noop {
  std::int64_t seq = 0;
};
DEPOT_MESSAGE(noop, "bench.noop", seq)

} // namespace bench
