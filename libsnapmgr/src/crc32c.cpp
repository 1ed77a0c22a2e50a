#include "crc32c.hpp"

#include <array>

namespace snapmgr {

namespace {

constexpr std::uint32_t castagnoli_reflected = 0x82f63b78u;

constexpr std::array<std::uint32_t, 256> make_table()
{
	std::array<std::uint32_t, 256> table{};
	for (std::uint32_t byte = 0; byte < 256; byte++) {
		std::uint32_t crc = byte;
		for (int bit = 0; bit < 8; bit++)
			crc = (crc & 1) ? (crc >> 1) ^ castagnoli_reflected : crc >> 1;
		table[byte] = crc;
	}
	return table;
}

constexpr auto table = make_table();

} // namespace

std::uint32_t crc32c(std::span<const std::uint8_t> data) noexcept
{
	std::uint32_t crc = 0xffffffffu;
	for (std::uint8_t byte : data)
		crc = table[(crc ^ byte) & 0xff] ^ (crc >> 8);
	return crc ^ 0xffffffffu;
}

} // namespace snapmgr
