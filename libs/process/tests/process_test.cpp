#include "skiff/process/process.h"

#include <gtest/gtest.h>

using skiff::process::RunProcess;

TEST(RunProcess, FeedsStdinAndSeparatesOutputs) {
  auto result = RunProcess({"sh", "-c", "read line; echo \"got $line\"; echo oops >&2; exit 3"}, {"hello\n", {}});
  EXPECT_EQ(result.exit_code, 3);
  EXPECT_EQ(result.out, "got hello\n");
  EXPECT_EQ(result.err, "oops\n");
}

TEST(RunProcess, SetsEnvironmentOverTheParents) {
  ::setenv("SKIFF_PROCESS_TEST", "parent", 1);
  auto result = RunProcess({"sh", "-c", "echo $SKIFF_PROCESS_TEST $OTHER"}, {"", {{"SKIFF_PROCESS_TEST", "child"}, {"OTHER", "x"}}});
  EXPECT_EQ(result.out, "child x\n");
}

TEST(RunProcess, LargeInputAndOutputDoNotDeadlock) {
  std::string input(1 << 20, 'a');
  auto result = RunProcess({"cat"}, {input, {}});
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.out.size(), input.size());
}

TEST(RunProcess, MissingProgramIs127) {
  EXPECT_EQ(RunProcess({"/nonexistent/skiff-program"}).exit_code, 127);
  EXPECT_EQ(RunProcess({}).exit_code, -1);
}
