#include <gtest/gtest.h>

#include "store.hpp"

namespace {

using namespace snapmgr;

constexpr std::uint32_t chunk = 128; // 64 KiB
constexpr std::uint64_t kib64 = 65536;

std::vector<MapEntry> map_with(std::size_t n, std::initializer_list<std::pair<std::size_t, std::uint32_t>> written)
{
	std::vector<MapEntry> entries(n);
	for (auto [index, epoch] : written)
		entries[index].last_epoch = epoch;
	return entries;
}

TEST(StoreChanges, OnlyChunksWrittenAfterTheEpochAndAdjacentOnesMerge)
{
	auto entries = map_with(10, {{1, 3}, {2, 4}, {3, 5}, {5, 2}, {7, 4}, {8, 4}});
	auto ranges = changed_ranges(entries, 3, chunk, 10 * chunk);
	std::vector<ByteRange> want = {{2 * kib64, 2 * kib64}, {7 * kib64, 2 * kib64}};
	EXPECT_EQ(ranges, want);
	// Since epoch 1 also takes chunks 1 and 5; 1..3 join into one range.
	want = {{1 * kib64, 3 * kib64}, {5 * kib64, kib64}, {7 * kib64, 2 * kib64}};
	EXPECT_EQ(changed_ranges(entries, 1, chunk, 10 * chunk), want);
}

TEST(StoreChanges, LastChunkIsClippedToTheOriginSize)
{
	// Origin of 2.5 chunks: 3 chunks, the last one half long.
	auto entries = map_with(508, {{1, 2}, {2, 2}});
	auto ranges = changed_ranges(entries, 1, chunk, 2 * chunk + 64);
	std::vector<ByteRange> want = {{kib64, kib64 + 32768}};
	EXPECT_EQ(ranges, want);
}

TEST(StoreChanges, EntriesPastTheOriginAreIgnored)
{
	auto entries = map_with(508, {{0, 9}, {3, 9}, {400, 9}});
	std::vector<ByteRange> want = {{0, kib64}};
	EXPECT_EQ(changed_ranges(entries, 1, chunk, 3 * chunk), want);
}

TEST(StoreChanges, NothingWrittenIsAnEmptyAnswer)
{
	EXPECT_TRUE(changed_ranges(map_with(20, {}), 0, chunk, 20 * chunk).empty());
}

Superblock sb_at(std::uint64_t generation_epoch, std::uint64_t epoch)
{
	Superblock sb;
	sb.generation_uuid.fill(0x5a);
	sb.generation_epoch = generation_epoch;
	sb.epoch = epoch;
	return sb;
}

TEST(StoreChanges, FullWhenTheEpochIsOlderThanTheGeneration)
{
	Superblock sb = sb_at(5, 9);
	// Epoch 4 ended when generation 5 began: its changes are all recorded.
	EXPECT_FALSE(full_backup_reason(sb, 4, std::nullopt));
	EXPECT_FALSE(full_backup_reason(sb, 8, std::nullopt));
	EXPECT_TRUE(full_backup_reason(sb, 3, std::nullopt));
	EXPECT_TRUE(full_backup_reason(sb, 0, std::nullopt));
}

TEST(StoreChanges, FullWhenTheGenerationDiffers)
{
	Superblock sb = sb_at(1, 9);
	Uuid same = sb.generation_uuid;
	Uuid other = same;
	other[15] ^= 1;
	EXPECT_FALSE(full_backup_reason(sb, 4, same));
	auto reason = full_backup_reason(sb, 4, other);
	ASSERT_TRUE(reason);
	EXPECT_NE(reason->find("is not the store's generation"), std::string::npos);
}

TEST(StoreChanges, FullWhenTrackingWasLost)
{
	Superblock sb = sb_at(1, 9);
	sb.flags = COWFILE_SB_TRACKING_LOST;
	EXPECT_TRUE(full_backup_reason(sb, 8, sb.generation_uuid));
}

TEST(StoreChanges, FullForAnEpochTheStoreNeverReached)
{
	Superblock sb = sb_at(1, 9);
	EXPECT_FALSE(full_backup_reason(sb, 9, std::nullopt));
	EXPECT_TRUE(full_backup_reason(sb, 10, std::nullopt));
}

} // namespace
