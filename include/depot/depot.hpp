// The one header a depot application needs: messages, handlers, errors, the node and its command
// line. Services (<depot/actors/service.hpp>) bring CAF in, so they are not included here.
#pragma once

#include "depot/actors/cli.hpp"
#include "depot/actors/node.hpp"
#include "depot/runtime/context.hpp"
#include "depot/runtime/error.hpp"
#include "depot/runtime/message.hpp"
#include "depot/runtime/routing.hpp"
#include "depot/runtime/saga.hpp"
#include "depot/runtime/settings.hpp"

#include <soci/soci.h>
