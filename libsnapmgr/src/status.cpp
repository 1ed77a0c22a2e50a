// What a volume is doing, from the kernel's status and the store, and the
// ranges that changed since a backup.
#include "snapmgr/volume.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <set>

#include <fmt/core.h>

#include "snapmgr/device.hpp"
#include "snapmgr/disk.hpp"
#include "snapmgr/dm.hpp"
#include "snapmgr/error.hpp"
#include "snapmgr/boot.hpp"
#include "volume_devices.hpp"

namespace snapmgr {

std::string_view to_string(VolumeState state) noexcept
{
	switch (state) {
	case VolumeState::tracking:
		return "tracking";
	case VolumeState::lost:
		return "lost";
	case VolumeState::next_boot:
		return "next_boot";
	case VolumeState::given_back:
		return "given_back";
	case VolumeState::detached:
		break;
	}
	return "detached";
}

std::string Position::to_string() const
{
	return fmt::format("{}:{}", format_uuid(generation), epoch);
}

Position Position::parse(std::string_view text)
{
	auto colon = text.rfind(':');
	Position p;
	auto uuid = colon == std::string_view::npos ? std::nullopt
						     : parse_uuid(text.substr(0, colon));
	if (uuid) {
		auto digits = text.substr(colon + 1);
		auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), p.epoch);
		if (ec == std::errc() && end == digits.data() + digits.size() && !digits.empty()) {
			p.generation = *uuid;
			return p;
		}
	}
	throw UsageError(std::string(text), EINVAL,
			 fmt::format("'{}' is not a position GENERATION:EPOCH (as snapmgr status "
				     "and snapmgr backup print it)",
				     text));
}

namespace {

VolumeStatus status_of(const std::string &name)
{
	check_volume_name(name);
	VolumeStatus s;
	s.name = name;
	auto config = load_config(name);
	if (config)
		s.config = *config;
	if (auto table = attached_table(name)) {
		CowfileStatus k = kernel_status(name);
		s.state = k.tracking ? VolumeState::tracking : VolumeState::lost;
		s.device = dm::device_path(name);
		s.origin = device_node(table->origin);
		s.size_bytes = table->length * 512;
		s.store_room_bytes = k.slots * COWFILE_BLOCK_SIZE;
		s.store_used_bytes = k.slots_used * COWFILE_BLOCK_SIZE;
		s.store_nearly_full = k.snap_state == SnapState::active && s.store_room_bytes &&
				      s.store_used_bytes * 100 >=
					      std::uint64_t(table->low_water.value_or(
						      COWFILE_DEFAULT_LOW_WATER)) *
						      s.store_room_bytes;
		if (dm_exists(image_name(name)))
			s.image = dm::device_path(image_name(name));
		s.kernel = k;
		if (config) {
			std::error_code ec;
			auto bytes = std::filesystem::file_size(config->store, ec);
			s.store_size_bytes = ec ? 0 : bytes;
		}
		return s;
	}
	if (!config)
		throw UsageError(name, ENOENT,
				 fmt::format("no volume named {} (snapmgr list shows them)", name));
	s.origin = config->device;
	try {
		BlockDevice d = probe_device(config->device);
		s.size_bytes = d.size_bytes;
		s.state = d.mountpoints.empty() ? VolumeState::detached : VolumeState::next_boot;
	} catch (const Error &) {
		s.state = VolumeState::detached;
	}
	if (auto why = given_back_reason(name)) {
		s.state = VolumeState::given_back;
		s.attach_error = *why;
	}
	return s;
}

} // namespace

VolumeStatus status(const std::string &name)
{
	VolumeStatus s = status_of(name);
	// Which disk is a detail: a disk's record that does not parse is
	// reported by the disk's own commands, not by every volume's status.
	try {
		if (auto disk = disk_of_volume(name))
			s.disk = disk->name;
	} catch (const Error &) {
	}
	return s;
}

VolumeStatus wait_for_event(const std::string &name)
{
	check_volume_name(name);
	dm::EventPoll events;
	events.arm();
	auto info = dm::info(name);
	if (!info || !attached_table(name))
		throw UsageError(name, ENODEV,
				 fmt::format("{} is not an attached cowfile volume (snapmgr list)", name));
	for (;;) {
		events.wait();
		events.arm();
		auto now = dm::info(name);
		if (!now || now->event_nr != info->event_nr)
			return status(name); // an event, or the volume went away
	}
}

std::vector<VolumeStatus> list()
{
	std::set<std::string> names;
	for (const auto &c : load_all_configs())
		names.insert(c.name);
	for (const auto &name : dm::list())
		if (attached_table(name))
			names.insert(name);
	std::vector<VolumeStatus> out;
	for (const auto &name : names)
		out.push_back(status(name));
	return out;
}

Changes changes(const std::string &name, const std::optional<Position> &since)
{
	VolumeLock lock(name);
	return changes_locked(name, since);
}

Changes changes_locked(const std::string &name, const std::optional<Position> &since)
{
	auto table = attached_table(name);
	if (!table)
		throw UsageError(name, ENODEV,
				 fmt::format("{} is not an attached cowfile volume (snapmgr list)", name));
	CowfileStatus k = kernel_status(name);
	StoreReader store = open_attached_store(*table);
	Changes c;
	c.name = name;
	c.chunk_bytes = k.chunk_sectors * 512;
	c.size_bytes = table->length * 512;
	auto generation = parse_uuid(k.generation);
	if (!generation)
		throw DeviceError(name, EINVAL,
				  fmt::format("cannot parse the generation '{}' of {}", k.generation,
					      name));
	c.now.generation = *generation;
	// The position a backup of the held snapshot reaches; without one, the
	// epochs closed so far.
	c.now.epoch = k.snap_state == SnapState::active ? k.snap_epoch : k.epoch - 1;
	if (!since) {
		c.set.full = true;
		c.set.full_reason = "no previous position given";
	} else if (!k.tracking) {
		c.set.full = true;
		c.set.full_reason = "tracking was lost; a change may have been missed";
	} else if (since->generation != *generation) {
		c.set.full = true;
		c.set.full_reason = fmt::format("generation {} is not the volume's generation {}",
						format_uuid(since->generation), k.generation);
	} else {
		c.set = store.changes_since(since->epoch, since->generation);
	}
	if (c.set.full)
		c.set.ranges = {{0, c.size_bytes}};
	return c;
}

} // namespace snapmgr
