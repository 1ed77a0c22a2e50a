// Creates real store files on the filesystem holding the build tree (ext4
// on the development host). The host's block device node cannot be opened
// here (no /dev/vda, and the device cgroup refuses mknod'ed nodes), so the
// store is read back through the file with O_DIRECT, which translates the
// very same device sectors back to file offsets through FIEMAP.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "file_descriptor.hpp"
#include "snapmgr/error.hpp"
#include "store.hpp"

namespace {

using namespace snapmgr;
namespace fs = std::filesystem;

class StoreFileTest : public ::testing::Test {
protected:
	void SetUp() override
	{
		// Failed, never skipped (a skip would let the test command pass
		// without them): a store is pinned with the immutable flag, which
		// only root can set, and needs ext4 or xfs under it (stable
		// extents, FIEMAP). The README's test command runs as root; its
		// build tree must be on ext4 or xfs.
		if (geteuid() != 0)
			GTEST_FAIL() << "cannot run: needs root for the immutable flag";
		fs::path base = UNIT_SCRATCH_DIR;
		fs::create_directories(base);
		std::string pattern = (base / "unit-XXXXXX").string();
		ASSERT_NE(mkdtemp(pattern.data()), nullptr);
		dir_ = pattern;
		struct statfs sfs{};
		ASSERT_EQ(statfs(dir_.c_str(), &sfs), 0);
		if (static_cast<unsigned long>(sfs.f_type) != EXT4_SUPER_MAGIC &&
		    static_cast<unsigned long>(sfs.f_type) != XFS_SUPER_MAGIC)
			GTEST_FAIL() << "cannot run: " << dir_ << " is not on ext4 or xfs";
	}
	void TearDown() override
	{
		if (dir_.empty())
			return;
		// Unpin anything a failing test left behind, then remove it all.
		for (const auto &entry : fs::directory_iterator(dir_)) {
			FileDescriptor fd(::open(entry.path().c_str(), O_RDONLY | O_NOFOLLOW));
			int flags = 0;
			if (fd.valid() && ioctl(fd.get(), FS_IOC_GETFLAGS, &flags) == 0 &&
			    (flags & FS_IMMUTABLE_FL)) {
				flags &= ~FS_IMMUTABLE_FL;
				ioctl(fd.get(), FS_IOC_SETFLAGS, &flags);
			}
		}
		fs::remove_all(dir_);
	}
	StoreCreateOptions options(const std::string &name, std::uint64_t size)
	{
		StoreCreateOptions o;
		o.path = dir_ / name;
		o.size_bytes = size;
		o.origin_sectors = 131072; // 64 MiB origin
		return o;
	}
	fs::path dir_;
};

int inode_flags(const fs::path &path)
{
	FileDescriptor fd(::open(path.c_str(), O_RDONLY));
	int flags = 0;
	EXPECT_TRUE(fd.valid());
	EXPECT_EQ(ioctl(fd.get(), FS_IOC_GETFLAGS, &flags), 0);
	return flags;
}

TEST_F(StoreFileTest, CreatesAPinnedRootOnlyStoreWhoseExtentsCoverTheFile)
{
	auto o = options("vol.store", 8 << 20);
	CreatedStore store = StoreFile::create(o);

	struct stat st{};
	ASSERT_EQ(stat(o.path.c_str(), &st), 0);
	EXPECT_EQ(st.st_mode & 07777, 0600u);
	EXPECT_EQ(std::uint64_t(st.st_size), o.size_bytes);
	EXPECT_TRUE(inode_flags(o.path) & FS_IMMUTABLE_FL);
	EXPECT_EQ(::unlink(o.path.c_str()), -1);
	EXPECT_EQ(errno, EPERM);

	EXPECT_EQ(total_blocks(store.extents), o.size_bytes / 4096);
	EXPECT_EQ(store.sb_sector, store.extents.front().sector);
	EXPECT_EQ(store.sb_sector % 8, 0u);
	EXPECT_EQ(store.store_device.major, major(st.st_dev));
	EXPECT_EQ(store.store_device.minor, minor(st.st_dev));
	EXPECT_EQ(store.store_device.path.rfind("/dev/", 0), 0u);
	EXPECT_EQ(store.layout, compute_layout(2048, 128, 131072, store.extents.size()));
	EXPECT_EQ(store.data_slots, count_data_slots(store.extents, store.layout.data_start, 8));
	EXPECT_EQ(store.data_slots, 2048 - store.layout.data_start); // a slot per data block

	FileDescriptor fd(::open(o.path.c_str(), O_RDONLY));
	ASSERT_TRUE(fd.valid());
	EXPECT_EQ(StoreFile::map_extents(fd.get(), o.path.string()), store.extents);
}

TEST_F(StoreFileTest, StoreReadsBackThroughItsDeviceSectors)
{
	auto o = options("vol.store", 4 << 20);
	o.chunk_sectors = 256;
	CreatedStore store = StoreFile::create(o);
	auto reader = StoreReader::open_through_file(o.path);
	const Superblock &sb = reader.superblock();
	EXPECT_EQ(sb.store_uuid, store.store_uuid);
	EXPECT_EQ(sb.generation_uuid, store.generation_uuid);
	EXPECT_EQ(sb.sb_sector, store.sb_sector);
	EXPECT_EQ(sb.chunk_sectors, 256u);
	EXPECT_EQ(sb.origin_sectors, 131072u);
	EXPECT_EQ(sb.epoch, 1u);
	EXPECT_EQ(sb.generation_epoch, 1u);
	EXPECT_EQ(sb.flags, 0u);
	EXPECT_EQ(sb.snap_state, std::uint32_t(COWFILE_SNAP_NONE));
	EXPECT_EQ(sb.layout(), store.layout);
	EXPECT_EQ(reader.extents(), store.extents);
	EXPECT_EQ(reader.data_slots(), store.data_slots);
	auto map = reader.read_chunk_map();
	EXPECT_EQ(map.size(), 131072u / 256);
	EXPECT_TRUE(std::all_of(map.begin(), map.end(), [](const MapEntry &e) { return e == MapEntry{}; }));
	ChangeSet changes = reader.changes_since(0, store.generation_uuid);
	EXPECT_FALSE(changes.full);
	EXPECT_TRUE(changes.ranges.empty());
}

TEST_F(StoreFileTest, DestroyUnpinsAndRemovesTheStore)
{
	auto o = options("vol.store", 1 << 20);
	StoreFile::create(o);
	StoreFile::destroy(o.path);
	EXPECT_FALSE(fs::exists(o.path));
}

TEST_F(StoreFileTest, DestroyRefusesAFileThatIsNotAStore)
{
	fs::path other = dir_ / "precious";
	std::ofstream(other) << std::string(8192, 'x');
	EXPECT_THROW(StoreFile::destroy(other), StoreError);
	EXPECT_EQ(fs::file_size(other), 8192u);
}

TEST_F(StoreFileTest, RefusesAnExistingPathAndLeavesItAlone)
{
	fs::path existing = dir_ / "existing";
	std::ofstream(existing) << "keep me";
	auto o = options("existing", 1 << 20);
	EXPECT_THROW(StoreFile::create(o), UsageError);
	EXPECT_EQ(fs::file_size(existing), 7u);
}

TEST_F(StoreFileTest, AFailedCreateLeavesNoFile)
{
	// Large enough to preallocate, too small for the metadata of a 1 TiB
	// origin's chunk map: fails after fallocate, so rollback must unlink.
	auto o = options("small.store", 64 << 10);
	o.origin_sectors = std::uint64_t(1) << 31;
	EXPECT_THROW(StoreFile::create(o), StoreError);
	EXPECT_FALSE(fs::exists(o.path));
}

TEST_F(StoreFileTest, RefusesBadSizesAndChunkSizesBeforeCreatingAnything)
{
	auto o = options("bad.store", (1 << 20) + 512);
	EXPECT_THROW(StoreFile::create(o), UsageError);
	o = options("bad.store", 1 << 20);
	o.chunk_sectors = 100;
	EXPECT_THROW(StoreFile::create(o), UsageError);
	EXPECT_FALSE(fs::exists(o.path));
}

TEST_F(StoreFileTest, RefusesTmpfsNamingIt)
{
	struct statfs sfs{};
	if (statfs("/dev/shm", &sfs) != 0 || static_cast<unsigned long>(sfs.f_type) != TMPFS_MAGIC)
		GTEST_FAIL() << "cannot run: no tmpfs at /dev/shm to refuse";
	StoreCreateOptions o = options("unused", 1 << 20);
	o.path = "/dev/shm/snapmgr-unit-" + std::to_string(getpid()) + ".store";
	try {
		StoreFile::create(o);
		FAIL() << "a store was created on tmpfs";
	} catch (const StoreError &e) {
		EXPECT_NE(std::string(e.what()).find("tmpfs"), std::string::npos) << e.what();
	}
	EXPECT_FALSE(fs::exists(o.path));
}

} // namespace
