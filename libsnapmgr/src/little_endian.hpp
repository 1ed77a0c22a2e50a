#pragma once

#include <cstdint>
#include <cstring>
#include <span>

// The store format is little-endian whatever the host; these helpers read
// and write fixed-width fields at byte offsets so no code depends on the
// host's byte order or on struct layout.
namespace snapmgr::le {

inline std::uint32_t get32(std::span<const std::uint8_t> b, std::size_t off)
{
	return std::uint32_t(b[off]) | std::uint32_t(b[off + 1]) << 8 |
	       std::uint32_t(b[off + 2]) << 16 | std::uint32_t(b[off + 3]) << 24;
}

inline std::uint64_t get64(std::span<const std::uint8_t> b, std::size_t off)
{
	return std::uint64_t(get32(b, off)) | std::uint64_t(get32(b, off + 4)) << 32;
}

inline void put32(std::span<std::uint8_t> b, std::size_t off, std::uint32_t v)
{
	for (int i = 0; i < 4; i++)
		b[off + i] = std::uint8_t(v >> (8 * i));
}

inline void put64(std::span<std::uint8_t> b, std::size_t off, std::uint64_t v)
{
	put32(b, off, std::uint32_t(v));
	put32(b, off + 4, std::uint32_t(v >> 32));
}

} // namespace snapmgr::le
