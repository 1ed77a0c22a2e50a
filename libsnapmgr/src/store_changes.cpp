// Which bytes of the origin changed since an epoch, computed from the chunk
// map entries alone so that it is testable without a device.
#include "store.hpp"

#include <algorithm>

#include <fmt/core.h>

namespace snapmgr {

std::optional<std::string> full_backup_reason(const Superblock &sb, std::uint64_t since_epoch,
					      const std::optional<Uuid> &generation)
{
	if (sb.tracking_lost())
		return "change tracking was lost; the next load starts a new generation";
	if (generation && *generation != sb.generation_uuid)
		return fmt::format("generation {} is not the store's generation {}",
				   format_uuid(*generation), format_uuid(sb.generation_uuid));
	// Epoch generation_epoch - 1 is the last one whose end this generation
	// saw: everything written after it is marked. Older history is gone.
	if (since_epoch + 1 < sb.generation_epoch)
		return fmt::format("epoch {} is older than the generation, which starts at epoch {}",
				   since_epoch, sb.generation_epoch);
	// An epoch the store never reached was recorded against another store.
	if (since_epoch > sb.epoch)
		return fmt::format("epoch {} is newer than the store's open epoch {}", since_epoch,
				   sb.epoch);
	return std::nullopt;
}

std::vector<ByteRange> changed_ranges(std::span<const MapEntry> entries, std::uint64_t since_epoch,
				      std::uint32_t chunk_sectors, std::uint64_t origin_sectors)
{
	const std::uint64_t chunk_bytes = std::uint64_t(chunk_sectors) * 512;
	const std::uint64_t origin_bytes = origin_sectors * 512;
	const std::uint64_t nr_chunks =
		std::min<std::uint64_t>(entries.size(), chunk_count(origin_sectors, chunk_sectors));
	std::vector<ByteRange> ranges;
	for (std::uint64_t chunk = 0; chunk < nr_chunks; chunk++) {
		if (entries[chunk].last_epoch <= since_epoch)
			continue;
		std::uint64_t start = chunk * chunk_bytes;
		std::uint64_t end = std::min(start + chunk_bytes, origin_bytes);
		if (!ranges.empty() && ranges.back().start + ranges.back().length == start)
			ranges.back().length += end - start;
		else
			ranges.push_back({start, end - start});
	}
	return ranges;
}

} // namespace snapmgr
