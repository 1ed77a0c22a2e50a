#include <gtest/gtest.h>

#include <string_view>

#include "crc32c.hpp"

namespace {

std::uint32_t crc_of(std::string_view s)
{
	return snapmgr::crc32c({reinterpret_cast<const std::uint8_t *>(s.data()), s.size()});
}

TEST(Crc32c, MatchesTheStandardCheckValue)
{
	EXPECT_EQ(crc_of("123456789"), 0xE3069283u);
}

TEST(Crc32c, MatchesRfc3720VectorsForZerosAndOnes)
{
	// iSCSI (RFC 3720 B.4): 32 bytes of zeros and of 0xff.
	std::uint8_t zeros[32] = {};
	std::uint8_t ones[32];
	std::fill(std::begin(ones), std::end(ones), 0xff);
	EXPECT_EQ(snapmgr::crc32c(zeros), 0x8A9136AAu);
	EXPECT_EQ(snapmgr::crc32c(ones), 0x62A8AB43u);
}

TEST(Crc32c, EmptyInputIsZero)
{
	EXPECT_EQ(crc_of(""), 0u);
}

} // namespace
