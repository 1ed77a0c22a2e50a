// The reader against an in-memory "device" holding a store whose extents
// are scattered, so every logical-to-sector translation is exercised.
#include <gtest/gtest.h>

#include <cstring>

#include "snapmgr/error.hpp"
#include "store.hpp"

namespace {

using namespace snapmgr;

class MemoryDevice final : public SectorSource {
public:
	explicit MemoryDevice(std::uint64_t sectors) : bytes_(sectors * 512) {}
	void read(std::uint64_t sector, std::span<std::uint8_t> out) const override
	{
		reads_++;
		ASSERT_LE(sector * 512 + out.size(), bytes_.size());
		std::memcpy(out.data(), bytes_.data() + sector * 512, out.size());
		// Simulates the kernel rewriting a block while it is read.
		if (torn_reads_left_ > 0 && sector <= torn_sector_ &&
		    torn_sector_ * 512 < sector * 512 + out.size()) {
			torn_reads_left_--;
			out[(torn_sector_ - sector) * 512 + 100] ^= 0xff;
		}
	}
	const std::string &name() const override { return name_; }
	BlockBytes block_at(std::uint64_t sector)
	{
		return BlockBytes(bytes_.data() + sector * 512, store_block_size);
	}
	void tear_reads_of(std::uint64_t sector, int times)
	{
		torn_sector_ = sector;
		torn_reads_left_ = times;
	}
	int reads() const { return reads_; }

private:
	std::string name_ = "memory";
	std::vector<std::uint8_t> bytes_;
	mutable int reads_ = 0;
	mutable int torn_reads_left_ = 0;
	std::uint64_t torn_sector_ = 0;
};

constexpr std::uint32_t chunk_sectors = 8; // 4 KiB chunks keep the map large
constexpr std::uint64_t origin_sectors = 8 * 1200; // 1200 chunks: 3 map blocks

struct Fixture {
	std::vector<StoreExtent> extents = {{800, 3}, {96, 6}, {4000, 40}};
	Superblock sb;

	std::unique_ptr<MemoryDevice> make()
	{
		auto device = std::make_unique<MemoryDevice>(8192);
		StoreLayout layout = compute_layout(total_blocks(extents), chunk_sectors,
						    origin_sectors, extents.size());
		sb.store_uuid.fill(0x31);
		sb.generation_uuid.fill(0x32);
		sb.chunk_sectors = chunk_sectors;
		sb.origin_sectors = origin_sectors;
		sb.sb_sector = extents[0].sector;
		sb.epoch = 6;
		sb.generation_epoch = 2;
		sb.store_blocks = layout.store_blocks;
		sb.nr_extents = std::uint32_t(extents.size());
		sb.extent_table_blocks = layout.extent_table_blocks;
		sb.map_start = layout.map_start;
		sb.map_blocks = layout.map_blocks;
		sb.data_start = layout.data_start;
		for (std::uint32_t i = 0; i < layout.extent_table_blocks; i++)
			sb.extent_table_sectors.push_back(*logical_block_sector(extents, 1 + i));
		encode_superblock(sb, device->block_at(sb.sb_sector));
		for (std::uint32_t i = 0; i < layout.extent_table_blocks; i++)
			encode_extent_block(1 + i, sb.store_uuid,
					    i == 0 ? std::span<const StoreExtent>(extents)
						   : std::span<const StoreExtent>(),
					    device->block_at(sb.extent_table_sectors[i]));
		for (std::uint64_t b = 0; b < layout.map_blocks; b++) {
			std::vector<MapEntry> entries(map_entries_per_block);
			for (std::size_t j = 0; j < entries.size(); j++) {
				std::uint64_t chunk = b * map_entries_per_block + j;
				// Chunks 10..12 written in epoch 5, 600 in epoch 3, 1199 in 6.
				if (chunk >= 10 && chunk <= 12)
					entries[j].last_epoch = 5;
				if (chunk == 600)
					entries[j].last_epoch = 3;
				if (chunk == 1199)
					entries[j].last_epoch = 6;
			}
			encode_map_block(sb.map_start + b, sb.store_uuid, entries,
					 device->block_at(*logical_block_sector(extents, sb.map_start + b)));
		}
		return device;
	}
};

TEST(StoreReader, ReadsSuperblockAndScatteredExtentTable)
{
	Fixture f;
	auto reader = StoreReader::open(f.make(), 800);
	EXPECT_EQ(reader.superblock(), f.sb);
	EXPECT_EQ(reader.extents(), f.extents);
	// data_start 1+4+3 and 2 index blocks (1200 origin blocks) = 10 lies in
	// the third extent (blocks 9..48): 39 one-block slots.
	EXPECT_EQ(f.sb.data_start, 10u);
	EXPECT_EQ(reader.data_slots(), 39u);
}

TEST(StoreReader, ChunkMapTranslatesEveryBlockThroughTheExtents)
{
	Fixture f;
	auto reader = StoreReader::open(f.make(), 800);
	auto entries = reader.read_chunk_map();
	ASSERT_EQ(entries.size(), 1200u);
	EXPECT_EQ(entries[9].last_epoch, 0u);
	EXPECT_EQ(entries[10].last_epoch, 5u);
	EXPECT_EQ(entries[600].last_epoch, 3u);
	EXPECT_EQ(entries[1199].last_epoch, 6u);
}

TEST(StoreReader, ChangesSinceReadsTheMapAndMergesChunks)
{
	Fixture f;
	auto reader = StoreReader::open(f.make(), 800);
	ChangeSet c = reader.changes_since(4, f.sb.generation_uuid);
	ASSERT_FALSE(c.full);
	std::vector<ByteRange> want = {{10 * 4096, 3 * 4096}, {1199 * 4096, 4096}};
	EXPECT_EQ(c.ranges, want);
	EXPECT_TRUE(reader.changes_since(0).full); // older than generation_epoch - 1
}

TEST(StoreReader, RetriesATornMapBlockThenSucceeds)
{
	Fixture f;
	auto device = f.make();
	std::uint64_t second_map_block = *logical_block_sector(f.extents, f.sb.map_start + 1);
	device->tear_reads_of(second_map_block, 2);
	auto reader = StoreReader::open(std::move(device), 800);
	EXPECT_EQ(reader.read_chunk_map()[600].last_epoch, 3u);
}

TEST(StoreReader, GivesUpOnAMapBlockThatStaysCorrupt)
{
	Fixture f;
	auto device = f.make();
	std::uint64_t sector = *logical_block_sector(f.extents, f.sb.map_start + 1);
	device->block_at(sector)[200] ^= 1;
	auto reader = StoreReader::open(std::move(device), 800);
	try {
		reader.read_chunk_map();
		FAIL() << "a corrupt map block was trusted";
	} catch (const StoreCorruptError &e) {
		EXPECT_EQ(std::string(e.what()),
			  "map block 6 checksum mismatch at sector " + std::to_string(sector));
	}
}

TEST(StoreReader, RefusesAMapBlockOfAnotherStore)
{
	Fixture f;
	auto device = f.make();
	std::uint64_t sector = *logical_block_sector(f.extents, f.sb.map_start);
	Uuid other;
	other.fill(0x77);
	encode_map_block(f.sb.map_start, other, {}, device->block_at(sector));
	auto reader = StoreReader::open(std::move(device), 800);
	EXPECT_THROW(reader.read_chunk_map(), StoreCorruptError);
}

TEST(StoreReader, RefusesASuperblockReadAtAnotherSector)
{
	Fixture f;
	auto device = f.make();
	// A copy of the superblock elsewhere records where it was written.
	std::memcpy(device->block_at(2000).data(), device->block_at(800).data(), 4096);
	EXPECT_THROW(StoreReader::open(std::move(device), 2000), StoreCorruptError);
}

TEST(StoreReader, RefusesAnExtentTableThatDoesNotLocateTheSuperblock)
{
	Fixture f;
	auto device = f.make();
	std::vector<StoreExtent> wrong = f.extents;
	wrong[0].sector = 808; // says block 0 is one block further on
	encode_extent_block(1, f.sb.store_uuid, wrong, device->block_at(f.sb.extent_table_sectors[0]));
	EXPECT_THROW(StoreReader::open(std::move(device), 800), StoreCorruptError);
}

TEST(StoreReader, RefusesAnUnalignedSuperblockSector)
{
	Fixture f;
	EXPECT_THROW(StoreReader::open(f.make(), 801), UsageError);
}

} // namespace
