// Growing a store while it is in use: the file gets more preallocated
// extents, and the kernel is told to append them to its data area. The
// monitor does it before a held snapshot's store fills, as LVM autoextends
// a snapshot.
#include "snapmgr/volume.hpp"

#include <sys/statvfs.h>

#include <cerrno>
#include <cstring>

#include <fmt/core.h>

#include "snapmgr/dm.hpp"
#include "snapmgr/error.hpp"
#include "log.hpp"
#include "volume_devices.hpp"

namespace snapmgr {

namespace {

// The kernel takes a handful of extents per message.
constexpr std::size_t extents_per_message = 32;

} // namespace

std::uint64_t grow(const std::string &name, std::uint64_t add_bytes, const Logger &log)
{
	VolumeLock lock(name);
	auto table = attached_table(name);
	auto config = load_config(name);
	if (!table || !config)
		throw UsageError(name, ENODEV,
				 fmt::format("{} is not an attached, configured volume (snapmgr list)",
					     name));
	StoreReader store = open_attached_store(*table);
	const Superblock &sb = store.superblock();
	if (sb.store_uuid != config->store_uuid)
		throw StoreCorruptError(config->store.string(), EINVAL,
					fmt::format("the store {} is not the one volume {} uses",
						    config->store.string(), name));
	const std::uint64_t old_bytes = sb.store_blocks * store_block_size;
	std::error_code ec;
	const std::uint64_t file_bytes = std::filesystem::file_size(config->store, ec);
	if (ec || file_bytes != old_bytes)
		throw StoreError(config->store.string(), ec ? ec.value() : EINVAL,
				 fmt::format("{} is {} bytes, the store the kernel uses {}; refusing "
					     "to grow a file that is not what the kernel knows",
					     config->store.string(), ec ? 0 : file_bytes, old_bytes));

	// Refused, not failed, when the filesystem has no room: the file is left
	// as it was, and the user can free space or ask for less.
	const auto no_room = [&](std::uint64_t free_bytes) {
		return UsageError(config->store.string(), ENOSPC,
				  fmt::format("cannot add {} bytes to {}: its filesystem has {} "
					      "bytes free; free space there or grow by less",
					      add_bytes, config->store.string(), free_bytes));
	};
	struct statvfs fs {};
	if (::statvfs(config->store.parent_path().c_str(), &fs) == 0 &&
	    std::uint64_t(fs.f_bavail) * fs.f_frsize < add_bytes)
		throw no_room(std::uint64_t(fs.f_bavail) * fs.f_frsize);
	log_step(log, fmt::format("preallocating {} more bytes for {}", add_bytes,
				  config->store.string()));
	std::vector<StoreExtent> extents;
	try {
		extents = StoreFile::extend(config->store, add_bytes);
	} catch (const StoreError &e) {
		if (e.error_number() != ENOSPC)
			throw;
		throw no_room(std::uint64_t(fs.f_bavail) * fs.f_frsize);
	}
	auto added = extents_from_block(extents, sb.store_blocks);
	std::uint64_t accepted = sb.store_blocks;
	try {
		std::vector<StoreExtent> old_part;
		for (const auto &e : extents) {
			std::uint64_t have = total_blocks(old_part);
			if (have >= sb.store_blocks)
				break;
			old_part.push_back({e.sector, std::min(e.blocks, sb.store_blocks - have)});
		}
		if (merged_extents(old_part) != merged_extents(store.extents()))
			throw StoreCorruptError(config->store.string(), EINVAL,
						fmt::format("the extents of {} are not where the kernel "
							    "writes the store; refusing to grow it",
							    config->store.string()));
		for (std::size_t i = 0; i < added.size(); i += extents_per_message) {
			std::string text = COWFILE_MSG_GROW;
			std::uint64_t blocks = 0;
			for (std::size_t j = i; j < std::min(added.size(), i + extents_per_message); j++) {
				text += fmt::format(" {}:{}", added[j].sector, added[j].blocks);
				blocks += added[j].blocks;
			}
			dm::message(name, text);
			accepted += blocks;
		}
	} catch (...) {
		try {
			StoreFile::shrink(config->store, accepted * store_block_size);
		} catch (const std::exception &e) {
			log_error(log, fmt::format("rollback: cannot cut {} back to {} bytes: {}",
						   config->store.string(),
						   accepted * store_block_size, e.what()));
		}
		throw;
	}
	return accepted * store_block_size;
}

namespace {

// Grows the store by a step when its filesystem has room; says why not,
// unless told to keep quiet about a refusal it has reported already.
bool grow_step(const VolumeStatus &s, const MonitorOptions &options, bool quiet_refusal)
{
	MonitorReport r;
	r.name = s.name;
	r.event = "refused";
	r.store_used_bytes = s.store_used_bytes;
	r.store_room_bytes = s.store_room_bytes;
	r.step_bytes = options.step_bytes;
	const std::string used = fmt::format("store {}% used ({} of {} bytes)",
					     s.store_used_bytes * 100 / s.store_room_bytes,
					     s.store_used_bytes, s.store_room_bytes);
	const auto refuse = [&](const std::string &reason) {
		r.reason = reason;
		r.text = fmt::format("{}: {}; {}", s.name, used, reason);
		if (!quiet_refusal && options.report)
			options.report(r);
		return false;
	};
	struct statvfs fs {};
	if (::statvfs(s.config.store.parent_path().c_str(), &fs) < 0)
		return refuse(fmt::format("cannot grow it: cannot see its filesystem's free space ({})",
					  std::strerror(errno)));
	const std::uint64_t free_bytes = std::uint64_t(fs.f_bavail) * fs.f_frsize;
	if (free_bytes < options.step_bytes)
		return refuse(fmt::format("cannot grow it by {} bytes: its filesystem has {} bytes free",
					  options.step_bytes, free_bytes));
	try {
		r.store_size_bytes = grow(s.name, options.step_bytes, options.log);
	} catch (const Error &e) {
		return refuse(fmt::format("cannot grow it: {}", e.what()));
	}
	r.event = "grew";
	r.text = fmt::format("{}: {}; grew it by {} bytes to {} bytes", s.name, used,
			     options.step_bytes, r.store_size_bytes);
	if (options.report)
		options.report(r);
	return true;
}

} // namespace

void monitor(const std::string &name, const MonitorOptions &options)
{
	if (options.step_bytes == 0 || options.step_bytes % store_block_size)
		throw UsageError("step", EINVAL,
				 fmt::format("the growth step {} is not a positive multiple of 4K",
					     options.step_bytes));
	check_volume_name(name);
	if (!attached_table(name))
		throw UsageError(name, ENODEV,
				 fmt::format("{} is not an attached cowfile volume (snapmgr list)", name));
	dm::EventPoll events;
	// A refusal is said once per snapshot and store size, not at every look.
	std::pair<std::uint64_t, std::uint64_t> refused{};
	for (;;) {
		events.arm();
		auto table = attached_table(name);
		if (!table) {
			if (options.report) {
				MonitorReport r;
				r.name = name;
				r.event = "detached";
				r.text = fmt::format("{}: not attached, nothing to watch", name);
				options.report(r);
			}
			return;
		}
		VolumeStatus s;
		try {
			s = status(name);
		} catch (const Error &) {
			if (attached_table(name))
				throw;
			continue; // detached while we looked: the next turn says so
		}
		if (s.store_nearly_full) {
			const std::pair now{s.kernel->snap_epoch, s.store_room_bytes};
			if (grow_step(s, options, now == refused))
				continue; // the store may still be past the mark: look again
			refused = now;
		}
		events.wait();
	}
}

} // namespace snapmgr
