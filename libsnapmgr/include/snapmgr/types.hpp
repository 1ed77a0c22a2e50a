#pragma once

// What the public API's parts share: identifiers, the tracking chunk, and
// changed byte ranges.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace snapmgr {

using Uuid = std::array<std::uint8_t, 16>;

// "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", bytes in stored order (as the
// kernel's %pUb prints them).
std::string format_uuid(const Uuid &uuid);
std::optional<Uuid> parse_uuid(std::string_view text);

// A tracking chunk the store format allows: a power of two from 8 sectors
// (4 KiB) to 2048 (1 MiB).
bool valid_chunk_sectors(std::uint32_t chunk_sectors) noexcept;

struct ByteRange {
	std::uint64_t start = 0;
	std::uint64_t length = 0;
	bool operator==(const ByteRange &) const = default;
};

struct ChangeSet {
	// True: the store cannot prove what changed; back up everything.
	bool full = false;
	std::string full_reason;
	std::vector<ByteRange> ranges; // empty when full
};

} // namespace snapmgr
