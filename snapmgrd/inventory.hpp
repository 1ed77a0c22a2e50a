#pragma once

// What the machine has, in the reference agent's JSON shapes: disks with
// their partitions (GET /disks/) and system facts (GET /systeminfo/).

#include <functional>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "snapmgr/device.hpp"

namespace snapmgr::agent {

struct DiskFilter {
	bool include_virtual = false; // loop, dm, md, zram: /sys/devices/virtual/block
	bool include_swap = false;    // a whole disk used as swap (never one with a swap partition)
	// Kernel names of the devices under the store locations' filesystems
	// (with what they stack on): never listed.
	std::set<std::string> store_devices;
	// The disk id of a tracked disk, or "" when it is not tracked.
	std::function<std::string(const BlockDevice &)> tracked_id;
};

// The kernel names of the device holding path's filesystem and of every
// device it stacks on (partition's disk, dm slaves, recursively).
std::set<std::string> devices_under(const std::string &path);

bool is_virtual(const BlockDevice &disk);
nlohmann::json disk_json(const BlockDevice &disk, const std::string &id);
nlohmann::json disks_json(const DiskFilter &filter);
nlohmann::json system_info(const nlohmann::json &disks);

} // namespace snapmgr::agent
