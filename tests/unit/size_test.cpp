// Sizes as users type them on the command line.
#include <gtest/gtest.h>

#include "snapmgr/error.hpp"
#include "snapmgr/size.hpp"

using snapmgr::parse_size;

TEST(ParseSizeTest, AcceptsBinaryUnitsInAnySpelling)
{
	EXPECT_EQ(parse_size("4096", "s"), 4096u);
	EXPECT_EQ(parse_size("64K", "s"), 64u << 10);
	EXPECT_EQ(parse_size("64k", "s"), 64u << 10);
	EXPECT_EQ(parse_size("8MiB", "s"), 8u << 20);
	EXPECT_EQ(parse_size("8MB", "s"), 8u << 20);
	EXPECT_EQ(parse_size("2g", "s"), 2ull << 30);
	EXPECT_EQ(parse_size("1T", "s"), 1ull << 40);
	EXPECT_EQ(parse_size("512b", "s"), 512u);
}

TEST(ParseSizeTest, RefusesWhatIsNotASize)
{
	for (const char *bad : {"", "-1", "M", "12Q", "1.5G", "8 M", "1KK", "99999999999T"})
		EXPECT_THROW(parse_size(bad, "--size"), snapmgr::UsageError) << bad;
}
