// saddle: min-max games and monotone variational inequalities on LibTorch, over MPI.
// One include for users: the flow is game -> exchange -> solver -> metrics (see README).
#pragma once

#include "saddle/averaging.h"
#include "saddle/comm/communicator.h"
#include "saddle/comm/exchange.h"
#include "saddle/error.h"
#include "saddle/game.h"
#include "saddle/log.h"
#include "saddle/quant/codec.h"
#include "saddle/run/runner.h"
#include "saddle/solver.h"
#include "saddle/step_size.h"
