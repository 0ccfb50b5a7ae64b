#include "fcvm/file_lock.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <future>

#include "fcvm/temp_dir.h"

namespace fcvm {
namespace {

namespace fs = std::filesystem;
using Mode = FileLock::Mode;
using Lifetime = FileLock::Lifetime;

class FileLockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::create("fcvm-file-lock-test-");
    ASSERT_TRUE(dir.ok()) << dir.status().message();
    dir_ = std::move(*dir);
  }
  fs::path lock_path() const { return dir_.path() / "x.lock"; }
  TempDir dir_;
};

TEST_F(FileLockTest, ExclusiveExcludesEveryoneSharedExcludesOnlyExclusive) {
  auto a = FileLock::acquire(lock_path(), Mode::shared);
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_TRUE(FileLock::try_acquire(lock_path(), Mode::shared).ok());
  auto refused = FileLock::try_acquire(lock_path(), Mode::exclusive);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Errc::already_exists);
  a->release();
  auto b = FileLock::try_acquire(lock_path(), Mode::exclusive);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(FileLock::try_acquire(lock_path(), Mode::shared).status().code(), Errc::already_exists);
}

TEST_F(FileLockTest, KeptLockFileIsPrivateAndOutlivesTheLock) {
  {
    auto lock = FileLock::acquire(lock_path(), Mode::exclusive);
    ASSERT_TRUE(lock.ok());
    EXPECT_TRUE(lock->held());
  }
  struct stat st {};
  ASSERT_EQ(::stat(lock_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(FileLockTest, RemovedOnReleaseLeavesNothingAndAWaiterGetsAFreshLock) {
  auto first = FileLock::acquire(lock_path(), Mode::exclusive, Lifetime::removed_on_release);
  ASSERT_TRUE(first.ok());
  // The waiter blocks on the file `first` holds; `first` then unlinks it, so the waiter
  // must notice and lock the file that the name now holds.
  auto waiter = std::async(std::launch::async, [&] {
    return FileLock::acquire(lock_path(), Mode::exclusive, Lifetime::removed_on_release);
  });
  first->release();
  auto second = waiter.get();
  ASSERT_TRUE(second.ok()) << second.status().message();
  EXPECT_TRUE(fs::exists(lock_path()));
  EXPECT_EQ(FileLock::try_acquire(lock_path(), Mode::exclusive).status().code(), Errc::already_exists);
  second->release();
  second->release();  // idempotent
  EXPECT_FALSE(fs::exists(lock_path()));
}

TEST_F(FileLockTest, MissingDirectoryIsNotFound) {
  auto lock = FileLock::acquire(dir_.path() / "no/such/dir.lock", Mode::exclusive);
  ASSERT_FALSE(lock.ok());
  EXPECT_EQ(lock.status().code(), Errc::not_found);
}

TEST_F(FileLockTest, MoveAssignmentReleasesTheOldLock) {
  auto a = FileLock::acquire(lock_path(), Mode::exclusive);
  auto other = FileLock::acquire(dir_.path() / "y.lock", Mode::exclusive);
  ASSERT_TRUE(a.ok() && other.ok());
  *a = std::move(*other);
  EXPECT_TRUE(FileLock::try_acquire(lock_path(), Mode::exclusive).ok());
  EXPECT_EQ(FileLock::try_acquire(dir_.path() / "y.lock", Mode::exclusive).status().code(),
            Errc::already_exists);
}

}  // namespace
}  // namespace fcvm
