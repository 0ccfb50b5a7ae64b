#include "fcvm/capabilities.h"

#include <gtest/gtest.h>

namespace fcvm {
namespace {

using nlohmann::json;

TEST(Capabilities, VmmJsonNamesEveryField) {
  VmmCapabilities caps;
  caps.snapshot = true;
  caps.restore_uffd_memory = true;
  caps.mmds = true;
  caps.agent_transport = AgentTransport::vsock;
  EXPECT_EQ(json(caps), json({{"snapshot", true},
                              {"restore_file_memory", false},
                              {"restore_uffd_memory", true},
                              {"dirty_page_tracking", false},
                              {"mmds", true},
                              {"agent_transport", "vsock"}}));
  EXPECT_EQ(json(VmmCapabilities{})["agent_transport"], "virtio_serial");
}

TEST(Capabilities, VmmWordsAreTheSetFlagsThenTheAgentTransport) {
  VmmCapabilities caps;
  EXPECT_EQ(describe(caps), "agent-virtio-serial");
  caps.snapshot = caps.restore_file_memory = caps.restore_uffd_memory = true;
  caps.dirty_page_tracking = caps.mmds = true;
  caps.agent_transport = AgentTransport::vsock;
  EXPECT_EQ(describe(caps), "snapshot,restore-file,restore-uffd,dirty-pages,mmds,agent-vsock");
  caps.restore_file_memory = caps.mmds = false;
  EXPECT_EQ(describe(caps), "snapshot,restore-uffd,dirty-pages,agent-vsock");
}

TEST(Capabilities, MemoryJsonNamesEveryField) {
  MemoryCapabilities caps;
  caps.needs_server = true;
  caps.source_kind = MemorySourceKind::uffd;
  caps.prefetch = true;
  EXPECT_EQ(json(caps), json({{"needs_server", true},
                              {"source_kind", "uffd"},
                              {"adopts_clients", false},
                              {"prefetch", true}}));
}

TEST(Capabilities, MemoryWordsAreTheSourceKindThenTheSetFlags) {
  EXPECT_EQ(describe(MemoryCapabilities{}), "file");
  MemoryCapabilities caps;
  caps.needs_server = caps.adopts_clients = caps.prefetch = true;
  caps.source_kind = MemorySourceKind::uffd;
  EXPECT_EQ(describe(caps), "uffd,server,adopt,prefetch");
}

TEST(Capabilities, EnumNamesAreTheEnumeratorNames) {
  EXPECT_STREQ(to_string(AgentTransport::virtio_serial), "virtio_serial");
  EXPECT_STREQ(to_string(AgentTransport::vsock), "vsock");
  EXPECT_STREQ(to_string(MemorySourceKind::file), "file");
  EXPECT_STREQ(to_string(MemorySourceKind::uffd), "uffd");
}

}  // namespace
}  // namespace fcvm
