// Snapshots of one or several volumes at one instant, and their release.
#include "snapmgr/volume.hpp"

#include <algorithm>
#include <cerrno>
#include <memory>

#include <fmt/core.h>

#include "snapmgr/dm.hpp"
#include "snapmgr/error.hpp"
#include "log.hpp"
#include "volume_devices.hpp"

namespace snapmgr {

namespace {

struct Member {
	std::string name;
	CowfileTable table;
	bool suspended = false;
	bool snapped = false;
	bool imaged = false;
	std::uint64_t changed_bytes = 0; // written in the epoch the snapshot closes
};

UsageError held_snapshot(const std::string &name, const CowfileStatus &s)
{
	return UsageError(name, EBUSY,
			  fmt::format("volume {} holds a snapshot (epoch {}, {}); release it first "
				      "(snapmgr release {})",
				      name, s.snap_epoch, to_string(s.snap_state), name));
}

Member check_can_snapshot(const std::string &name)
{
	auto table = attached_table(name);
	if (!table)
		throw UsageError(name, ENODEV,
				 fmt::format("{} is not an attached cowfile volume (snapmgr list)", name));
	CowfileStatus s = kernel_status(name);
	if (!s.tracking)
		throw UsageError(name, EIO,
				 fmt::format("volume {} lost track of changes; a snapshot would not "
					     "be trusted for an incremental backup. Start a new "
					     "generation with snapmgr reset {} (the next backup is full)",
					     name, name));
	if (s.snap_state != SnapState::none)
		throw held_snapshot(name, s);
	if (dm_exists(image_name(name)))
		throw UsageError(name, EEXIST,
				 fmt::format("{} exists already; remove it first",
					     dm::device_path(image_name(name))));
	return {name, *table};
}

// Puts everything back as it was: no image, no snapshot, all resumed.
void undo(std::vector<Member> &members, const Logger &log)
{
	for (auto it = members.rbegin(); it != members.rend(); ++it) {
		auto attempt = [&](bool &done, const char *what, auto &&step) {
			if (!done)
				return;
			try {
				step();
				done = false;
			} catch (const std::exception &e) {
				log_error(log, fmt::format("rollback: cannot {} {}: {}", what, it->name,
						     e.what()));
			}
		};
		attempt(it->imaged, "remove the image of", [&] { dm::remove(image_name(it->name)); });
		attempt(it->snapped, "release the snapshot of",
			[&] { dm::message(it->name, COWFILE_MSG_RELEASE); });
		attempt(it->suspended, "resume", [&] { dm::resume(it->name); });
	}
}

} // namespace

std::vector<SnapshotResult> snapshot(const std::vector<std::string> &requested, const Logger &log)
{
	return snapshot_with(requested, log, {});
}

std::vector<SnapshotResult> snapshot_with(const std::vector<std::string> &requested,
					  const Logger &log,
					  const std::function<void()> &while_suspended)
{
	if (requested.empty())
		throw UsageError("volumes", EINVAL, "no volume named to snapshot");
	std::vector<std::string> names = requested;
	std::sort(names.begin(), names.end());
	names.erase(std::unique(names.begin(), names.end()), names.end());

	// Locks are taken in name order, so two multi-volume snapshots cannot
	// deadlock.
	std::vector<std::unique_ptr<VolumeLock>> locks;
	for (const auto &name : names)
		locks.push_back(std::make_unique<VolumeLock>(name));
	std::vector<Member> members;
	for (const auto &name : names)
		members.push_back(check_can_snapshot(name));

	try {
		for (Member &m : members) {
			log_step(log, fmt::format("suspending {} (its filesystem is frozen)", m.name));
			dm::suspend(m.name);
			m.suspended = true;
		}
		for (Member &m : members) {
			// Suspended, the epoch's chunk count is final.
			CowfileStatus s = kernel_status(m.name);
			m.changed_bytes = s.marked * s.chunk_sectors * 512;
			dm::message(m.name, COWFILE_MSG_SNAPSHOT);
			m.snapped = true;
		}
		if (while_suspended)
			while_suspended();
		for (Member &m : members) {
			dm::resume(m.name);
			m.suspended = false;
		}
		for (Member &m : members) {
			log_step(log, fmt::format("creating the image {}",
					     dm::device_path(image_name(m.name))));
			StoreReader store = open_attached_store(m.table);
			create_image(m.name, m.table, store.superblock().store_uuid);
			m.imaged = true;
		}
	} catch (...) {
		undo(members, log);
		throw;
	}

	std::vector<SnapshotResult> results;
	for (const Member &m : members) {
		CowfileStatus s = kernel_status(m.name);
		results.push_back({m.name, dm::device_path(image_name(m.name)), s.generation,
				   s.snap_epoch, m.changed_bytes,
				   s.slots * COWFILE_BLOCK_SIZE});
	}
	return results;
}

void release(const std::string &name, const Logger &log)
{
	VolumeLock lock(name);
	if (!attached_table(name))
		throw UsageError(name, ENODEV,
				 fmt::format("{} is not an attached cowfile volume (snapmgr list)", name));
	CowfileStatus s = kernel_status(name);
	const std::string image = image_name(name);
	if (s.snap_state == SnapState::none && !dm_exists(image))
		throw UsageError(name, EINVAL, fmt::format("volume {} holds no snapshot", name));
	if (auto info = dm::info(image)) {
		if (info->open_count > 0)
			throw UsageError(image, EBUSY,
					 fmt::format("the image {} is open (mounted, or a backup is "
						     "reading it); close it first",
						     dm::device_path(image)));
		log_step(log, fmt::format("removing the image {}", dm::device_path(image)));
		dm::remove(image);
	}
	if (s.snap_state != SnapState::none)
		dm::message(name, COWFILE_MSG_RELEASE);
}

void reset(const std::string &name, const Logger &log)
{
	VolumeLock lock(name);
	if (!attached_table(name))
		throw UsageError(name, ENODEV,
				 fmt::format("{} is not an attached cowfile volume (snapmgr list)", name));
	// A new generation under a held snapshot would leave its image and
	// changes without a generation: refused before anything is suspended
	// (and the filesystem frozen for nothing).
	const CowfileStatus k = kernel_status(name);
	if (k.snap_state != SnapState::none)
		throw held_snapshot(name, k);
	log_step(log, fmt::format("suspending {} to start a new generation", name));
	dm::suspend(name);
	try {
		dm::message(name, COWFILE_MSG_NEW_GENERATION);
	} catch (...) {
		dm::resume(name);
		throw;
	}
	dm::resume(name);
}

} // namespace snapmgr
