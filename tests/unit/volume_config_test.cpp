// The volume configuration file, positions and the cowfile table/status
// lines: formats that user space reads back, so a round trip must be exact
// and anything malformed must be refused, never guessed at.
#include <gtest/gtest.h>

#include "snapmgr/config.hpp"
#include "snapmgr/cowfile.hpp"
#include "snapmgr/error.hpp"
#include "snapmgr/volume.hpp"

using namespace snapmgr;

namespace {

VolumeConfig sample()
{
	VolumeConfig c;
	c.name = "vg-root";
	c.device = "/dev/mapper/vg-root";
	c.mode = AttachMode::insert;
	c.store = "/.snapmgr-vg-root.store";
	c.store_on_volume = true;
	c.sb_sector = 123456;
	c.store_uuid = *parse_uuid("0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0");
	return c;
}

} // namespace

TEST(VolumeConfigTest, RoundTripsBothStorePlacements)
{
	VolumeConfig c = sample();
	EXPECT_EQ(parse_config(format_config(c), "t"), c);
	c.mode = AttachMode::wrap;
	c.store_on_volume = false;
	c.store_device = "/dev/vdc";
	EXPECT_EQ(parse_config(format_config(c), "t"), c);
	c.device_fs_uuid = "5d1c8a8e-3b7e-4b8e-9a52-2f0c3d7e9b11";
	EXPECT_EQ(parse_config(format_config(c), "t"), c);
	c.store_in_fs = "/snap/.snapmgr-data.store";
	EXPECT_EQ(parse_config(format_config(c), "t"), c);
}

TEST(VolumeConfigTest, RefusesMissingUnknownAndMalformedKeys)
{
	std::string text = format_config(sample());
	auto without = [&](const std::string &key) {
		auto at = text.find(key + " =");
		auto end = text.find('\n', at);
		return text.substr(0, at) + text.substr(end + 1);
	};
	for (const char *key : {"name", "device", "mode", "store", "store_device",
				"store_sb_sector", "store_uuid"})
		EXPECT_THROW(parse_config(without(key), "t"), UsageError) << key;
	EXPECT_THROW(parse_config(text + "colour = blue\n", "t"), UsageError);
	EXPECT_THROW(parse_config(text + "no equals sign\n", "t"), UsageError);
	std::string bad_sector = text;
	bad_sector.replace(bad_sector.find("123456"), 6, "12x456");
	EXPECT_THROW(parse_config(bad_sector, "t"), UsageError);
	std::string bad_mode = text;
	bad_mode.replace(bad_mode.find("insert"), 6, "splice");
	EXPECT_THROW(parse_config(bad_mode, "t"), UsageError);
	EXPECT_THROW(parse_config(text + "store_in_fs = relative/path\n", "t"), UsageError);
}

TEST(VolumeConfigTest, VolumeNamesThatCannotBeDeviceOrFileNamesAreRefused)
{
	for (const char *good : {"data", "vg-lv", "a.b_c+d", "x"})
		EXPECT_NO_THROW(check_volume_name(good)) << good;
	for (const char *bad : {"", "-x", ".x", "a/b", "a b", "../etc"})
		EXPECT_THROW(check_volume_name(bad), UsageError) << bad;
	EXPECT_THROW(check_volume_name(std::string(101, 'a')), UsageError);
}

TEST(PositionTest, ParsesWhatItPrintsAndRefusesTheRest)
{
	Position p = Position::parse("0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0:42");
	EXPECT_EQ(p.epoch, 42u);
	EXPECT_EQ(Position::parse(p.to_string()).to_string(), p.to_string());
	for (const char *bad : {"", "42", "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0",
				"0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0:", "nonsense:1",
				"0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0:4x2",
				"0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0:-1"})
		EXPECT_THROW(Position::parse(bad), UsageError) << bad;
}

TEST(CowfileLinesTest, TableRoundTripsWithAndWithoutFeatures)
{
	CowfileTable t{2048, "253:1", "253:1", 4096, std::nullopt};
	EXPECT_EQ(t.target().params, "253:1 253:1 4096");
	CowfileTable back = CowfileTable::parse(t.target());
	EXPECT_EQ(back.origin, "253:1");
	EXPECT_EQ(back.sb_sector, 4096u);
	t.low_water = 50;
	EXPECT_EQ(CowfileTable::parse(t.target()).low_water, 50u);
	EXPECT_THROW(CowfileTable::parse({0, 8, "linear", "8:0 0"}), UsageError);
	EXPECT_THROW(CowfileTable::parse({0, 8, "cowfile", "8:0 8:0"}), UsageError);
}

TEST(CowfileLinesTest, StatusLineParsesEachSnapshotState)
{
	auto none = CowfileStatus::parse(
		"tracking 0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0 1 3 128 5/100 0/40 none - - 4096 0");
	EXPECT_TRUE(none.tracking);
	EXPECT_EQ(none.epoch, 3u);
	EXPECT_EQ(none.marked, 5u);
	EXPECT_EQ(none.chunks, 100u);
	EXPECT_EQ(none.snap_state, SnapState::none);
	auto active = CowfileStatus::parse(
		"tracking 0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0 2 7 256 9/300 12/40 active 6 - 8192 9");
	EXPECT_TRUE(active.tracking);
	EXPECT_EQ(active.generation, "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0");
	EXPECT_EQ(active.generation_epoch, 2u);
	EXPECT_EQ(active.epoch, 7u);
	EXPECT_EQ(active.chunk_sectors, 256u);
	EXPECT_EQ(active.slots_used, 12u);
	EXPECT_EQ(active.slots, 40u);
	EXPECT_EQ(active.snap_state, SnapState::active);
	EXPECT_EQ(active.snap_epoch, 6u);
	EXPECT_EQ(active.invalid_reason, "");
	EXPECT_EQ(active.core_bytes, 8192u);
	EXPECT_EQ(active.copied_blocks, 9u);
	auto invalid = CowfileStatus::parse(
		"lost 0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0 1 3 128 5/100 40/40 invalid 2 store_full 4096 38");
	EXPECT_FALSE(invalid.tracking);
	EXPECT_EQ(invalid.snap_state, SnapState::invalid);
	EXPECT_EQ(invalid.snap_epoch, 2u);
	EXPECT_EQ(invalid.invalid_reason, "store_full");
	EXPECT_THROW(CowfileStatus::parse("tracking x 1 3 128 5/100"), UsageError);
	EXPECT_THROW(CowfileStatus::parse("dreaming g 1 3 128 5/100 0/40 none - - 1"), UsageError);
	EXPECT_THROW(CowfileStatus::parse("tracking g 1 3 128 5-100 0/40 none - - 1 0"), UsageError);
}

TEST(DefaultStoreSizeTest, ATenthOfTheVolumeAtLeast64MiBIn4KiBBlocks)
{
	EXPECT_EQ(default_store_bytes(100ull << 20), 64ull << 20);
	EXPECT_EQ(default_store_bytes(10ull << 30), 1ull << 30);
	EXPECT_EQ(default_store_bytes((10ull << 30) + 12345) % 4096, 0u);
}
