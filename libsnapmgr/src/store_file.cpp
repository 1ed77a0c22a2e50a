// Creating, pinning and removing store files. The kernel reads and writes a
// store's sectors directly on the filesystem's block device, so the file
// must be fully allocated, its metadata extents must be written extents (an
// unwritten extent would hold stale disk data that the kernel reads as
// metadata), its extents must never move (immutable flag, no shared or
// encoded extents) and everything is written with O_DIRECT so no page cache
// copy can later be flushed over what the kernel wrote.
#include "store.hpp"

#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include <fmt/core.h>

#include "aligned_buffer.hpp"
#include "file_descriptor.hpp"
#include "snapmgr/cowfile.hpp"
#include "snapmgr/error.hpp"
#include "throw_errno.hpp"

namespace snapmgr {

namespace {

constexpr std::uint64_t block_size = store_block_size;
// Metadata is written in batches of this many blocks (1 MiB).
constexpr std::size_t write_batch_blocks = 256;

std::string filesystem_name(long magic)
{
	switch (static_cast<unsigned long>(magic)) {
	case EXT4_SUPER_MAGIC:
		return "ext2/ext3/ext4";
	case XFS_SUPER_MAGIC:
		return "xfs";
	case BTRFS_SUPER_MAGIC:
		return "btrfs";
	case TMPFS_MAGIC:
		return "tmpfs";
	case 0x2fc12fc1:
		return "zfs";
	case NFS_SUPER_MAGIC:
		return "nfs";
	case OVERLAYFS_SUPER_MAGIC:
		return "overlayfs";
	case F2FS_SUPER_MAGIC:
		return "f2fs";
	case 0x65735546:
		return "fuse";
	case SQUASHFS_MAGIC:
		return "squashfs";
	default:
		return fmt::format("an unknown filesystem (magic {:#x})", static_cast<unsigned long>(magic));
	}
}

// Only filesystems whose file extents stay where FIEMAP reports them while
// the file is immutable: no copy-on-write, no reflink sharing, no
// compression, and a real block device underneath.
void check_filesystem(int fd, const std::string &name)
{
	struct statfs fs{};
	if (fstatfs(fd, &fs) < 0)
		throw_errno(name, "cannot query the filesystem");
	auto magic = static_cast<unsigned long>(fs.f_type);
	if (magic == EXT4_SUPER_MAGIC || magic == XFS_SUPER_MAGIC)
		return;
	throw StoreError(name, EOPNOTSUPP,
			 fmt::format("{}: the store would live on {}, where file extents can move, be "
				     "shared or have no block device; put the store on an ext4 or xfs "
				     "filesystem",
				     name, filesystem_name(fs.f_type)));
}

struct RawExtent {
	std::uint64_t logical;
	std::uint64_t physical;
	std::uint64_t length;
	std::uint32_t flags;
};

std::vector<RawExtent> fiemap_all(int fd, const std::string &name)
{
	constexpr std::size_t batch = 256;
	// std::uint64_t elements keep the struct properly aligned.
	std::vector<std::uint64_t> storage(
		(sizeof(struct fiemap) + batch * sizeof(struct fiemap_extent)) / 8 + 1);
	auto *fm = reinterpret_cast<struct fiemap *>(storage.data());
	std::vector<RawExtent> out;
	std::uint64_t next = 0;
	bool first = true;
	for (;;) {
		std::memset(storage.data(), 0, storage.size() * 8);
		fm->fm_start = next;
		fm->fm_length = FIEMAP_MAX_OFFSET - next;
		// Sync once so delayed allocations are resolved before we look.
		fm->fm_flags = first ? FIEMAP_FLAG_SYNC : 0;
		fm->fm_extent_count = batch;
		first = false;
		if (ioctl(fd, FS_IOC_FIEMAP, fm) < 0)
			throw_errno(name, "cannot map the file's extents (FIEMAP)");
		if (fm->fm_mapped_extents == 0)
			return out;
		for (std::uint32_t i = 0; i < fm->fm_mapped_extents; i++) {
			const struct fiemap_extent &e = fm->fm_extents[i];
			out.push_back({e.fe_logical, e.fe_physical, e.fe_length, e.fe_flags});
			if (e.fe_flags & FIEMAP_EXTENT_LAST)
				return out;
		}
		const struct fiemap_extent &last = fm->fm_extents[fm->fm_mapped_extents - 1];
		next = last.fe_logical + last.fe_length;
	}
}

std::string describe_bad_flags(std::uint32_t flags)
{
	std::string s;
	auto add = [&](std::uint32_t bit, const char *what) {
		if (flags & bit)
			s += s.empty() ? what : fmt::format(", {}", what);
	};
	add(FIEMAP_EXTENT_SHARED, "shared (reflinked or deduplicated)");
	add(FIEMAP_EXTENT_UNKNOWN, "location unknown");
	add(FIEMAP_EXTENT_DELALLOC, "not yet allocated");
	add(FIEMAP_EXTENT_ENCODED, "encoded (compressed or encrypted)");
	add(FIEMAP_EXTENT_DATA_INLINE, "inline data");
	add(FIEMAP_EXTENT_NOT_ALIGNED, "not block aligned");
	return s;
}

// Validates the raw extents of a file of file_size bytes and merges
// physically contiguous runs into store extents, in logical order.
std::vector<StoreExtent> store_extents_from(const std::vector<RawExtent> &raw,
					    std::uint64_t file_size, const std::string &name)
{
	constexpr std::uint32_t refused = FIEMAP_EXTENT_SHARED | FIEMAP_EXTENT_UNKNOWN |
					  FIEMAP_EXTENT_DELALLOC | FIEMAP_EXTENT_ENCODED |
					  FIEMAP_EXTENT_DATA_INLINE | FIEMAP_EXTENT_NOT_ALIGNED;
	std::vector<StoreExtent> extents;
	std::uint64_t covered = 0;
	std::uint64_t last_physical_end = 0;
	for (const RawExtent &e : raw) {
		if (e.logical >= file_size)
			break; // preallocation past EOF is not part of the store
		if (e.flags & refused)
			throw StoreError(name, EINVAL,
					 fmt::format("{}: extent at file offset {} is {}; the kernel "
						     "cannot use it in place. Recreate the store as "
						     "a new file on ext4 or xfs",
						     name, e.logical, describe_bad_flags(e.flags)));
		if (e.physical % block_size || e.length % block_size || e.logical % block_size)
			throw StoreError(name, EINVAL,
					 fmt::format("{}: extent at file offset {} (physical {}, "
						     "{} bytes) is not 4 KiB aligned; use a "
						     "filesystem with 4 KiB blocks",
						     name, e.logical, e.physical, e.length));
		if (e.logical != covered)
			throw StoreError(name, EINVAL,
					 fmt::format("{}: the file has a hole at offset {}; it must be "
						     "fully preallocated",
						     name, covered));
		std::uint64_t length = std::min(e.length, file_size - e.logical);
		if (!extents.empty() && e.physical == last_physical_end)
			extents.back().blocks += length / block_size;
		else
			extents.push_back({e.physical / 512, length / block_size});
		covered = e.logical + length;
		last_physical_end = e.physical + length;
	}
	if (covered != file_size)
		throw StoreError(name, EINVAL,
				 fmt::format("{}: extents cover {} of {} bytes; the file must be fully "
					     "preallocated",
					     name, covered, file_size));
	return extents;
}

// Blocks the kernel reads before it writes them: up to the chunk map's end.
std::uint64_t metadata_end(const StoreLayout &layout)
{
	return layout.map_start + layout.map_blocks;
}

void require_written(const std::vector<RawExtent> &raw, std::uint64_t metadata_bytes,
		     const std::string &name)
{
	for (const RawExtent &e : raw) {
		if (e.logical >= metadata_bytes)
			break;
		if (e.flags & FIEMAP_EXTENT_UNWRITTEN)
			throw StoreError(name, EIO,
					 fmt::format("{}: metadata at file offset {} is still an "
						     "unwritten extent after being written; the "
						     "kernel would read stale disk data there",
						     name, e.logical));
	}
}

void pwrite_all(int fd, std::span<const std::uint8_t> data, std::uint64_t offset,
		const std::string &name)
{
	while (!data.empty()) {
		ssize_t n = ::pwrite(fd, data.data(), data.size(), off_t(offset));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			throw_errno(name, fmt::format("cannot write at offset {}", offset));
		}
		data = data.subspan(std::size_t(n));
		offset += std::uint64_t(n);
	}
}

void sync_data(int fd, const std::string &name)
{
	if (fdatasync(fd) < 0)
		throw_errno(name, "cannot flush to disk (fdatasync)");
}

unsigned int get_inode_flags(int fd, const std::string &name)
{
	int flags = 0;
	if (ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0)
		throw_errno(name, "cannot read the inode flags");
	return static_cast<unsigned int>(flags);
}

void set_inode_flags(int fd, unsigned int flags, const std::string &name)
{
	int value = static_cast<int>(flags);
	if (ioctl(fd, FS_IOC_SETFLAGS, &value) < 0)
		throw_errno(name, "cannot change the inode flags (immutable)");
}

// Undoes a half-made store: whatever failed, the path is left as it was.
class CreateRollback {
public:
	CreateRollback(std::filesystem::path path, int fd) : path_(std::move(path)), fd_(fd) {}
	CreateRollback(const CreateRollback &) = delete;
	CreateRollback &operator=(const CreateRollback &) = delete;
	~CreateRollback()
	{
		if (committed_)
			return;
		if (immutable_) {
			int flags = 0;
			if (ioctl(fd_, FS_IOC_GETFLAGS, &flags) == 0) {
				flags &= ~FS_IMMUTABLE_FL;
				ioctl(fd_, FS_IOC_SETFLAGS, &flags);
			}
		}
		::unlink(path_.c_str());
	}
	void immutable_set() noexcept { immutable_ = true; }
	void commit() noexcept { committed_ = true; }

private:
	std::filesystem::path path_;
	int fd_;
	bool immutable_ = false;
	bool committed_ = false;
};

void check_create_options(const StoreCreateOptions &o)
{
	const std::string name = o.path.string();
	if (o.path.empty())
		throw UsageError("path", EINVAL, "no store path given");
	if (!valid_chunk_sectors(o.chunk_sectors))
		throw UsageError("chunk_sectors", EINVAL,
				 fmt::format("chunk size {} sectors is not a power of two between {} "
					     "and {}",
					     o.chunk_sectors, COWFILE_MIN_CHUNK_SECTORS,
					     COWFILE_MAX_CHUNK_SECTORS));
	if (o.origin_sectors == 0)
		throw UsageError("origin_sectors", EINVAL, "origin size must be given (in sectors)");
	if (o.size_bytes == 0 || o.size_bytes % block_size)
		throw UsageError("size", EINVAL,
				 fmt::format("store size {} is not a positive multiple of 4096 bytes",
					     o.size_bytes));
	struct stat st{};
	if (::lstat(o.path.c_str(), &st) == 0)
		throw UsageError(name, EEXIST,
				 fmt::format("{} already exists; choose a new path or remove it "
					     "(cowfile-store destroy for an old store)",
					     name));
	if (errno != ENOENT)
		throw_errno(name, "cannot check the path");
}

// Blocks 0 .. map_start-1 are zeroed now (filled once the extents are known);
// the chunk map gets its final, empty content. The index area after it is
// left as allocated, like the data area: the kernel's scratch space, which
// it never reads before writing it.
void write_metadata_region(int fd, const StoreLayout &layout, const Uuid &store_uuid,
			   const std::string &name)
{
	AlignedBuffer buffer(write_batch_blocks * block_size);
	const std::uint64_t end = metadata_end(layout);
	for (std::uint64_t first = 0; first < end; first += write_batch_blocks) {
		std::uint64_t count = std::min<std::uint64_t>(write_batch_blocks, end - first);
		std::memset(buffer.data(), 0, buffer.size());
		for (std::uint64_t i = 0; i < count; i++) {
			std::uint64_t block = first + i;
			if (block < layout.map_start)
				continue;
			encode_map_block(block, store_uuid, {},
					 BlockBytes(buffer.data() + i * block_size, block_size));
		}
		pwrite_all(fd, buffer.span().first(count * block_size), first * block_size, name);
	}
}

void write_superblock_and_table(int fd, const Superblock &sb,
				const std::vector<StoreExtent> &extents, const std::string &name)
{
	AlignedBuffer table(std::size_t(sb.extent_table_blocks) * block_size);
	std::span<const StoreExtent> rest(extents);
	for (std::uint32_t i = 0; i < sb.extent_table_blocks; i++) {
		auto part = rest.first(std::min(rest.size(), extents_per_block));
		rest = rest.subspan(part.size());
		encode_extent_block(1 + i, sb.store_uuid, part,
				    BlockBytes(table.data() + i * block_size, block_size));
	}
	pwrite_all(fd, table.span(), block_size, name);
	sync_data(fd, name);
	// The superblock goes last so a store is never valid before its table.
	AlignedBuffer super(block_size);
	encode_superblock(sb, BlockBytes(super.data(), block_size));
	pwrite_all(fd, super.span(), 0, name);
	sync_data(fd, name);
}

void sync_parent_directory(const std::filesystem::path &path)
{
	auto dir = path.parent_path();
	FileDescriptor fd(::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
	if (!fd.valid() || fsync(fd.get()) < 0)
		throw_errno(dir.string(), "cannot flush the directory holding the store");
}

} // namespace

BlockDeviceId StoreFile::device_of(int fd, const std::string &name)
{
	struct stat st{};
	if (fstat(fd, &st) < 0)
		throw_errno(name, "cannot stat");
	BlockDeviceId id;
	id.major = major(st.st_dev);
	id.minor = minor(st.st_dev);
	std::string uevent = fmt::format("/sys/dev/block/{}:{}/uevent", id.major, id.minor);
	std::ifstream in(uevent);
	std::string line;
	while (std::getline(in, line)) {
		if (line.rfind("DEVNAME=", 0) == 0)
			id.path = "/dev/" + line.substr(8);
	}
	if (id.path.empty())
		throw StoreError(name, ENODEV,
				 fmt::format("{}: its filesystem is on device {}:{}, which is not a "
					     "block device ({} has no DEVNAME)",
					     name, id.major, id.minor, uevent));
	return id;
}

std::vector<StoreExtent> StoreFile::map_extents(int fd, const std::string &name)
{
	struct stat st{};
	if (fstat(fd, &st) < 0)
		throw_errno(name, "cannot stat");
	return store_extents_from(fiemap_all(fd, name), std::uint64_t(st.st_size), name);
}

std::vector<StoreExtent> merged_extents(std::span<const StoreExtent> extents)
{
	std::vector<StoreExtent> out;
	for (const StoreExtent &e : extents) {
		if (!out.empty() &&
		    out.back().sector + out.back().blocks * store_block_sectors == e.sector)
			out.back().blocks += e.blocks;
		else
			out.push_back(e);
	}
	return out;
}

std::optional<std::string> StoreFile::mismatch(const std::filesystem::path &path,
					       const std::string &name,
					       std::span<const StoreExtent> recorded)
{
	FileDescriptor fd(open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
	if (!fd.valid() && errno == ENOENT)
		return fmt::format("the store file {} is gone from its filesystem", name);
	if (!fd.valid())
		throw_errno(name, "cannot open the store file");
	if (!(get_inode_flags(fd.get(), name) & FS_IMMUTABLE_FL))
		return fmt::format("the store file {} is no longer pinned (its immutable flag "
				   "was cleared), so its blocks may have moved",
				   name);
	if (merged_extents(map_extents(fd.get(), name)) != merged_extents(recorded))
		return fmt::format("the blocks of the store file {} are not where the store "
				   "records them (the file was replaced or its blocks moved)",
				   name);
	return std::nullopt;
}

CreatedStore StoreFile::create(const StoreCreateOptions &options)
{
	check_create_options(options);
	const std::string name = options.path.string();

	FileDescriptor fd(::open(options.path.c_str(),
				 O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
	if (!fd.valid()) {
		if (errno == EEXIST)
			throw UsageError(name, EEXIST, fmt::format("{} already exists", name));
		throw_errno(name, "cannot create the store file");
	}
	CreateRollback rollback(options.path, fd.get());

	// The umask may only have narrowed 0600; make it exact.
	if (fchmod(fd.get(), 0600) < 0)
		throw_errno(name, "cannot set mode 0600");
	check_filesystem(fd.get(), name);
	BlockDeviceId device = device_of(fd.get(), name);

	if (fallocate(fd.get(), 0, 0, off_t(options.size_bytes)) < 0) {
		int e = errno;
		if (e == EOPNOTSUPP)
			throw StoreError(name, e,
					 fmt::format("{}: the filesystem cannot preallocate files "
						     "(fallocate); put the store on ext4 or xfs",
						     name));
		if (e == ENOSPC)
			throw StoreError(name, e,
					 fmt::format("{}: not enough free space for {} bytes; free "
						     "space or choose a smaller store",
						     name, options.size_bytes));
		errno = e;
		throw_errno(name, fmt::format("cannot preallocate {} bytes", options.size_bytes));
	}
	if (fsync(fd.get()) < 0)
		throw_errno(name, "cannot flush the allocation (fsync)");

	// All further I/O bypasses the page cache: the kernel writes these
	// blocks on the device, a cached copy would be stale or flushed over it.
	int fl = fcntl(fd.get(), F_GETFL);
	if (fl < 0 || fcntl(fd.get(), F_SETFL, fl | O_DIRECT) < 0)
		throw_errno(name, "cannot switch to direct I/O (O_DIRECT)");

	const std::uint64_t store_blocks = options.size_bytes / block_size;
	auto preallocated = map_extents(fd.get(), name);
	StoreLayout layout = compute_layout(store_blocks, options.chunk_sectors,
					    options.origin_sectors, preallocated.size());
	const Uuid store_uuid = random_uuid();
	const Uuid generation_uuid = random_uuid();

	write_metadata_region(fd.get(), layout, store_uuid, name);
	sync_data(fd.get(), name);

	// Writing converts the metadata region to written extents, which may
	// split them: the table describes the extents as they are now.
	auto raw = fiemap_all(fd.get(), name);
	require_written(raw, metadata_end(layout) * block_size, name);
	auto extents = store_extents_from(raw, options.size_bytes, name);
	if (extents.size() > std::size_t(layout.extent_table_blocks) * extents_per_block)
		throw StoreError(name, E2BIG,
				 fmt::format("{}: the file has {} extents after writing its "
					     "metadata, more than the table holds; recreate it",
					     name, extents.size()));
	std::uint64_t data_slots = count_data_slots(extents, layout.data_start, COWFILE_BLOCK_SECTORS);
	if (data_slots == 0)
		throw StoreError(name, ENOSPC,
				 fmt::format("{}: a store of {} bytes leaves no room for a single "
					     "{}-byte chunk copy after {} bytes of metadata; make "
					     "it larger",
					     name, options.size_bytes,
					     std::uint64_t(options.chunk_sectors) * 512,
					     layout.data_start * block_size));

	Superblock sb;
	sb.store_uuid = store_uuid;
	sb.chunk_sectors = options.chunk_sectors;
	sb.origin_sectors = options.origin_sectors;
	sb.sb_sector = extents.front().sector;
	sb.generation_uuid = generation_uuid;
	sb.epoch = 1;
	sb.generation_epoch = 1;
	sb.store_blocks = store_blocks;
	sb.nr_extents = std::uint32_t(extents.size());
	sb.extent_table_blocks = layout.extent_table_blocks;
	sb.map_start = layout.map_start;
	sb.map_blocks = layout.map_blocks;
	sb.data_start = layout.data_start;
	for (std::uint32_t i = 0; i < layout.extent_table_blocks; i++)
		sb.extent_table_sectors.push_back(*logical_block_sector(extents, 1 + i));
	write_superblock_and_table(fd.get(), sb, extents, name);

	// Pinned: the filesystem may not move, share or free these blocks now.
	set_inode_flags(fd.get(), get_inode_flags(fd.get(), name) | FS_IMMUTABLE_FL, name);
	rollback.immutable_set();

	auto pinned_raw = fiemap_all(fd.get(), name);
	require_written(pinned_raw, metadata_end(layout) * block_size, name);
	if (store_extents_from(pinned_raw, options.size_bytes, name) != extents)
		throw StoreError(name, EAGAIN,
				 fmt::format("{}: the file's extents changed while the store was "
					     "being made; try again",
					     name));
	sync_parent_directory(options.path);
	rollback.commit();

	CreatedStore created;
	created.path = options.path;
	created.store_device = std::move(device);
	created.sb_sector = sb.sb_sector;
	created.extents = std::move(extents);
	created.layout = layout;
	created.data_slots = data_slots;
	created.chunk_sectors = options.chunk_sectors;
	created.origin_sectors = options.origin_sectors;
	created.store_uuid = store_uuid;
	created.generation_uuid = generation_uuid;
	return created;
}

void StoreFile::destroy(const std::filesystem::path &path)
{
	const std::string name = path.string();
	FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_DIRECT));
	if (!fd.valid())
		throw_errno(name, "cannot open the store");
	struct stat st{};
	if (fstat(fd.get(), &st) < 0)
		throw_errno(name, "cannot stat");
	if (!S_ISREG(st.st_mode))
		throw UsageError(name, EINVAL, fmt::format("{} is not a regular file", name));

	// Refuse to unpin and remove anything that is not a store.
	AlignedBuffer block(block_size);
	ssize_t n = ::pread(fd.get(), block.data(), block_size, 0);
	if (n < 0)
		throw_errno(name, "cannot read the superblock");
	if (std::size_t(n) != block_size ||
	    check_block(ConstBlockBytes(block.data(), block_size), COWFILE_SB_MAGIC, 0, nullptr) !=
		    BlockDefect::none)
		throw StoreError(name, EINVAL,
				 fmt::format("{} does not start with a valid cowfile store "
					     "superblock; refusing to remove it",
					     name));

	// The kernel writes the store's sectors directly: freeing them while a
	// cowfile device uses the store would corrupt whatever the filesystem
	// puts there next.
	auto extents = map_extents(fd.get(), name);
	BlockDeviceId device = device_of(fd.get(), name);
	auto users = cowfile_devices_using_store(device.major, device.minor, extents.front().sector);
	if (!users.empty())
		throw StoreError(name, EBUSY,
				 fmt::format("{} is in use by the cowfile device {}; remove that "
					     "device first",
					     name, users.front()));

	unsigned int flags = get_inode_flags(fd.get(), name);
	if (flags & FS_IMMUTABLE_FL)
		set_inode_flags(fd.get(), flags & ~FS_IMMUTABLE_FL, name);
	if (::unlink(path.c_str()) < 0) {
		int e = errno;
		if (flags & FS_IMMUTABLE_FL)
			ioctl(fd.get(), FS_IOC_SETFLAGS, &flags); // pin it again
		errno = e;
		throw_errno(name, "cannot remove the store");
	}
}

namespace {

// Clears the immutable flag for the lifetime of the object.
class Unpinned {
public:
	Unpinned(int fd, std::string name) : fd_(fd), name_(std::move(name))
	{
		flags_ = get_inode_flags(fd_, name_);
		if (!(flags_ & FS_IMMUTABLE_FL))
			throw StoreError(name_, EINVAL,
					 fmt::format("{} is not pinned (immutable); it is not a store "
						     "in use, or someone unpinned it",
						     name_));
		set_inode_flags(fd_, flags_ & ~FS_IMMUTABLE_FL, name_);
	}
	Unpinned(const Unpinned &) = delete;
	Unpinned &operator=(const Unpinned &) = delete;
	~Unpinned() { ioctl(fd_, FS_IOC_SETFLAGS, &flags_); }
	void pin_again() { set_inode_flags(fd_, flags_, name_); }

private:
	int fd_;
	std::string name_;
	unsigned int flags_ = 0;
};

FileDescriptor open_pinned_store(const std::filesystem::path &path)
{
	FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
	if (!fd.valid())
		throw_errno(path.string(), "cannot open the store");
	check_filesystem(fd.get(), path.string());
	return fd;
}

} // namespace

std::vector<StoreExtent> StoreFile::extend(const std::filesystem::path &path,
					   std::uint64_t add_bytes)
{
	const std::string name = path.string();
	if (add_bytes == 0 || add_bytes % block_size)
		throw UsageError(name, EINVAL,
				 fmt::format("cannot grow {} by {} bytes: not a positive multiple of "
					     "4096",
					     name, add_bytes));
	FileDescriptor fd = open_pinned_store(path);
	struct stat st{};
	if (fstat(fd.get(), &st) < 0)
		throw_errno(name, "cannot stat");
	const auto old_size = std::uint64_t(st.st_size);
	const auto old_extents = map_extents(fd.get(), name);
	{
		Unpinned unpinned(fd.get(), name);
		// The inode is writable only while unpinned; a read-only fd
		// cannot fallocate, so open it again for writing.
		FileDescriptor w(::open(path.c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC));
		if (!w.valid())
			throw_errno(name, "cannot open the store for writing");
		// Undoes a partial extension; the error says so if even that fails
		// (the file is then longer than the store it holds).
		const auto cut_back = [&] {
			if (ftruncate(w.get(), off_t(old_size)) == 0)
				return std::string();
			return fmt::format(" (and cutting the file back to {} bytes failed: {})",
					   old_size, std::strerror(errno));
		};
		if (fallocate(w.get(), 0, off_t(old_size), off_t(add_bytes)) < 0) {
			int e = errno;
			const std::string undo = cut_back();
			errno = e;
			if (e == ENOSPC)
				throw StoreError(name, e,
						 fmt::format("{}: not enough free space to add {} bytes{}",
							     name, add_bytes, undo));
			throw_errno(name, fmt::format("cannot preallocate {} more bytes{}", add_bytes,
						      undo));
		}
		if (fsync(w.get()) < 0) {
			int e = errno;
			const std::string undo = cut_back();
			errno = e;
			throw_errno(name, "cannot flush the allocation (fsync)" + undo);
		}
		unpinned.pin_again();
	}
	auto extents = map_extents(fd.get(), name);
	std::uint64_t old_blocks = old_size / block_size;
	// The old part must be where the kernel knows it.
	std::vector<StoreExtent> old_part;
	for (const auto &e : extents) {
		std::uint64_t have = total_blocks(old_part);
		if (have >= old_blocks)
			break;
		old_part.push_back({e.sector, std::min(e.blocks, old_blocks - have)});
	}
	if (old_part != old_extents) {
		shrink(path, old_size);
		throw StoreError(name, EAGAIN,
				 fmt::format("{}: the store's existing extents changed while it was "
					     "grown; it was cut back",
					     name));
	}
	return extents;
}

void StoreFile::shrink(const std::filesystem::path &path, std::uint64_t size_bytes)
{
	const std::string name = path.string();
	FileDescriptor fd = open_pinned_store(path);
	Unpinned unpinned(fd.get(), name);
	FileDescriptor w(::open(path.c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC));
	if (!w.valid() || ftruncate(w.get(), off_t(size_bytes)) < 0 || fsync(w.get()) < 0)
		throw_errno(name, fmt::format("cannot cut the store back to {} bytes", size_bytes));
	unpinned.pin_again();
}

std::vector<StoreExtent> extents_from_block(std::span<const StoreExtent> extents,
					    std::uint64_t first_block)
{
	std::vector<StoreExtent> out;
	std::uint64_t logical = 0;
	for (const auto &e : extents) {
		std::uint64_t end = logical + e.blocks;
		if (end > first_block) {
			std::uint64_t skip = first_block > logical ? first_block - logical : 0;
			out.push_back({e.sector + skip * store_block_sectors, e.blocks - skip});
		}
		logical = end;
	}
	return out;
}

} // namespace snapmgr
