// The one header a depot application needs: messages, handlers, the node and its command line.
#pragma once

#include "depot/actors/cli.hpp"
#include "depot/actors/node.hpp"
#include "depot/runtime/context.hpp"
#include "depot/runtime/message.hpp"
#include "depot/runtime/routing.hpp"
#include "depot/runtime/settings.hpp"

#include <soci/soci.h>
