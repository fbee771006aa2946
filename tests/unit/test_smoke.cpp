#include <gtest/gtest.h>
#include "games/registry.h"
TEST(Smoke, Builds) { auto g = saddle::make_game("bilinear", {}); EXPECT_EQ(g->dim(), 20); }
