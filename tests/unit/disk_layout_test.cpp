// A disk's partition table as snapmgr records it: what lies outside the
// partitions (the gaps a disk snapshot reads at the instant) and what makes
// two tables differ (a disk image must never mix them).
#include <gtest/gtest.h>

#include "snapmgr/disk.hpp"
#include "snapmgr/error.hpp"

using namespace snapmgr;

namespace {

constexpr std::uint64_t MiB = 1 << 20;

DiskPartition part(unsigned number, std::uint64_t start, std::uint64_t size)
{
	DiskPartition p;
	p.number = number;
	p.kernel_name = "vda" + std::to_string(number);
	p.start_bytes = start;
	p.size_bytes = size;
	p.type = "0fc63daf-8483-4772-8e79-3d69d8477de4";
	p.uuid = "uuid-" + std::to_string(number);
	return p;
}

// A GPT disk of 100 MiB: BIOS boot at 1 MiB, two partitions with a gap
// between them, free space at the end.
DiskConfig gpt_disk()
{
	DiskConfig d;
	d.name = "vda";
	d.device = "/dev/vda";
	d.table_type = "gpt";
	d.table_uuid = "table-1";
	d.size_bytes = 100 * MiB;
	d.partitions = {part(1, 1 * MiB, 1 * MiB), part(2, 2 * MiB, 40 * MiB),
			part(3, 50 * MiB, 30 * MiB)};
	return d;
}

} // namespace

TEST(DiskLayoutTest, GapsAreEverythingNoPartitionCovers)
{
	const std::vector<ByteRange> expected = {
		{0, 1 * MiB}, {42 * MiB, 8 * MiB}, {80 * MiB, 20 * MiB}};
	EXPECT_EQ(disk_gaps(gpt_disk()), expected);
}

TEST(DiskLayoutTest, NoGapBetweenAdjacentPartitionsNorAfterAFullDisk)
{
	DiskConfig d = gpt_disk();
	d.partitions = {part(1, 1 * MiB, 49 * MiB), part(2, 50 * MiB, 50 * MiB)};
	const std::vector<ByteRange> expected = {{0, 1 * MiB}};
	EXPECT_EQ(disk_gaps(d), expected);
}

TEST(DiskLayoutTest, AnExtendedPartitionDoesNotHideTheRecordsAroundItsLogicals)
{
	// dos: the extended partition (2) shows as 1 KiB at its start; the
	// logical (5) begins 1 MiB later, its record in between.
	DiskConfig d = gpt_disk();
	d.table_type = "dos";
	d.partitions = {part(1, 1 * MiB, 32 * MiB), part(2, 33 * MiB, 1024),
			part(5, 34 * MiB, 32 * MiB)};
	const std::vector<ByteRange> expected = {
		{0, 1 * MiB}, {33 * MiB + 1024, 1 * MiB - 1024}, {66 * MiB, 34 * MiB}};
	EXPECT_EQ(disk_gaps(d), expected);
}

TEST(DiskLayoutTest, TheSameTableDoesNotDiffer)
{
	EXPECT_EQ(layout_difference(gpt_disk(), gpt_disk()), std::nullopt);
}

TEST(DiskLayoutTest, EveryChangeOfTheTableIsADifference)
{
	const DiskConfig was = gpt_disk();
	auto changed = [&](auto &&edit) {
		DiskConfig now = was;
		edit(now);
		return layout_difference(was, now);
	};
	auto resized = changed([](DiskConfig &d) { d.partitions[2].size_bytes += MiB; });
	ASSERT_TRUE(resized);
	EXPECT_NE(resized->find("partition 3 was"), std::string::npos) << *resized;
	EXPECT_TRUE(changed([](DiskConfig &d) { d.partitions[1].start_bytes += MiB; }));
	EXPECT_TRUE(changed([](DiskConfig &d) { d.partitions[0].type = "other"; }));
	EXPECT_TRUE(changed([](DiskConfig &d) { d.partitions[0].uuid = "other"; }));
	EXPECT_TRUE(changed([](DiskConfig &d) { d.partitions.pop_back(); }));
	EXPECT_TRUE(changed([](DiskConfig &d) { d.partitions.push_back(part(4, 82 * MiB, MiB)); }));
	EXPECT_TRUE(changed([](DiskConfig &d) { d.size_bytes += MiB; }));
	EXPECT_TRUE(changed([](DiskConfig &d) { d.table_uuid = "table-2"; }));
	EXPECT_TRUE(changed([](DiskConfig &d) { d.table_type = "dos"; }));
	// What a partition holds, and its role, are not the table.
	EXPECT_FALSE(changed([](DiskConfig &d) {
		d.partitions[1].fs_type = "xfs";
		d.partitions[1].role = PartitionRole::tracked;
	}));
}

TEST(DiskLayoutTest, ADiskPositionIsEachVolumesAndReadsBackAsWritten)
{
	const std::string a = "0b500e38-4e02-4e13-a291-63bb8749ed2b:3";
	const std::string b = "256e1f94-c4b7-43cb-8a5c-7b81fe9ade2b:12";
	const DiskPosition p = parse_disk_position("vda3=" + b + ",vda2=" + a);
	ASSERT_EQ(p.size(), 2u);
	EXPECT_EQ(p.at("vda2").epoch, 3u);
	EXPECT_EQ(p.at("vda3").to_string(), b);
	EXPECT_EQ(to_string(p), "vda2=" + a + ",vda3=" + b);
	EXPECT_EQ(parse_disk_position(to_string(p)).at("vda2").to_string(), a);
	EXPECT_TRUE(parse_disk_position("").empty());
	EXPECT_THROW(parse_disk_position(a), UsageError);
	EXPECT_THROW(parse_disk_position("vda2=" + a + ",vda2=" + a), UsageError);
	EXPECT_THROW(parse_disk_position("vda2=" + a + ",=" + b), UsageError);
	EXPECT_THROW(parse_disk_position("vda2=12"), UsageError);
}
