#include "guest_system.h"

#include <gtest/gtest.h>
#include <sys/reboot.h>

namespace fcvm::agent {
namespace {

TEST(HaltCommand, RebootOnlyWhenTheVmmAsksForIt) {
  EXPECT_EQ(halt_command_for("console=ttyS0 reboot=k fcvm.halt=reboot panic=-1"), RB_AUTOBOOT);
  EXPECT_EQ(halt_command_for("fcvm.halt=reboot"), RB_AUTOBOOT);
  EXPECT_EQ(halt_command_for("console=ttyS0 quiet panic=-1"), RB_POWER_OFF);
  EXPECT_EQ(halt_command_for(""), RB_POWER_OFF);
  // Only the whole word counts.
  EXPECT_EQ(halt_command_for("xfcvm.halt=reboot fcvm.halt=rebooting"), RB_POWER_OFF);
}

}  // namespace
}  // namespace fcvm::agent
