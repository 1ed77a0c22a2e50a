#include <gtest/gtest.h>

#include "snapmgr/error.hpp"
#include "store.hpp"

namespace {

using namespace snapmgr;

TEST(StoreLayout, FormatConstantsAreWhatTheLayoutMathAssumes)
{
	EXPECT_EQ(map_entries_per_block, 508u);
	EXPECT_EQ(extents_per_block, 254u);
	EXPECT_EQ(max_extent_table_blocks, 484u);
}

TEST(StoreLayout, MapBlocksCoverEveryChunkOfTheOrigin)
{
	// 64 KiB chunks: 508 chunks per map block.
	EXPECT_EQ(map_blocks_for(128, 128), 1u);                 // one chunk
	EXPECT_EQ(map_blocks_for(508 * 128, 128), 1u);           // exactly one block
	EXPECT_EQ(map_blocks_for(508 * 128 + 1, 128), 2u);       // a partial last chunk
	EXPECT_EQ(map_blocks_for(2 * 1024 * 1024 * 2, 128), 65u); // 2 GiB: 32768 chunks
	EXPECT_EQ(chunk_count(508 * 128 + 1, 128), 509u);
	// 1 TiB with 1 MiB chunks: 1048576 chunks.
	EXPECT_EQ(map_blocks_for(std::uint64_t(1) << 31, 2048), 2065u);
}

TEST(StoreLayout, ExtentTableHoldsFourTimesTheExtentsWithinLimits)
{
	EXPECT_EQ(extent_table_capacity(1), 4u);
	EXPECT_EQ(extent_table_capacity(254), 4u);
	EXPECT_EQ(extent_table_capacity(255), 5u); // 1020 / 254 rounds up to 5
	EXPECT_EQ(extent_table_capacity(100'000), 484u);
	EXPECT_THROW(extent_table_capacity(484 * 254 + 1), StoreError);
}

TEST(StoreLayout, RegionsFollowEachOther)
{
	StoreLayout l = compute_layout(2048, 128, 131072, 1);
	EXPECT_EQ(l.store_blocks, 2048u);
	EXPECT_EQ(l.extent_table_blocks, 4u);
	EXPECT_EQ(l.map_start, 5u);
	EXPECT_EQ(l.map_blocks, 3u); // 1024 chunks
	// The index area: a __le32 per 4 KiB origin block, 16384 of them.
	EXPECT_EQ(index_blocks_for(131072), 16u);
	EXPECT_EQ(index_blocks_for(131072 + 1), 17u);
	EXPECT_EQ(l.data_start, 24u);
}

TEST(StoreLayout, RefusesAStoreTooSmallForItsMetadata)
{
	EXPECT_THROW(compute_layout(23, 128, 131072, 1), StoreError);
	EXPECT_NO_THROW(compute_layout(24, 128, 131072, 1));
}

TEST(StoreLayout, SlotsCountOnlyWholeChunksPerExtent)
{
	// 64 KiB chunks = 16 blocks. data_start 8.
	// Extent A: blocks 0..29 (30 blocks): data part 8..29 = 22 blocks -> 1 slot.
	// Extent B: 30..62 (33 blocks) -> 2 slots, one block wasted.
	// Extent C: 63..77 (15 blocks) -> 0 slots: a slot never straddles B and C.
	std::vector<StoreExtent> extents = {{1000, 30}, {9000, 33}, {20000, 15}};
	EXPECT_EQ(count_data_slots(extents, 8, 128), 3u);
	// Were it one contiguous extent of 78 blocks, 70 data blocks hold 4.
	std::vector<StoreExtent> one = {{1000, 78}};
	EXPECT_EQ(count_data_slots(one, 8, 128), 4u);
}

TEST(StoreLayout, SlotsSkipExtentsEntirelyInsideTheMetadata)
{
	std::vector<StoreExtent> extents = {{0, 5}, {800, 3}, {1600, 32}};
	// data_start 8: the first two extents are metadata only.
	EXPECT_EQ(count_data_slots(extents, 8, 128), 2u);
	// 4 KiB chunks: every data block is a slot.
	EXPECT_EQ(count_data_slots(extents, 8, 8), 32u);
	// data_start inside the third extent.
	EXPECT_EQ(count_data_slots(extents, 10, 128), 1u);
}

TEST(StoreLayout, LogicalBlocksTranslateThroughTheExtents)
{
	std::vector<StoreExtent> extents = {{1000, 2}, {5000, 3}};
	EXPECT_EQ(logical_block_sector(extents, 0), 1000u);
	EXPECT_EQ(logical_block_sector(extents, 1), 1008u);
	EXPECT_EQ(logical_block_sector(extents, 2), 5000u);
	EXPECT_EQ(logical_block_sector(extents, 4), 5016u);
	EXPECT_FALSE(logical_block_sector(extents, 5));
	EXPECT_EQ(total_blocks(extents), 5u);
}

TEST(StoreLayout, ChunkSizeMustBeAPowerOfTwoInRange)
{
	EXPECT_TRUE(valid_chunk_sectors(8));
	EXPECT_TRUE(valid_chunk_sectors(2048));
	EXPECT_FALSE(valid_chunk_sectors(4));
	EXPECT_FALSE(valid_chunk_sectors(4096));
	EXPECT_FALSE(valid_chunk_sectors(24));
	EXPECT_FALSE(valid_chunk_sectors(0));
}

} // namespace
