#pragma once

// The cowfile and cowfile-snap table lines and status lines (dm-cowfile(4)),
// built and parsed in one place.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "snapmgr/dm.hpp"

namespace snapmgr {

struct CowfileTable {
	std::uint64_t length = 0; // sectors, the origin's size
	std::string origin;       // a path or major:minor
	std::string store;        // device the store's extents are on
	std::uint64_t sb_sector = 0;
	std::optional<unsigned> low_water; // percent

	dm::Target target() const;
	// Throws UsageError when target is not a well-formed cowfile line.
	static CowfileTable parse(const dm::Target &target);
};

dm::Target snap_target(std::uint64_t length, const std::string &origin);

enum class SnapState { none, active, invalid };
std::string_view to_string(SnapState state) noexcept;

struct CowfileStatus {
	bool tracking = true; // false: "lost", the next backup must be full
	std::string generation;
	std::uint64_t generation_epoch = 0;
	std::uint64_t epoch = 0;
	std::uint32_t chunk_sectors = 0;
	std::uint64_t marked = 0;
	std::uint64_t chunks = 0;
	std::uint64_t slots_used = 0;    // 4 KiB log slots: copies and record blocks
	std::uint64_t slots = 0;
	SnapState snap_state = SnapState::none;
	std::uint64_t snap_epoch = 0;    // 0 when none
	std::string invalid_reason;      // empty unless invalid
	std::uint64_t core_bytes = 0;
	std::uint64_t copied_blocks = 0; // 4 KiB blocks copied for the held snapshot

	// Throws UsageError naming the field that does not parse.
	static CowfileStatus parse(std::string_view params);
};

// The cowfile devices using the store whose superblock is at sb_sector of
// block device major:minor: as their table's store device, or (a store on
// the tracked filesystem) because the device is the cowfile device itself.
// Empty when the dm-cowfile module is not loaded.
std::vector<std::string> cowfile_devices_using_store(unsigned major, unsigned minor,
						     std::uint64_t sb_sector);

// "major:minor" -> /dev/mapper/<name> for a dm device, else /dev/<kernel
// name>, from sysfs (no udev needed).
std::string device_node(const std::string &number);

} // namespace snapmgr
