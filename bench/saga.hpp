// The saga case's workload: a three-step chain keyed by its id, run once as a saga (state row
// loaded and saved by every step) and once as plain durable handlers doing the same sends (the
// case's baseline). Both run on one queue, "chain", so that they get the same workers.
// Registration only: measuring is depot_cases.cpp's.
#pragma once

#include <cstdint>
#include <string>

#include <fmt/format.h>

#include <depot/depot.hpp>

namespace bench {

/// Step 1: starts chain `saga_id`. `seq` numbers the chain (-1: a warm-up).
struct chain_start {
  std::string saga_id;
  std::int64_t seq = 0;
};
DEPOT_MESSAGE(chain_start, "bench.chain-start", saga_id, seq)
DEPOT_MESSAGE_KEY(chain_start, saga_id)

/// Step 2, sent by step 1 to the same chain.
struct chain_next {
  std::string saga_id;
  std::int64_t seq = 0;
};
DEPOT_MESSAGE(chain_next, "bench.chain-next", saga_id, seq)
DEPOT_MESSAGE_KEY(chain_next, saga_id)

/// Step 3, sent by step 2: the saga completes; the chain ends. The counted message.
struct chain_last {
  std::string saga_id;
  std::int64_t seq = 0;
};
DEPOT_MESSAGE(chain_last, "bench.chain-last", saga_id, seq)
DEPOT_MESSAGE_KEY(chain_last, saga_id)

/// The saga's state: which chain, and the steps it has taken.
struct chain_state {
  std::int64_t seq = 0;
  std::int64_t steps = 0;
};
DEPOT_MESSAGE(chain_state, "bench.chain-state", seq, steps)

/// The queue of both paths (and the saga's name: its table is saga_chain).
inline constexpr const char* chain_queue = "chain";

/// The id of chain `seq`.
inline std::string chain_id(std::int64_t seq) {
  return fmt::format("chain-{}", seq);
}

/// The saga path: step 1 starts the saga and sends step 2, step 2 sends step 3, step 3
/// completes it.
inline void register_chain_saga(depot::routing& app) {
  app.saga<chain_state>(chain_queue)
    .starts<chain_start>([](const chain_start& m, chain_state& s, depot::saga_context& ctx) {
      s.seq = m.seq;
      ++s.steps;
      ctx.send(chain_next{m.saga_id, m.seq});
    })
    .handles<chain_next>([](const chain_next& m, chain_state& s, depot::saga_context& ctx) {
      ++s.steps;
      ctx.send(chain_last{m.saga_id, m.seq});
    })
    .handles<chain_last>([](const chain_last&, chain_state& s, depot::saga_context& ctx) {
      ++s.steps;
      ctx.complete();
    });
}

/// The baseline path: plain durable handlers doing the same sends, no saga.
inline void register_chain_handlers(depot::routing& app) {
  app
    .handle<chain_start>([](const chain_start& m, depot::context& ctx) {
      ctx.send(chain_next{m.saga_id, m.seq});
    })
    .on_queue(chain_queue);
  app
    .handle<chain_next>([](const chain_next& m, depot::context& ctx) {
      ctx.send(chain_last{m.saga_id, m.seq});
    })
    .on_queue(chain_queue);
  app.handle<chain_last>([](const chain_last&, depot::context&) {}).on_queue(chain_queue);
}

} // namespace bench
