#pragma once

// The dm-cowfile store: its on-disk blocks (dm-target/include/uapi/linux/
// dm-cowfile.h is the contract with the kernel), its layout, creating and
// pinning a store file, reading a live store from its block device, and the
// changed ranges it records. Private to the library (and to cowfile-store
// and the unit tests, which look inside stores): the public API is in
// include/snapmgr/.

#include <linux/dm-cowfile.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "snapmgr/types.hpp"

namespace snapmgr {

// RFC 4122 version 4, from getrandom().
Uuid random_uuid();

constexpr std::size_t store_block_size = COWFILE_BLOCK_SIZE;
constexpr std::uint64_t store_block_sectors = COWFILE_BLOCK_SECTORS;
constexpr std::size_t extents_per_block = COWFILE_EXTENTS_PER_BLOCK;
constexpr std::size_t map_entries_per_block = COWFILE_MAP_ENTRIES_PER_BLOCK;
constexpr std::uint32_t max_extent_table_blocks = COWFILE_MAX_EXTENT_TABLE_BLOCKS;

using BlockBytes = std::span<std::uint8_t, store_block_size>;
using ConstBlockBytes = std::span<const std::uint8_t, store_block_size>;

// A run of logical store blocks, contiguous on the store device. A list of
// them, in logical order, maps the whole store.
struct StoreExtent {
	std::uint64_t sector; // first 512-byte sector on the store device
	std::uint64_t blocks; // length in 4 KiB logical blocks
	bool operator==(const StoreExtent &) const = default;
};

// The device sector of a logical block, or nullopt past the end.
std::optional<std::uint64_t> logical_block_sector(std::span<const StoreExtent> extents,
						  std::uint64_t block);
std::uint64_t total_blocks(std::span<const StoreExtent> extents);

// ---- layout ---------------------------------------------------------------

struct StoreLayout {
	std::uint64_t store_blocks = 0;
	std::uint32_t extent_table_blocks = 0; // capacity: blocks 1..n
	std::uint64_t map_start = 0;
	std::uint64_t map_blocks = 0;
	std::uint64_t data_start = 0;
	bool operator==(const StoreLayout &) const = default;
};

std::uint64_t chunk_count(std::uint64_t origin_sectors, std::uint32_t chunk_sectors);
std::uint64_t map_blocks_for(std::uint64_t origin_sectors, std::uint32_t chunk_sectors);
// The index area between the chunk map and the data area: the kernel's
// scratch space for the index of the held snapshot's copies (uapi header).
std::uint64_t index_blocks_for(std::uint64_t origin_sectors);
// Room for four times the extents the store has now (so "grow" can append),
// at least 4 blocks, at most what the superblock can point to. Throws
// StoreError when even the maximum cannot hold nr_extents.
std::uint32_t extent_table_capacity(std::size_t nr_extents);
// Throws StoreError when the metadata does not fit in store_blocks.
StoreLayout compute_layout(std::uint64_t store_blocks, std::uint32_t chunk_sectors,
			   std::uint64_t origin_sectors, std::size_t nr_extents);
// Slots of slot_sectors in the data area: each extent holds as many whole
// slots as fit in its part at or after data_start. Format 2 slots are one
// block (COWFILE_BLOCK_SECTORS): slot n is logical block data_start + n, as
// the kernel numbers them.
std::uint64_t count_data_slots(std::span<const StoreExtent> extents, std::uint64_t data_start,
			       std::uint32_t chunk_sectors);

// ---- blocks ---------------------------------------------------------------

struct Superblock {
	Uuid store_uuid{};
	std::uint32_t version = COWFILE_FORMAT_VERSION;
	std::uint32_t flags = 0;
	std::uint32_t block_size = COWFILE_BLOCK_SIZE;
	std::uint32_t chunk_sectors = COWFILE_DEFAULT_CHUNK_SECTORS;
	std::uint64_t origin_sectors = 0;
	std::uint64_t sb_sector = 0;
	Uuid generation_uuid{};
	std::uint64_t epoch = 1;
	std::uint64_t generation_epoch = 1;
	std::uint64_t store_blocks = 0;
	std::uint32_t nr_extents = 0;
	std::uint32_t extent_table_blocks = 0;
	std::uint64_t map_start = 0;
	std::uint64_t map_blocks = 0;
	std::uint64_t data_start = 0;
	std::uint32_t snap_state = COWFILE_SNAP_NONE;
	std::uint32_t snap_invalid_reason = COWFILE_INVALID_NONE;
	std::uint64_t snap_epoch = 0;
	std::uint64_t log_checkpoint = 0;
	// crc32c of the origin's first chunk at the clean unload, when
	// COWFILE_SB_ORIGIN_SUM is set (the kernel compares it at the next load).
	std::uint32_t origin_sum = 0;
	// Device sector of each extent table block (extent_table_blocks of them).
	std::vector<std::uint64_t> extent_table_sectors;

	bool clean() const noexcept { return flags & COWFILE_SB_CLEAN; }
	bool tracking_lost() const noexcept { return flags & COWFILE_SB_TRACKING_LOST; }
	StoreLayout layout() const noexcept
	{
		return {store_blocks, extent_table_blocks, map_start, map_blocks, data_start};
	}
	bool operator==(const Superblock &) const = default;
};

struct MapEntry {
	std::uint32_t last_epoch = 0; // 0: never written in this store
	std::uint32_t reserved = 0;   // 0 in format 2
	bool operator==(const MapEntry &) const = default;
};

// Why a block read back cannot be trusted.
enum class BlockDefect { none, bad_magic, bad_checksum, wrong_block_number, foreign_store };
std::string_view describe(BlockDefect defect) noexcept;

// Checks a block's header; expected_store nullptr skips the UUID check (the
// superblock is where the UUID is learnt).
BlockDefect check_block(ConstBlockBytes block, std::uint32_t magic, std::uint64_t blocknr,
			const Uuid *expected_store) noexcept;
std::uint32_t block_checksum(ConstBlockBytes block) noexcept;

// Encoders fill the whole block (zero padding) and seal it with its checksum.
void encode_superblock(const Superblock &sb, BlockBytes out);
void encode_extent_block(std::uint64_t blocknr, const Uuid &store,
			 std::span<const StoreExtent> extents, BlockBytes out);
void encode_map_block(std::uint64_t blocknr, const Uuid &store, std::span<const MapEntry> entries,
		      BlockBytes out);

// Decoders validate the header and throw StoreCorruptError naming the block
// and the device sector it was read from ("superblock checksum mismatch at
// sector 2048").
Superblock decode_superblock(ConstBlockBytes block, std::uint64_t sector);
std::vector<StoreExtent> decode_extent_block(ConstBlockBytes block, std::uint64_t blocknr,
					     const Uuid &store, std::size_t count,
					     std::uint64_t sector);
std::vector<MapEntry> decode_map_block(ConstBlockBytes block, std::uint64_t blocknr,
				       const Uuid &store, std::uint64_t sector);

// Checks what the kernel checks before it trusts a superblock's layout.
void validate_superblock_layout(const Superblock &sb);

// ---- changed ranges ---------------------------------------------------------

// Why the changes since `since_epoch` cannot be answered from this store
// (another generation, history older than the generation, tracking lost,
// an epoch this store never reached), or nullopt when they can.
std::optional<std::string> full_backup_reason(const Superblock &sb, std::uint64_t since_epoch,
					      const std::optional<Uuid> &generation);
// Byte ranges of the chunks written after since_epoch (last_epoch >
// since_epoch), adjacent chunks merged, the last chunk clipped to the
// origin's size. Entries past the origin's last chunk are ignored.
std::vector<ByteRange> changed_ranges(std::span<const MapEntry> entries, std::uint64_t since_epoch,
				      std::uint32_t chunk_sectors, std::uint64_t origin_sectors);

// ---- store files -------------------------------------------------------------

struct BlockDeviceId {
	unsigned major = 0;
	unsigned minor = 0;
	std::string path; // /dev/<DEVNAME from sysfs uevent>
};

struct StoreCreateOptions {
	std::filesystem::path path;
	std::uint64_t size_bytes = 0; // multiple of 4096
	std::uint32_t chunk_sectors = COWFILE_DEFAULT_CHUNK_SECTORS;
	std::uint64_t origin_sectors = 0;
};

struct CreatedStore {
	std::filesystem::path path;
	BlockDeviceId store_device; // the filesystem's block device
	std::uint64_t sb_sector = 0;
	std::vector<StoreExtent> extents;
	StoreLayout layout;
	std::uint64_t data_slots = 0;
	std::uint32_t chunk_sectors = 0;
	std::uint64_t origin_sectors = 0;
	Uuid store_uuid{};
	Uuid generation_uuid{};
};

class StoreFile {
public:
	// Creates, fills and pins (immutable) a store file; on any failure the
	// file is removed again.
	static CreatedStore create(const StoreCreateOptions &options);
	// Clears the immutable flag and unlinks. Refuses a file that does not
	// start with a store superblock.
	static void destroy(const std::filesystem::path &path);
	// The file's extents as the store describes them: FIEMAP, refusing
	// extents that can move or are shared, physically contiguous runs merged.
	static std::vector<StoreExtent> map_extents(int fd, const std::string &name);
	// Why the file at path (called `name` in messages) is no longer the
	// pinned store whose extents are `recorded` (gone, its immutable flag
	// cleared, its blocks elsewhere), or nullopt when it still is. A store deleted while its volume was not
	// attached keeps valid blocks on disk that the filesystem may hand to
	// another file: only the filesystem can tell.
	static std::optional<std::string> mismatch(const std::filesystem::path &path,
						   const std::string &name,
						   std::span<const StoreExtent> recorded);
	// The block device holding the file's filesystem.
	static BlockDeviceId device_of(int fd, const std::string &name);
	// Preallocates add_bytes (a multiple of 4096) at the end of a pinned
	// store and pins it again; returns all its extents. Extents that exist
	// already do not move. On failure the file is as it was.
	static std::vector<StoreExtent> extend(const std::filesystem::path &path,
					       std::uint64_t add_bytes);
	// Cuts a pinned store back to size_bytes (undoes extend() when the
	// kernel refused the new extents), pinned again.
	static void shrink(const std::filesystem::path &path, std::uint64_t size_bytes);
};

// Physically contiguous neighbours as one extent, so two lists that map the
// same blocks to the same sectors compare equal (grow appends extents that
// may continue the last one; FIEMAP of the whole file reports them merged).
std::vector<StoreExtent> merged_extents(std::span<const StoreExtent> extents);

// The extents covering logical blocks from `first_block` on, split where
// an extent starts before it.
std::vector<StoreExtent> extents_from_block(std::span<const StoreExtent> extents,
					    std::uint64_t first_block);

// ---- reading a store --------------------------------------------------------

// Reads device sectors, bypassing the page cache. Implementations: the
// store device itself, or the store file translated through its extents.
class SectorSource {
public:
	virtual ~SectorSource() = default;
	virtual void read(std::uint64_t sector, std::span<std::uint8_t> out) const = 0;
	virtual const std::string &name() const = 0;
};

class StoreReader {
public:
	// Reads the store the kernel uses: O_DIRECT on the store device.
	static StoreReader open_device(const std::string &device_path, std::uint64_t sb_sector);
	// Reads the same sectors through the store file with O_DIRECT, for
	// when the filesystem's block device cannot be opened (containers).
	static StoreReader open_through_file(const std::filesystem::path &store_path);
	// For tests and other sources.
	static StoreReader open(std::unique_ptr<SectorSource> source, std::uint64_t sb_sector);

	StoreReader(StoreReader &&) noexcept;
	StoreReader &operator=(StoreReader &&) noexcept;
	~StoreReader();

	const Superblock &superblock() const noexcept { return sb_; }
	const std::vector<StoreExtent> &extents() const noexcept { return extents_; }
	std::uint64_t data_slots() const noexcept { return data_slots_; }

	// One entry per origin chunk. A block whose checksum does not match is
	// read again a few times (the kernel may be writing it right now)
	// before this throws.
	std::vector<MapEntry> read_chunk_map() const;
	ChangeSet changes_since(std::uint64_t since_epoch,
				const std::optional<Uuid> &generation = std::nullopt) const;

private:
	StoreReader(std::unique_ptr<SectorSource> source, Superblock sb,
		    std::vector<StoreExtent> extents);
	std::unique_ptr<SectorSource> source_;
	Superblock sb_;
	std::vector<StoreExtent> extents_;
	std::uint64_t data_slots_ = 0;
};

} // namespace snapmgr
