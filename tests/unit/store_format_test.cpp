#include <gtest/gtest.h>

#include <array>

#include "snapmgr/error.hpp"
#include "store.hpp"

namespace {

using namespace snapmgr;

using Block = std::array<std::uint8_t, store_block_size>;

Uuid uuid_filled(std::uint8_t v)
{
	Uuid u;
	u.fill(v);
	return u;
}

Superblock sample_superblock()
{
	Superblock sb;
	sb.store_uuid = uuid_filled(0x11);
	sb.flags = COWFILE_SB_CLEAN;
	sb.chunk_sectors = 256;
	sb.origin_sectors = 2'000'000;
	sb.sb_sector = 39'108'608;
	sb.generation_uuid = uuid_filled(0x22);
	sb.epoch = 7;
	sb.generation_epoch = 3;
	sb.store_blocks = 4096;
	sb.nr_extents = 3;
	sb.extent_table_blocks = 5;
	sb.map_start = 6;
	sb.map_blocks = 16;
	sb.data_start = 22;
	sb.snap_state = COWFILE_SNAP_ACTIVE;
	sb.snap_invalid_reason = COWFILE_INVALID_NONE;
	sb.snap_epoch = 6;
	sb.log_checkpoint = 42;
	sb.origin_sum = 0xc0ffee11;
	sb.extent_table_sectors = {39'108'616, 39'108'624, 39'108'632, 500'000, 500'008};
	return sb;
}

std::string error_of(auto &&f)
{
	try {
		f();
	} catch (const StoreCorruptError &e) {
		return e.what();
	}
	return "no error";
}

TEST(StoreFormat, SuperblockRoundTripsEveryField)
{
	Superblock sb = sample_superblock();
	Block block{};
	encode_superblock(sb, block);
	EXPECT_EQ(decode_superblock(block, sb.sb_sector), sb);
}

TEST(StoreFormat, SuperblockFieldsSitAtTheHeaderOffsetsLittleEndian)
{
	Superblock sb = sample_superblock();
	Block block{};
	encode_superblock(sb, block);
	// "COFS" magic, little-endian.
	EXPECT_EQ(block[0], 0x43);
	EXPECT_EQ(block[1], 0x4f);
	EXPECT_EQ(block[2], 0x46);
	EXPECT_EQ(block[3], 0x53);
	// epoch at offsetof(cowfile_superblock, epoch), low byte first.
	EXPECT_EQ(offsetof(cowfile_superblock, epoch), 80u);
	EXPECT_EQ(block[80], 7);
	EXPECT_EQ(block[81], 0);
	// first extent table sector right after the fixed part.
	EXPECT_EQ(COWFILE_SB_FIXED_SIZE, 224u);
	std::uint64_t first = 0;
	for (int i = 7; i >= 0; i--)
		first = first << 8 | block[224 + i];
	EXPECT_EQ(first, 39'108'616u);
}

TEST(StoreFormat, ExtentBlockRoundTrips)
{
	std::vector<StoreExtent> extents = {{2048, 10}, {999'992, 1}, {8, 123'456}};
	Block block{};
	encode_extent_block(3, uuid_filled(0x11), extents, block);
	EXPECT_EQ(decode_extent_block(block, 3, uuid_filled(0x11), extents.size(), 100), extents);
}

TEST(StoreFormat, MapBlockRoundTripsAndPadsWithZeroEntries)
{
	std::vector<MapEntry> entries = {{5, 0}, {0, 0}, {9, 17}};
	Block block{};
	encode_map_block(40, uuid_filled(0x11), entries, block);
	auto decoded = decode_map_block(block, 40, uuid_filled(0x11), 100);
	ASSERT_EQ(decoded.size(), map_entries_per_block);
	EXPECT_EQ(decoded[0], (MapEntry{5, 0}));
	EXPECT_EQ(decoded[2], (MapEntry{9, 17}));
	EXPECT_EQ(decoded[3], (MapEntry{0, 0}));
	EXPECT_EQ(decoded.back(), (MapEntry{0, 0}));
}

TEST(StoreFormat, ChecksumCoversBytesEightOnwardOnly)
{
	Block block{};
	encode_map_block(40, uuid_filled(0x11), {}, block);
	EXPECT_EQ(check_block(block, COWFILE_MAP_MAGIC, 40, nullptr), BlockDefect::none);
	block[4095] ^= 0x01; // last byte is covered
	EXPECT_EQ(check_block(block, COWFILE_MAP_MAGIC, 40, nullptr), BlockDefect::bad_checksum);
	block[4095] ^= 0x01;
	block[8] ^= 0x80; // first covered byte (blocknr)
	EXPECT_EQ(check_block(block, COWFILE_MAP_MAGIC, 40, nullptr), BlockDefect::bad_checksum);
}

TEST(StoreFormat, ValidationRejectsAFlippedBitInTheSuperblock)
{
	Block block{};
	encode_superblock(sample_superblock(), block);
	block[100] ^= 0x04;
	EXPECT_EQ(error_of([&] { decode_superblock(block, 2048); }),
		  "superblock checksum mismatch at sector 2048");
}

TEST(StoreFormat, ValidationRejectsWrongMagic)
{
	Block block{};
	encode_extent_block(1, uuid_filled(0x11), {}, block);
	// An extent block where a superblock is expected.
	EXPECT_EQ(error_of([&] { decode_superblock(block, 8); }),
		  "no cowfile store superblock at sector 8");
	EXPECT_EQ(check_block(block, COWFILE_MAP_MAGIC, 1, nullptr), BlockDefect::bad_magic);
}

TEST(StoreFormat, ValidationRejectsWrongBlockNumber)
{
	Block block{};
	encode_map_block(12, uuid_filled(0x11), {}, block);
	EXPECT_EQ(error_of([&] { decode_map_block(block, 13, uuid_filled(0x11), 4242); }),
		  "map block 13 has a wrong block number (moved or stale block) at sector 4242");
}

TEST(StoreFormat, ValidationRejectsAForeignStoreUuid)
{
	Block block{};
	encode_map_block(12, uuid_filled(0x11), {}, block);
	EXPECT_EQ(error_of([&] { decode_map_block(block, 12, uuid_filled(0x99), 4242); }),
		  "map block 12 belongs to another store at sector 4242");
	encode_extent_block(2, uuid_filled(0x11), {}, block);
	EXPECT_EQ(check_block(block, COWFILE_EXTENT_MAGIC, 2, nullptr),
		  BlockDefect::none);
	Uuid other = uuid_filled(0x12);
	EXPECT_EQ(check_block(block, COWFILE_EXTENT_MAGIC, 2, &other), BlockDefect::foreign_store);
}

TEST(StoreFormat, LayoutValidationRefusesAMapTooSmallForTheOrigin)
{
	Superblock sb = sample_superblock();
	EXPECT_NO_THROW(validate_superblock_layout(sb));
	sb.origin_sectors = std::uint64_t(sb.map_blocks) * map_entries_per_block * sb.chunk_sectors + 1;
	EXPECT_THROW(validate_superblock_layout(sb), StoreCorruptError);
}

TEST(StoreFormat, LayoutValidationRefusesABadChunkSizeAndEpochs)
{
	Superblock sb = sample_superblock();
	sb.chunk_sectors = 96;
	EXPECT_THROW(validate_superblock_layout(sb), StoreCorruptError);
	sb = sample_superblock();
	sb.generation_epoch = sb.epoch + 1;
	EXPECT_THROW(validate_superblock_layout(sb), StoreCorruptError);
}

TEST(StoreFormat, UuidFormatsAndParsesAndRandomIsVersion4)
{
	Uuid u = random_uuid();
	EXPECT_EQ(u[6] >> 4, 4);
	EXPECT_EQ(u[8] & 0xc0, 0x80);
	std::string text = format_uuid(u);
	ASSERT_EQ(text.size(), 36u);
	EXPECT_EQ(parse_uuid(text), u);
	EXPECT_EQ(format_uuid(*parse_uuid("0123ABCD-4567-89ab-cdef-0123456789ab")),
		  "0123abcd-4567-89ab-cdef-0123456789ab");
	EXPECT_FALSE(parse_uuid("0123abcd-4567-89ab-cdef-0123456789a"));
	EXPECT_FALSE(parse_uuid("0123abcd_4567-89ab-cdef-0123456789ab"));
	EXPECT_NE(random_uuid(), u);
}

} // namespace
