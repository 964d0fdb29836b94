#include "skiff/store/migrations.h"

#include <gtest/gtest.h>

namespace skiff::store {
namespace {

TEST(MigrationsTest, VersionsMustIncreaseAndCarrySql) {
  EXPECT_NO_THROW(CheckMigrations({{1, "a", "SELECT 1"}, {2, "b", "SELECT 1"}}));
  EXPECT_THROW(CheckMigrations({{2, "a", "SELECT 1"}, {2, "b", "SELECT 1"}}), std::invalid_argument);
  EXPECT_THROW(CheckMigrations({{0, "a", "SELECT 1"}}), std::invalid_argument);
  EXPECT_THROW(CheckMigrations({{1, "", "SELECT 1"}}), std::invalid_argument);
  EXPECT_THROW(CheckMigrations({{1, "a", ""}}), std::invalid_argument);
}

}  // namespace
}  // namespace skiff::store
