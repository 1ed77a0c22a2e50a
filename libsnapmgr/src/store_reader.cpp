// Reading a store the kernel may be using right now. The kernel writes the
// store's blocks with bios on the device, below any page cache, so every
// read here is O_DIRECT: a cached copy could be arbitrarily old.
#include "store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include <fmt/core.h>

#include "aligned_buffer.hpp"
#include "file_descriptor.hpp"
#include "snapmgr/error.hpp"

namespace snapmgr {

namespace {

constexpr std::uint64_t block_size = store_block_size;
// A map block the kernel is writing while we read it can come back torn.
constexpr int torn_read_retries = 5;
constexpr auto torn_read_pause = std::chrono::milliseconds(20);
constexpr std::uint64_t read_batch_blocks = 256;

FileDescriptor open_direct(const std::string &path)
{
	FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));
	if (!fd.valid()) {
		int e = errno;
		throw DeviceError(path, e,
				  fmt::format("{}: cannot open for direct reading: {}", path,
					      std::strerror(e)));
	}
	return fd;
}

void pread_exact(int fd, std::span<std::uint8_t> out, std::uint64_t offset,
		 const std::string &name)
{
	while (!out.empty()) {
		ssize_t n = ::pread(fd, out.data(), out.size(), off_t(offset));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			throw DeviceError(name, e,
					  fmt::format("{}: cannot read {} bytes at byte {}: {}", name,
						      out.size(), offset, std::strerror(e)));
		}
		if (n == 0)
			throw DeviceError(name, EIO,
					  fmt::format("{}: read at byte {} is beyond the end", name,
						      offset));
		out = out.subspan(std::size_t(n));
		offset += std::uint64_t(n);
	}
}

class BlockDeviceSource final : public SectorSource {
public:
	explicit BlockDeviceSource(std::string path) : path_(std::move(path)), fd_(open_direct(path_)) {}
	void read(std::uint64_t sector, std::span<std::uint8_t> out) const override
	{
		pread_exact(fd_.get(), out, sector * 512, path_);
	}
	const std::string &name() const override { return path_; }

private:
	std::string path_;
	FileDescriptor fd_;
};

// Reads device sectors through the store file: each sector is translated
// back to a file offset through the file's own extents.
class StoreFileSource final : public SectorSource {
public:
	explicit StoreFileSource(std::string path) : path_(std::move(path)), fd_(open_direct(path_))
	{
		extents_ = StoreFile::map_extents(fd_.get(), path_);
	}
	void read(std::uint64_t sector, std::span<std::uint8_t> out) const override
	{
		while (!out.empty()) {
			std::uint64_t logical = 0;
			bool found = false;
			for (const StoreExtent &e : extents_) {
				std::uint64_t end = e.sector + e.blocks * store_block_sectors;
				if (sector >= e.sector && sector < end) {
					std::uint64_t offset = logical * block_size + (sector - e.sector) * 512;
					std::size_t now = std::size_t(
						std::min<std::uint64_t>(out.size(), (end - sector) * 512));
					pread_exact(fd_.get(), out.first(now), offset, path_);
					out = out.subspan(now);
					sector += now / 512;
					found = true;
					break;
				}
				logical += e.blocks;
			}
			if (!found)
				throw StoreCorruptError(path_, ERANGE,
							fmt::format("{}: device sector {} is not part of "
								    "this store file",
								    path_, sector));
		}
	}
	const std::string &name() const override { return path_; }
	std::uint64_t first_sector() const { return extents_.front().sector; }

private:
	std::string path_;
	FileDescriptor fd_;
	std::vector<StoreExtent> extents_;
};

Superblock read_superblock(const SectorSource &source, std::uint64_t sb_sector)
{
	AlignedBuffer block(block_size);
	source.read(sb_sector, block.span());
	Superblock sb = decode_superblock(ConstBlockBytes(block.data(), block_size), sb_sector);
	if (sb.sb_sector != sb_sector)
		throw StoreCorruptError(source.name(), EINVAL,
					fmt::format("{}: superblock at sector {} records sector {}: the "
						    "store was moved or copied",
						    source.name(), sb_sector, sb.sb_sector));
	validate_superblock_layout(sb);
	return sb;
}

std::vector<StoreExtent> read_extent_table(const SectorSource &source, const Superblock &sb)
{
	std::vector<StoreExtent> extents;
	AlignedBuffer block(block_size);
	std::size_t table_blocks = (sb.nr_extents + extents_per_block - 1) / extents_per_block;
	for (std::size_t i = 0; i < table_blocks; i++) {
		std::uint64_t sector = sb.extent_table_sectors[i];
		source.read(sector, block.span());
		auto part = decode_extent_block(ConstBlockBytes(block.data(), block_size), 1 + i,
						sb.store_uuid, sb.nr_extents - extents.size(), sector);
		extents.insert(extents.end(), part.begin(), part.end());
	}
	for (const StoreExtent &e : extents) {
		if (!e.blocks || e.sector % store_block_sectors)
			throw StoreCorruptError(source.name(), EINVAL,
						fmt::format("{}: store extent at sector {} ({} blocks) "
							    "is empty or not 4 KiB aligned",
							    source.name(), e.sector, e.blocks));
	}
	if (total_blocks(extents) != sb.store_blocks)
		throw StoreCorruptError(source.name(), EINVAL,
					fmt::format("{}: store extents cover {} blocks, the superblock "
						    "says {}",
						    source.name(), total_blocks(extents),
						    sb.store_blocks));
	// The table must describe where the superblock and the table itself
	// live, as the kernel checks; otherwise it describes another file.
	for (std::uint64_t block_nr = 0; block_nr <= sb.extent_table_blocks; block_nr++) {
		std::uint64_t want = block_nr ? sb.extent_table_sectors[block_nr - 1] : sb.sb_sector;
		if (logical_block_sector(extents, block_nr) != want)
			throw StoreCorruptError(source.name(), EINVAL,
						fmt::format("{}: extent table places block {} elsewhere "
							    "than the superblock records (sector {})",
							    source.name(), block_nr, want));
	}
	return extents;
}

} // namespace

StoreReader::StoreReader(std::unique_ptr<SectorSource> source, Superblock sb,
			 std::vector<StoreExtent> extents)
	: source_(std::move(source)), sb_(std::move(sb)), extents_(std::move(extents)),
	  data_slots_(count_data_slots(extents_, sb_.data_start, COWFILE_BLOCK_SECTORS))
{
}

StoreReader::StoreReader(StoreReader &&) noexcept = default;
StoreReader &StoreReader::operator=(StoreReader &&) noexcept = default;
StoreReader::~StoreReader() = default;

StoreReader StoreReader::open(std::unique_ptr<SectorSource> source, std::uint64_t sb_sector)
{
	if (sb_sector % store_block_sectors)
		throw UsageError("sb_sector", EINVAL,
				 fmt::format("superblock sector {} is not 4 KiB aligned", sb_sector));
	Superblock sb = read_superblock(*source, sb_sector);
	auto extents = read_extent_table(*source, sb);
	return StoreReader(std::move(source), std::move(sb), std::move(extents));
}

StoreReader StoreReader::open_device(const std::string &device_path, std::uint64_t sb_sector)
{
	return open(std::make_unique<BlockDeviceSource>(device_path), sb_sector);
}

StoreReader StoreReader::open_through_file(const std::filesystem::path &store_path)
{
	auto source = std::make_unique<StoreFileSource>(store_path.string());
	std::uint64_t sb_sector = source->first_sector();
	return open(std::move(source), sb_sector);
}

std::vector<MapEntry> StoreReader::read_chunk_map() const
{
	const std::uint64_t nr_chunks = chunk_count(sb_.origin_sectors, sb_.chunk_sectors);
	const std::uint64_t blocks_needed =
		(nr_chunks + map_entries_per_block - 1) / map_entries_per_block;
	std::vector<MapEntry> entries;
	entries.reserve(blocks_needed * map_entries_per_block);
	AlignedBuffer batch(read_batch_blocks * block_size);

	auto sector_of = [&](std::uint64_t index) {
		auto sector = logical_block_sector(extents_, sb_.map_start + index);
		if (!sector)
			throw StoreCorruptError(source_->name(), ERANGE,
						fmt::format("{}: map block {} is outside the store",
							    source_->name(), sb_.map_start + index));
		return *sector;
	};

	for (std::uint64_t first = 0; first < blocks_needed;) {
		// One read per physically contiguous run of map blocks.
		const std::uint64_t first_sector = sector_of(first);
		std::uint64_t count = 1;
		while (first + count < blocks_needed && count < read_batch_blocks &&
		       sector_of(first + count) == first_sector + count * store_block_sectors)
			count++;
		source_->read(first_sector, batch.span().first(count * block_size));

		for (std::uint64_t i = 0; i < count; i++) {
			const std::uint64_t blocknr = sb_.map_start + first + i;
			const std::uint64_t sector = first_sector + i * store_block_sectors;
			BlockBytes block(batch.data() + i * block_size, block_size);
			for (int attempt = 0; attempt < torn_read_retries &&
					      check_block(block, COWFILE_MAP_MAGIC, blocknr, &sb_.store_uuid) ==
						      BlockDefect::bad_checksum;
			     attempt++) {
				std::this_thread::sleep_for(torn_read_pause);
				source_->read(sector, block);
			}
			auto part = decode_map_block(block, blocknr, sb_.store_uuid, sector);
			entries.insert(entries.end(), part.begin(), part.end());
		}
		first += count;
	}
	entries.resize(nr_chunks);
	return entries;
}

ChangeSet StoreReader::changes_since(std::uint64_t since_epoch,
				     const std::optional<Uuid> &generation) const
{
	ChangeSet answer;
	if (auto reason = full_backup_reason(sb_, since_epoch, generation)) {
		answer.full = true;
		answer.full_reason = *reason;
		return answer;
	}
	auto entries = read_chunk_map();
	// The kernel may have started a new generation or lost tracking while
	// the map was read; the map alone cannot show that.
	Superblock now = read_superblock(*source_, sb_.sb_sector);
	if (now.generation_uuid != sb_.generation_uuid || now.tracking_lost()) {
		answer.full = true;
		answer.full_reason = full_backup_reason(now, since_epoch, sb_.generation_uuid)
					     .value_or("a new generation started while reading");
		return answer;
	}
	answer.ranges = changed_ranges(entries, since_epoch, sb_.chunk_sectors, sb_.origin_sectors);
	return answer;
}

} // namespace snapmgr
