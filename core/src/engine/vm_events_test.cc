#include "engine/vm_events.h"

#include <gtest/gtest.h>

#include "fcvm/temp_dir.h"
#include "state/state_store.h"

namespace fcvm {
namespace {

std::vector<std::string> kinds(VmEventWatcher& w) {
  auto events = w.next(std::chrono::milliseconds(100));
  EXPECT_TRUE(events.ok()) << events.status().message();
  std::vector<std::string> out;
  if (events.ok()) {
    for (const auto& e : *events) out.push_back(std::string(to_string(e.kind)) + " " + e.name);
  }
  return out;
}

TEST(VmEventWatcher, EachRecordChangeIsOneEventAndWhatExistedIsNoNews) {
  auto dir = TempDir::create("fcvm-events-test-");
  ASSERT_TRUE(dir.ok());
  StateStore store(dir->path());
  VmRecord before;
  before.name = "before";
  before.process = ProcessIdentity::self();
  before.status = VmStatus::running;
  ASSERT_TRUE(store.create(before).ok());

  auto watcher = VmEventWatcher::open(dir->path());
  ASSERT_TRUE(watcher.ok()) << watcher.status().message();
  EXPECT_TRUE(kinds(*watcher).empty());

  VmRecord vm;
  vm.name = "web";
  vm.process = ProcessIdentity::self();
  vm.status = VmStatus::creating;
  auto created = store.create(vm);
  ASSERT_TRUE(created.ok());
  EXPECT_EQ(kinds(*watcher), std::vector<std::string>{"create web"});
  ASSERT_TRUE(store.update(created->id, [](VmRecord& r) { r.status = VmStatus::running; return Status(); }).ok());
  EXPECT_EQ(kinds(*watcher), std::vector<std::string>{"start web"});
  ASSERT_TRUE(store.update(created->id, [](VmRecord& r) {
    r.status = VmStatus::exited;
    r.exit_code = 3;
    return Status();
  }).ok());
  auto died = watcher->next(std::chrono::milliseconds(100));
  ASSERT_TRUE(died.ok());
  ASSERT_EQ(died->size(), 1u);
  EXPECT_EQ(died->front().kind, VmEvent::Kind::exited);
  EXPECT_EQ(died->front().exit_code, 3);
  EXPECT_EQ(to_json(died->front())["status"], "died");
  ASSERT_TRUE(store.remove(created->id).ok());
  EXPECT_EQ(kinds(*watcher), std::vector<std::string>{"remove web"});
  EXPECT_TRUE(kinds(*watcher).empty());
}

}  // namespace
}  // namespace fcvm
