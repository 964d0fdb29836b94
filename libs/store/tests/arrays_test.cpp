#include "skiff/store/arrays.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <limits>

namespace skiff::store {
namespace {

TEST(ArrayLiteralTest, QuotesAndEscapesEveryItem) {
  EXPECT_EQ(ArrayLiteral(std::vector<std::string>{}), "{}");
  EXPECT_EQ(ArrayLiteral(std::vector<std::string>{"a", "", "say \"hi\"", "back\\slash", "x,y"}),
            R"({"a","","say \"hi\"","back\\slash","x,y"})");
  EXPECT_EQ(ArrayLiteral(std::vector<std::optional<std::string>>{"a", std::nullopt}), R"({"a",NULL})");
}

TEST(ArrayLiteralTest, NumbersReadBackExactly) {
  EXPECT_EQ(NumberArrayLiteral(std::vector<int64_t>{0, -5, 1'800'000'000'000}), "{0,-5,1800000000000}");
  EXPECT_EQ(NumberArrayLiteral(std::vector<int>{1, 0}), "{1,0}");
  const std::vector<double> values = {0.1, 1.5, 1e-300, 0.1 + 0.2, 0.0000135, -2.5e10,
                                      std::numeric_limits<double>::max()};
  const std::string literal = NumberArrayLiteral(values);
  EXPECT_EQ(literal.substr(0, 9), "{0.1,1.5,");  // the shortest form, not 17 digits
  // Each item parses back to the same double.
  size_t at = 1;
  for (double value : values) {
    char* end = nullptr;
    EXPECT_EQ(std::strtod(literal.c_str() + at, &end), value);
    at = static_cast<size_t>(end - literal.c_str()) + 1;
  }
  EXPECT_EQ(at, literal.size());
}

}  // namespace
}  // namespace skiff::store
