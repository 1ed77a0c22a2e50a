// Pure encoding, decoding and validation of the store's on-disk blocks and
// the layout arithmetic; no I/O here, so all of it is unit tested.
#include "store.hpp"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>

#include <fmt/core.h>

#include "crc32c.hpp"
#include "little_endian.hpp"
#include "snapmgr/error.hpp"

namespace snapmgr {

namespace {

// Field offsets come from the uapi structs themselves, so a change to the
// contract cannot silently desynchronise the encoder.
namespace sbo {
constexpr std::size_t version = offsetof(cowfile_superblock, version);
constexpr std::size_t flags = offsetof(cowfile_superblock, flags);
constexpr std::size_t block_size = offsetof(cowfile_superblock, block_size);
constexpr std::size_t chunk_sectors = offsetof(cowfile_superblock, chunk_sectors);
constexpr std::size_t origin_sectors = offsetof(cowfile_superblock, origin_sectors);
constexpr std::size_t sb_sector = offsetof(cowfile_superblock, sb_sector);
constexpr std::size_t generation_uuid = offsetof(cowfile_superblock, generation_uuid);
constexpr std::size_t epoch = offsetof(cowfile_superblock, epoch);
constexpr std::size_t generation_epoch = offsetof(cowfile_superblock, generation_epoch);
constexpr std::size_t store_blocks = offsetof(cowfile_superblock, store_blocks);
constexpr std::size_t nr_extents = offsetof(cowfile_superblock, nr_extents);
constexpr std::size_t extent_table_blocks = offsetof(cowfile_superblock, extent_table_blocks);
constexpr std::size_t map_start = offsetof(cowfile_superblock, map_start);
constexpr std::size_t map_blocks = offsetof(cowfile_superblock, map_blocks);
constexpr std::size_t data_start = offsetof(cowfile_superblock, data_start);
constexpr std::size_t snap_state = offsetof(cowfile_superblock, snap_state);
constexpr std::size_t snap_invalid_reason = offsetof(cowfile_superblock, snap_invalid_reason);
constexpr std::size_t snap_epoch = offsetof(cowfile_superblock, snap_epoch);
constexpr std::size_t log_checkpoint = offsetof(cowfile_superblock, log_checkpoint);
constexpr std::size_t origin_sum = offsetof(cowfile_superblock, origin_sum);
constexpr std::size_t extent_table_sectors = offsetof(cowfile_superblock, extent_table_sectors);
} // namespace sbo

constexpr std::size_t header_size = sizeof(cowfile_block_header);
constexpr std::size_t header_magic = offsetof(cowfile_block_header, magic);
constexpr std::size_t header_csum = offsetof(cowfile_block_header, csum);
constexpr std::size_t header_blocknr = offsetof(cowfile_block_header, blocknr);
constexpr std::size_t header_uuid = offsetof(cowfile_block_header, store_uuid);

static_assert(header_size == 32);
static_assert(header_csum + 4 == COWFILE_CSUM_OFFSET);
static_assert(sbo::extent_table_sectors == COWFILE_SB_FIXED_SIZE);
static_assert(sizeof(cowfile_extent) == 16 && sizeof(cowfile_map_entry) == 8);

void init_block(BlockBytes out, std::uint32_t magic, std::uint64_t blocknr, const Uuid &store)
{
	std::fill(out.begin(), out.end(), 0);
	le::put32(out, header_magic, magic);
	le::put64(out, header_blocknr, blocknr);
	std::copy(store.begin(), store.end(), out.begin() + header_uuid);
}

void seal_block(BlockBytes out)
{
	le::put32(out, header_csum, block_checksum(out));
}

Uuid read_uuid(ConstBlockBytes block, std::size_t off)
{
	Uuid u;
	std::copy_n(block.begin() + off, u.size(), u.begin());
	return u;
}

[[noreturn]] void throw_defect(std::string_view what, BlockDefect defect, std::uint64_t sector)
{
	throw StoreCorruptError(std::string(what), EILSEQ,
				fmt::format("{} {} at sector {}", what, describe(defect), sector));
}

} // namespace

Uuid random_uuid()
{
	Uuid u;
	std::size_t got = 0;
	while (got < u.size()) {
		ssize_t n = getrandom(u.data() + got, u.size() - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			throw DeviceError("getrandom", errno, "cannot get random bytes for a UUID");
		}
		got += std::size_t(n);
	}
	u[6] = std::uint8_t((u[6] & 0x0f) | 0x40); // version 4
	u[8] = std::uint8_t((u[8] & 0x3f) | 0x80); // RFC 4122 variant
	return u;
}

std::string format_uuid(const Uuid &u)
{
	std::string s;
	for (std::size_t i = 0; i < u.size(); i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			s += '-';
		s += fmt::format("{:02x}", u[i]);
	}
	return s;
}

std::optional<Uuid> parse_uuid(std::string_view text)
{
	if (text.size() != 36)
		return std::nullopt;
	Uuid u;
	std::size_t pos = 0;
	for (std::size_t i = 0; i < u.size(); i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10) {
			if (text[pos++] != '-')
				return std::nullopt;
		}
		int value = 0;
		for (int nibble = 0; nibble < 2; nibble++) {
			char c = text[pos++];
			int d = c >= '0' && c <= '9'   ? c - '0'
				: c >= 'a' && c <= 'f' ? c - 'a' + 10
				: c >= 'A' && c <= 'F' ? c - 'A' + 10
						       : -1;
			if (d < 0)
				return std::nullopt;
			value = value * 16 + d;
		}
		u[i] = std::uint8_t(value);
	}
	return u;
}

std::optional<std::uint64_t> logical_block_sector(std::span<const StoreExtent> extents,
						  std::uint64_t block)
{
	std::uint64_t first = 0;
	for (const StoreExtent &e : extents) {
		if (block < first + e.blocks)
			return e.sector + (block - first) * store_block_sectors;
		first += e.blocks;
	}
	return std::nullopt;
}

std::uint64_t total_blocks(std::span<const StoreExtent> extents)
{
	std::uint64_t n = 0;
	for (const StoreExtent &e : extents)
		n += e.blocks;
	return n;
}

bool valid_chunk_sectors(std::uint32_t chunk_sectors) noexcept
{
	return chunk_sectors >= COWFILE_MIN_CHUNK_SECTORS &&
	       chunk_sectors <= COWFILE_MAX_CHUNK_SECTORS &&
	       (chunk_sectors & (chunk_sectors - 1)) == 0;
}

std::uint64_t chunk_count(std::uint64_t origin_sectors, std::uint32_t chunk_sectors)
{
	return (origin_sectors + chunk_sectors - 1) / chunk_sectors;
}

std::uint64_t map_blocks_for(std::uint64_t origin_sectors, std::uint32_t chunk_sectors)
{
	return (chunk_count(origin_sectors, chunk_sectors) + map_entries_per_block - 1) /
	       map_entries_per_block;
}

std::uint64_t index_blocks_for(std::uint64_t origin_sectors)
{
	return COWFILE_INDEX_BLOCKS(origin_sectors);
}

std::uint32_t extent_table_capacity(std::size_t nr_extents)
{
	if (nr_extents > std::size_t(max_extent_table_blocks) * extents_per_block)
		throw StoreError("extent table", E2BIG,
				 fmt::format("the file has {} extents, a store can describe at most {}",
					     nr_extents,
					     std::size_t(max_extent_table_blocks) * extents_per_block));
	std::size_t wanted = (4 * nr_extents + extents_per_block - 1) / extents_per_block;
	return std::uint32_t(std::clamp<std::size_t>(wanted, 4, max_extent_table_blocks));
}

StoreLayout compute_layout(std::uint64_t store_blocks, std::uint32_t chunk_sectors,
			   std::uint64_t origin_sectors, std::size_t nr_extents)
{
	StoreLayout layout;
	layout.store_blocks = store_blocks;
	layout.extent_table_blocks = extent_table_capacity(nr_extents);
	layout.map_start = 1 + layout.extent_table_blocks;
	layout.map_blocks = map_blocks_for(origin_sectors, chunk_sectors);
	layout.data_start = layout.map_start + layout.map_blocks + index_blocks_for(origin_sectors);
	if (layout.data_start > store_blocks)
		throw StoreError("store size", ENOSPC,
				 fmt::format("a store of {} bytes cannot hold its own metadata "
					     "({} bytes for this origin and chunk size, 1 MiB per "
					     "GiB of origin of it for the index of copies); make "
					     "the store larger",
					     store_blocks * store_block_size,
					     layout.data_start * store_block_size));
	return layout;
}

std::uint64_t count_data_slots(std::span<const StoreExtent> extents, std::uint64_t data_start,
			       std::uint32_t chunk_sectors)
{
	std::uint64_t chunk_blocks = chunk_sectors / store_block_sectors;
	std::uint64_t slots = 0, logical = 0;
	for (const StoreExtent &e : extents) {
		std::uint64_t start = std::max(logical, data_start);
		std::uint64_t end = logical + e.blocks;
		if (end > start)
			slots += (end - start) / chunk_blocks;
		logical = end;
	}
	return slots;
}

std::string_view describe(BlockDefect defect) noexcept
{
	switch (defect) {
	case BlockDefect::none:
		return "is valid";
	case BlockDefect::bad_magic:
		return "has a wrong magic number";
	case BlockDefect::bad_checksum:
		return "checksum mismatch";
	case BlockDefect::wrong_block_number:
		return "has a wrong block number (moved or stale block)";
	case BlockDefect::foreign_store:
		return "belongs to another store";
	}
	return "is unknown";
}

std::uint32_t block_checksum(ConstBlockBytes block) noexcept
{
	return crc32c(block.subspan(COWFILE_CSUM_OFFSET));
}

BlockDefect check_block(ConstBlockBytes block, std::uint32_t magic, std::uint64_t blocknr,
			const Uuid *expected_store) noexcept
{
	if (le::get32(block, header_magic) != magic)
		return BlockDefect::bad_magic;
	if (le::get32(block, header_csum) != block_checksum(block))
		return BlockDefect::bad_checksum;
	if (le::get64(block, header_blocknr) != blocknr)
		return BlockDefect::wrong_block_number;
	if (expected_store && read_uuid(block, header_uuid) != *expected_store)
		return BlockDefect::foreign_store;
	return BlockDefect::none;
}

void encode_superblock(const Superblock &sb, BlockBytes out)
{
	if (sb.extent_table_sectors.size() > max_extent_table_blocks)
		throw StoreError("superblock", E2BIG, "too many extent table blocks for a superblock");
	init_block(out, COWFILE_SB_MAGIC, 0, sb.store_uuid);
	le::put32(out, sbo::version, sb.version);
	le::put32(out, sbo::flags, sb.flags);
	le::put32(out, sbo::block_size, sb.block_size);
	le::put32(out, sbo::chunk_sectors, sb.chunk_sectors);
	le::put64(out, sbo::origin_sectors, sb.origin_sectors);
	le::put64(out, sbo::sb_sector, sb.sb_sector);
	std::copy(sb.generation_uuid.begin(), sb.generation_uuid.end(),
		  out.begin() + sbo::generation_uuid);
	le::put64(out, sbo::epoch, sb.epoch);
	le::put64(out, sbo::generation_epoch, sb.generation_epoch);
	le::put64(out, sbo::store_blocks, sb.store_blocks);
	le::put32(out, sbo::nr_extents, sb.nr_extents);
	le::put32(out, sbo::extent_table_blocks, sb.extent_table_blocks);
	le::put64(out, sbo::map_start, sb.map_start);
	le::put64(out, sbo::map_blocks, sb.map_blocks);
	le::put64(out, sbo::data_start, sb.data_start);
	le::put32(out, sbo::snap_state, sb.snap_state);
	le::put32(out, sbo::snap_invalid_reason, sb.snap_invalid_reason);
	le::put64(out, sbo::snap_epoch, sb.snap_epoch);
	le::put64(out, sbo::log_checkpoint, sb.log_checkpoint);
	le::put32(out, sbo::origin_sum, sb.origin_sum);
	for (std::size_t i = 0; i < sb.extent_table_sectors.size(); i++)
		le::put64(out, sbo::extent_table_sectors + 8 * i, sb.extent_table_sectors[i]);
	seal_block(out);
}

Superblock decode_superblock(ConstBlockBytes block, std::uint64_t sector)
{
	BlockDefect defect = check_block(block, COWFILE_SB_MAGIC, 0, nullptr);
	if (defect == BlockDefect::bad_magic)
		throw StoreCorruptError("superblock", EILSEQ,
					fmt::format("no cowfile store superblock at sector {}", sector));
	if (defect != BlockDefect::none)
		throw_defect("superblock", defect, sector);

	Superblock sb;
	sb.store_uuid = read_uuid(block, header_uuid);
	sb.version = le::get32(block, sbo::version);
	sb.flags = le::get32(block, sbo::flags);
	sb.block_size = le::get32(block, sbo::block_size);
	sb.chunk_sectors = le::get32(block, sbo::chunk_sectors);
	sb.origin_sectors = le::get64(block, sbo::origin_sectors);
	sb.sb_sector = le::get64(block, sbo::sb_sector);
	sb.generation_uuid = read_uuid(block, sbo::generation_uuid);
	sb.epoch = le::get64(block, sbo::epoch);
	sb.generation_epoch = le::get64(block, sbo::generation_epoch);
	sb.store_blocks = le::get64(block, sbo::store_blocks);
	sb.nr_extents = le::get32(block, sbo::nr_extents);
	sb.extent_table_blocks = le::get32(block, sbo::extent_table_blocks);
	sb.map_start = le::get64(block, sbo::map_start);
	sb.map_blocks = le::get64(block, sbo::map_blocks);
	sb.data_start = le::get64(block, sbo::data_start);
	sb.snap_state = le::get32(block, sbo::snap_state);
	sb.snap_invalid_reason = le::get32(block, sbo::snap_invalid_reason);
	sb.snap_epoch = le::get64(block, sbo::snap_epoch);
	sb.log_checkpoint = le::get64(block, sbo::log_checkpoint);
	sb.origin_sum = le::get32(block, sbo::origin_sum);
	if (sb.extent_table_blocks > max_extent_table_blocks)
		throw StoreCorruptError("superblock", EINVAL,
					fmt::format("superblock at sector {} claims {} extent table "
						    "blocks, at most {} exist",
						    sector, sb.extent_table_blocks,
						    max_extent_table_blocks));
	for (std::uint32_t i = 0; i < sb.extent_table_blocks; i++)
		sb.extent_table_sectors.push_back(le::get64(block, sbo::extent_table_sectors + 8 * i));
	return sb;
}

void encode_extent_block(std::uint64_t blocknr, const Uuid &store,
			 std::span<const StoreExtent> extents, BlockBytes out)
{
	if (extents.size() > extents_per_block)
		throw StoreError("extent table", E2BIG, "too many extents for one table block");
	init_block(out, COWFILE_EXTENT_MAGIC, blocknr, store);
	for (std::size_t i = 0; i < extents.size(); i++) {
		std::size_t off = header_size + i * sizeof(cowfile_extent);
		le::put64(out, off + offsetof(cowfile_extent, sector), extents[i].sector);
		le::put64(out, off + offsetof(cowfile_extent, blocks), extents[i].blocks);
	}
	seal_block(out);
}

std::vector<StoreExtent> decode_extent_block(ConstBlockBytes block, std::uint64_t blocknr,
					     const Uuid &store, std::size_t count,
					     std::uint64_t sector)
{
	BlockDefect defect = check_block(block, COWFILE_EXTENT_MAGIC, blocknr, &store);
	if (defect != BlockDefect::none)
		throw_defect(fmt::format("extent table block {}", blocknr), defect, sector);
	std::vector<StoreExtent> extents;
	for (std::size_t i = 0; i < std::min(count, extents_per_block); i++) {
		std::size_t off = header_size + i * sizeof(cowfile_extent);
		extents.push_back({le::get64(block, off + offsetof(cowfile_extent, sector)),
				   le::get64(block, off + offsetof(cowfile_extent, blocks))});
	}
	return extents;
}

void encode_map_block(std::uint64_t blocknr, const Uuid &store, std::span<const MapEntry> entries,
		      BlockBytes out)
{
	if (entries.size() > map_entries_per_block)
		throw StoreError("chunk map", E2BIG, "too many entries for one map block");
	init_block(out, COWFILE_MAP_MAGIC, blocknr, store);
	for (std::size_t i = 0; i < entries.size(); i++) {
		std::size_t off = header_size + i * sizeof(cowfile_map_entry);
		le::put32(out, off + offsetof(cowfile_map_entry, last_epoch), entries[i].last_epoch);
		le::put32(out, off + offsetof(cowfile_map_entry, reserved), entries[i].reserved);
	}
	seal_block(out);
}

std::vector<MapEntry> decode_map_block(ConstBlockBytes block, std::uint64_t blocknr,
				       const Uuid &store, std::uint64_t sector)
{
	BlockDefect defect = check_block(block, COWFILE_MAP_MAGIC, blocknr, &store);
	if (defect != BlockDefect::none)
		throw_defect(fmt::format("map block {}", blocknr), defect, sector);
	std::vector<MapEntry> entries(map_entries_per_block);
	for (std::size_t i = 0; i < entries.size(); i++) {
		std::size_t off = header_size + i * sizeof(cowfile_map_entry);
		entries[i] = {le::get32(block, off + offsetof(cowfile_map_entry, last_epoch)),
			      le::get32(block, off + offsetof(cowfile_map_entry, reserved))};
	}
	return entries;
}

void validate_superblock_layout(const Superblock &sb)
{
	auto corrupt = [&](const std::string &why) {
		throw StoreCorruptError("superblock", EINVAL,
					fmt::format("superblock at sector {}: {}", sb.sb_sector, why));
	};
	if (sb.version == 1)
		throw StoreCorruptError("superblock", EINVAL,
					"store of format 1 (64 KiB copies, before this version): "
					"recreate it (snapmgr untrack, then track again)");
	if (sb.version != COWFILE_FORMAT_VERSION)
		corrupt(fmt::format("unsupported format version {} (this tool reads {})", sb.version,
				    COWFILE_FORMAT_VERSION));
	if (sb.block_size != COWFILE_BLOCK_SIZE)
		corrupt(fmt::format("unsupported block size {}", sb.block_size));
	if (!valid_chunk_sectors(sb.chunk_sectors))
		corrupt(fmt::format("invalid chunk size {} sectors", sb.chunk_sectors));
	if (!sb.extent_table_blocks || sb.extent_table_blocks > max_extent_table_blocks ||
	    !sb.nr_extents ||
	    sb.nr_extents > std::uint64_t(sb.extent_table_blocks) * extents_per_block ||
	    sb.map_start < 1 + std::uint64_t(sb.extent_table_blocks) ||
	    sb.map_start + sb.map_blocks > sb.data_start || sb.data_start > sb.store_blocks)
		corrupt("inconsistent layout");
	if (sb.map_blocks * map_entries_per_block < chunk_count(sb.origin_sectors, sb.chunk_sectors))
		corrupt("chunk map too small for the origin");
	if (sb.snap_state > COWFILE_SNAP_INVALID)
		corrupt(fmt::format("invalid snapshot state {}", sb.snap_state));
	if (!sb.epoch || sb.generation_epoch > sb.epoch)
		corrupt("inconsistent epochs");
}

} // namespace snapmgr
