// Putting a volume under a cowfile wrapper and taking it out again
// (DESIGN.md, "Putting a live volume under tracking").
#include "snapmgr/volume.hpp"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <vector>

#include <fmt/core.h>

#include "snapmgr/boot.hpp"
#include "snapmgr/device.hpp"
#include "snapmgr/dm.hpp"
#include "snapmgr/error.hpp"
#include "log.hpp"
#include "store_check.hpp"
#include "volume_devices.hpp"

namespace snapmgr {

namespace {

constexpr std::uint64_t min_default_store = 64ull << 20;

std::string store_table_device(const VolumeConfig &config, const std::string &origin)
{
	return config.store_on_volume ? origin : config.store_device;
}

CowfileTable make_table(const VolumeConfig &config, std::uint64_t sectors, const std::string &origin)
{
	CowfileTable t;
	t.length = sectors;
	t.origin = origin;
	t.store = store_table_device(config, origin);
	t.sb_sector = config.sb_sector;
	return t;
}

// Checks that the store at the configured place is the configured store,
// and that its file still owns those blocks, before a table points the
// kernel at it.
void verify_store(const VolumeConfig &config, const std::string &device_path)
{
	StoreReader reader = StoreReader::open_device(device_path, config.sb_sector);
	if (reader.superblock().store_uuid != config.store_uuid)
		throw StoreCorruptError(
			config.store.string(), EINVAL,
			fmt::format("the store superblock at sector {} of {} belongs to store {}, not "
				    "to {} as configured for volume {}; the store was moved or "
				    "replaced",
				    config.sb_sector, device_path,
				    format_uuid(reader.superblock().store_uuid),
				    format_uuid(config.store_uuid), config.name));
	if (auto problem = store_file_problem(config, device_path, reader.extents()))
		throw StoreCorruptError(config.store.string(), ENOENT,
					fmt::format("{}; the store is not used, since its old "
						    "blocks may belong to other files now",
						    *problem));
}

// A table load fails with EINVAL alone when the kernel has no cowfile
// target (the device-mapper core tried to load dm-cowfile and could not):
// say so instead.
[[noreturn]] void explain_missing_target(const DeviceError &e)
{
	bool missing = false;
	try {
		missing = !dm::has_target(COWFILE_TARGET_NAME);
	} catch (const Error &) {
	}
	if (missing)
		throw DeviceError(e.object(), ENOPKG,
				  fmt::format("the kernel has no cowfile target: the dm-cowfile "
					      "module is not installed for this kernel or cannot "
					      "be loaded ({})",
					      e.what()));
	throw e;
}

// Live insertion under dm volume `name`: <name>-real takes the current
// table, and <name> gets a cowfile table over it, swapped in while the
// device is suspended (which freezes its filesystem). Nothing is unmounted.
void insert_wrapper(const VolumeConfig &config, const Logger &log)
{
	const std::string &name = config.name;
	const std::string real = real_name(name);
	if (dm_exists(real))
		throw UsageError(real, EEXIST,
				 fmt::format("a device-mapper device {} exists already; cannot "
					     "insert the wrapper under {}",
					     real, name));
	const dm::Table old = dm::table(name);
	auto info = dm::info(name);
	std::uint64_t sectors = 0;
	for (const auto &t : old)
		sectors = std::max(sectors, t.start + t.length);

	Rollback rollback(log);
	log_step(log, fmt::format("creating {} with the table of {}", real, name));
	dm::create(real, dm_uuid(config.store_uuid, "-real"), old, info && info->read_only);
	rollback.add(fmt::format("remove {}", real), [&] { dm::remove(real); });

	const CowfileTable table = make_table(config, sectors, dm::device_number(real));
	log_step(log, fmt::format("loading cowfile over {} into {}", real, name));
	try {
		dm::load(name, {table.target()});
	} catch (const DeviceError &e) {
		explain_missing_target(e);
	}
	rollback.add(fmt::format("clear the new table of {}", name), [&] { dm::clear(name); });

	log_step(log, fmt::format("suspending {} (its filesystem is frozen)", name));
	dm::suspend(name);
	rollback.add(fmt::format("resume {}", name), [&] { dm::resume(name); });
	dm::resume(name);
	rollback.commit();
}

// A new dm device <name> over an unused device.
void create_wrapper(const VolumeConfig &config, const BlockDevice &device, const Logger &log)
{
	const CowfileTable table = make_table(config, device.sectors(), device.number());
	log_step(log, fmt::format("creating {} over {}", dm::device_path(config.name), device.path));
	try {
		dm::create(config.name, dm_uuid(config.store_uuid), {table.target()});
	} catch (const DeviceError &e) {
		explain_missing_target(e);
	}
}

std::filesystem::path store_path_on(const BlockDevice &device, const std::string &name)
{
	return std::filesystem::path(device.mountpoints.front()) / (".snapmgr-" + name + ".store");
}

// The configured plain device: its path, unless the path is gone or now
// names a device with another filesystem, then the device with the
// recorded filesystem UUID. The store superblock check decides after this.
BlockDevice find_plain_device(const VolumeConfig &c)
{
	std::optional<BlockDevice> by_path;
	try {
		by_path = probe_device(c.device);
	} catch (const Error &) {
	}
	if (by_path && (c.device_fs_uuid.empty() || by_path->fs_uuid == c.device_fs_uuid))
		return *by_path;
	if (!c.device_fs_uuid.empty()) {
		auto path = find_filesystem(c.device_fs_uuid);
		if (path)
			return probe_device(*path);
	}
	throw DeviceError(c.device, ENODEV,
			  fmt::format("{} is {} and no device holds filesystem {}", c.device,
				      by_path ? "another device now" : "missing",
				      c.device_fs_uuid.empty() ? "(none recorded)" : c.device_fs_uuid));
}

// The kernel writes a store below the filesystem; through another volume's
// wrapper those writes would be tracked and copied there, and snapshotting
// both at once would wait on itself.
void refuse_store_on_other_volume(const std::filesystem::path &store, const BlockDevice &volume)
{
	auto dir = store.parent_path();
	struct stat st{};
	if (::stat(dir.empty() ? "." : dir.c_str(), &st) < 0) {
		int e = errno;
		throw UsageError(store.string(), e,
				 fmt::format("{}: cannot put the store there: {}", store.string(),
					     std::strerror(e)));
	}
	const unsigned major = ::major(st.st_dev), minor = ::minor(st.st_dev);
	if (major == volume.major && minor == volume.minor)
		return;
	// tmpfs and btrfs have no block device of their own, so no wrapper
	// either; StoreFile::create refuses their filesystems.
	std::error_code ec;
	if (!std::filesystem::exists(fmt::format("/sys/dev/block/{}:{}", major, minor), ec))
		return;
	BlockDevice holder = probe_device(major, minor);
	if (holder.dm && attached_table(holder.dm->name))
		throw UsageError(store.string(), EINVAL,
				 fmt::format("{} would live on {}, another tracked volume; put the "
					     "store on the volume it serves or on a filesystem that "
					     "is not tracked",
					     store.string(), holder.path));
}

// The path of a file inside its filesystem, from the filesystem's root.
std::string path_in_filesystem(const std::filesystem::path &file)
{
	const MountedOn m = mount_of(file.string());
	const auto relative = std::filesystem::canonical(file).lexically_relative(m.mountpoint);
	const std::string root = m.fs_root == "/" ? "" : m.fs_root;
	return root + "/" + relative.string();
}

// "snapmgr track /": a mount point stands for the device mounted there.
std::string resolve_mount_point(const std::string &path)
{
	struct stat st{};
	if (::stat(path.c_str(), &st) < 0 || !S_ISDIR(st.st_mode))
		return path;
	MountedOn m = mount_of(path);
	std::error_code ec;
	if (std::filesystem::canonical(path, ec) != std::filesystem::path(m.mountpoint))
		throw UsageError(path, EINVAL,
				 fmt::format("{} is a directory but not a mount point; name the "
					     "device, or the mount point ({})",
					     path, m.mountpoint));
	return probe_device(m.major, m.minor).path;
}

// A store on a filesystem that cannot hold one (tmpfs, btrfs, ...) or has
// no room for it is a request refused, not an action that failed (as grow
// past the free space): StoreFile::create has left nothing behind, so the
// error says so as a UsageError.
CreatedStore create_store(const StoreCreateOptions &store)
{
	try {
		return StoreFile::create(store);
	} catch (const StoreError &e) {
		if (e.error_number() == EOPNOTSUPP || e.error_number() == ENOSPC)
			throw UsageError(e.object(), e.error_number(), e.what());
		throw;
	}
}

struct Plan {
	BlockDevice device;
	VolumeConfig config;
	TrackOutcome outcome = TrackOutcome::tracking;
};

Plan plan_track(const TrackOptions &options, bool blank)
{
	Plan plan;
	std::error_code missing;
	if (!std::filesystem::exists(options.device, missing) && !missing)
		throw UsageError(options.device, ENOENT,
				 fmt::format("{} does not exist: name a block device or the mount "
					     "point of one",
					     options.device));
	const std::string device_path = resolve_mount_point(options.device);
	plan.device = probe_device(device_path);
	const BlockDevice &d = plan.device;
	if (auto why = untrackable_reason(d))
		throw UsageError(d.path, EINVAL, fmt::format("cannot track {}: {}", d.path, *why));

	VolumeConfig &c = plan.config;
	c.device = device_path;
	if (d.dm && !blank) {
		if (!options.name.empty() && options.name != d.dm->name)
			throw UsageError(options.name, EINVAL,
					 fmt::format("{} is the dm device {}: its wrapper keeps that "
						     "name, so --name {} cannot be used",
						     d.path, d.dm->name, options.name));
		c.name = d.dm->name;
		c.mode = AttachMode::insert;
	} else {
		c.name = options.name.empty() ? d.kernel_name : options.name;
		check_volume_name(c.name);
		c.mode = AttachMode::wrap;
		if (!d.holders.empty())
			throw UsageError(d.path, EBUSY,
					 fmt::format("{} is in use by {} (a device stacked on it); "
						     "track the device on top instead",
						     d.path, d.holders.front()));
		if (d.is_swap)
			throw UsageError(d.path, EBUSY, fmt::format("{} is active swap", d.path));
		if (!d.mountpoints.empty()) {
			if (blank)
				throw UsageError(d.path, EBUSY,
						 fmt::format("{} is mounted on {}; create wants an "
							     "unused device",
							     d.path, d.mountpoints.front()));
			plan.outcome = TrackOutcome::next_boot;
		}
	}
	check_volume_name(c.name);
	if (blank && !d.fs_type.empty())
		throw UsageError(d.path, EEXIST,
				 fmt::format("{} holds {} data; create wants a blank device (wipefs "
					     "it, or use track to keep the data)",
					     d.path, d.fs_type));
	if (!options.store && d.mountpoints.empty())
		throw UsageError(d.path, EINVAL,
				 fmt::format("{} is not mounted, so there is no filesystem on it to "
					     "hold the store: give --store with a path on another "
					     "mounted ext4 or xfs filesystem",
					     d.path));
	c.store = options.store ? *options.store : store_path_on(d, c.name);
	c.device_fs_uuid = d.fs_uuid;
	refuse_store_on_other_volume(c.store, d);
	return plan;
}

TrackResult do_track(const TrackOptions &options, bool blank)
{
	Plan plan = plan_track(options, blank);
	VolumeConfig &c = plan.config;
	const BlockDevice &d = plan.device;
	VolumeLock lock(c.name);
	if (load_config(c.name))
		throw UsageError(c.name, EEXIST,
				 fmt::format("volume {} is configured already (snapmgr status {})",
					     c.name, c.name));
	if (attached_table(c.name))
		throw UsageError(c.name, EEXIST, fmt::format("{} is a cowfile device already", c.name));
	if (c.mode == AttachMode::wrap && dm_exists(c.name))
		throw UsageError(c.name, EEXIST,
				 fmt::format("a device-mapper device named {} exists; choose "
					     "another --name",
					     c.name));

	Rollback rollback(options.log);
	StoreCreateOptions store;
	store.path = c.store;
	store.size_bytes = options.store_bytes ? options.store_bytes
					       : default_store_bytes(d.size_bytes);
	store.chunk_sectors = options.chunk_sectors;
	store.origin_sectors = d.sectors();
	log_step(options.log, fmt::format("creating the store {} ({} bytes)", c.store.string(),
				     store.size_bytes));
	CreatedStore created = create_store(store);
	rollback.add(fmt::format("remove {}", c.store.string()),
		     [&] { StoreFile::destroy(c.store); });
	c.sb_sector = created.sb_sector;
	c.store_in_fs = path_in_filesystem(created.path);
	c.store_uuid = created.store_uuid;
	c.store_on_volume = created.store_device.major == d.major &&
			    created.store_device.minor == d.minor;
	if (!c.store_on_volume)
		c.store_device = created.store_device.path;

	TrackResult result;
	result.name = c.name;
	result.outcome = plan.outcome;
	if (plan.outcome == TrackOutcome::tracking) {
		if (c.mode == AttachMode::insert)
			insert_wrapper(c, options.log);
		else
			create_wrapper(c, d, options.log);
		rollback.add(fmt::format("take the wrapper off {}", c.name), [&] {
			UntrackOptions undo;
			undo.keep_store = true;
			untrack_locked(c.name, undo);
		});
		result.device = dm::device_path(c.name);
	}
	save_config(c);
	rollback.commit();
	result.config = c;
	return result;
}

} // namespace

std::uint64_t default_store_bytes(std::uint64_t volume_bytes)
{
	return std::max(min_default_store, volume_bytes / 10) & ~std::uint64_t(store_block_size - 1);
}

std::string_view to_string(TrackOutcome outcome) noexcept
{
	switch (outcome) {
	case TrackOutcome::next_boot:
		return "next_boot";
	case TrackOutcome::already_tracking:
		return "already_tracking";
	case TrackOutcome::tracking:
		break;
	}
	return "tracking";
}

TrackResult track(const TrackOptions &options) { return do_track(options, false); }

TrackResult create(const TrackOptions &options)
{
	if (!options.store)
		throw UsageError(options.device, EINVAL,
				 "a blank device has no filesystem to hold the store: give --store "
				 "with a path on another mounted ext4 or xfs filesystem");
	return do_track(options, true);
}

namespace {

// Whether the wrapper is in, as far as can be told: a failure after it went
// in (the image of a held snapshot) must not give the device back.
bool is_attached(const std::string &name) noexcept
{
	try {
		return attached_table(name).has_value();
	} catch (const Error &) {
		return false;
	}
}

} // namespace

std::vector<ReattachResult> reattach(const std::vector<std::string> &names,
				     const ReattachOptions &options)
{
	const Logger &log = options.log;
	std::vector<VolumeConfig> configs;
	if (names.empty()) {
		configs = load_all_configs();
	} else {
		for (const auto &name : names) {
			auto c = load_config(name);
			if (!c)
				throw UsageError(name, ENOENT,
						 fmt::format("no volume {} is configured", name));
			configs.push_back(std::move(*c));
		}
	}
	std::vector<ReattachResult> results;
	for (const VolumeConfig &c : configs) {
		ReattachResult r;
		r.name = c.name;
		try {
			VolumeLock lock(c.name);
			TrackResult t;
			t.name = c.name;
			t.config = c;
			t.device = dm::device_path(c.name);
			if (attached_table(c.name)) {
				t.outcome = TrackOutcome::already_tracking;
			} else if (options.give_back && given_back_reason(c.name)) {
				r.error = fmt::format("given back unwrapped earlier this boot: {}",
						      *given_back_reason(c.name));
				r.given_back = true;
				results.push_back(std::move(r));
				continue;
			} else if (options.give_back && boot_disabled()) {
				throw UsageError(c.name, ECANCELED,
						 "boot integration is disabled on the kernel command "
						 "line (rd.snapmgr=0)");
			} else if (c.mode == AttachMode::insert) {
				if (!dm_exists(c.name))
					throw DeviceError(c.name, ENODEV,
							  fmt::format("the dm volume {} does not exist "
								      "(yet); activate it first",
								      c.name));
				verify_store(c, c.store_on_volume ? dm::device_path(c.name)
								  : c.store_device);
				insert_wrapper(c, log);
			} else {
				BlockDevice d = find_plain_device(c);
				if (!d.mountpoints.empty() || !d.holders.empty())
					throw UsageError(
						c.name, EBUSY,
						fmt::format("{} is in use without its wrapper (mounted on "
							    "{}); writes made now are not tracked. "
							    "Unmount it and run reattach, or reboot",
							    d.path,
							    d.mountpoints.empty() ? d.holders.front()
										  : d.mountpoints.front()));
				verify_store(c, c.store_on_volume ? d.path : c.store_device);
				create_wrapper(c, d, log);
			}
			// A snapshot held across the reboot gets its image back.
			if (kernel_status(c.name).snap_state == SnapState::active &&
			    !dm_exists(image_name(c.name))) {
				log_step(log, fmt::format("creating the image of the held snapshot of {}",
						     c.name));
				create_image(c.name, *attached_table(c.name), c.store_uuid);
			}
			r.result = std::move(t);
		} catch (const Error &e) {
			r.error = e.what();
			if (options.give_back && !is_attached(c.name)) {
				give_back(c, r.error, log);
				r.given_back = true;
			}
		}
		results.push_back(std::move(r));
	}
	return results;
}

void untrack(const std::string &name, const UntrackOptions &options)
{
	VolumeLock lock(name);
	untrack_locked(name, options);
}

namespace {

// A wrapper that cannot come off (root is mounted through it) goes at the
// next boot: the configuration goes now, the store stays while the kernel
// writes it.
void untrack_at_next_boot(const std::string &name, const std::optional<VolumeConfig> &config,
			  const UntrackOptions &options)
{
	if (!config || !options.keep_store)
		throw UsageError(name, EBUSY,
				 fmt::format("{} is in use (mounted?); unmount it first, or, for a "
					     "filesystem that stays mounted (root), give --keep-store "
					     "to stop tracking at the next boot",
					     dm::device_path(name)));
	remove_config(name);
	log_warning(options.log,
		    fmt::format("{} is in use: it stays wrapped until the next boot, which leaves it "
			"unwrapped (rebuild the initramfs first if it holds the configuration: "
			"dracut -f); then remove the store with cowfile-store destroy {}",
			dm::device_path(name), config->store.string()));
}

} // namespace

void untrack_locked(const std::string &name, const UntrackOptions &options)
{
	auto config = load_config(name);
	auto table = attached_table(name);
	if (!config && !table)
		throw UsageError(name, ENOENT, fmt::format("no volume named {} is tracked", name));
	if (table) {
		CowfileStatus s = kernel_status(name);
		if (s.snap_state != SnapState::none || dm_exists(image_name(name)))
			throw UsageError(name, EBUSY,
					 fmt::format("volume {} holds a snapshot; release it first "
						     "(snapmgr release {})",
						     name, name));
		const std::string real = real_name(name);
		if (dm_exists(real) && dm::device_number(real) == table->origin) {
			const dm::Table old = dm::table(real);
			log_step(options.log, fmt::format("restoring the original table of {}", name));
			dm::load(name, old);
			try {
				dm::suspend(name);
			} catch (...) {
				dm::clear(name);
				throw;
			}
			dm::resume(name);
			dm::remove(real);
		} else {
			auto info = dm::info(name);
			if (info && info->open_count > 0)
				return untrack_at_next_boot(name, config, options);
			log_step(options.log, fmt::format("removing {}", dm::device_path(name)));
			dm::remove(name);
		}
	}
	if (config && !options.keep_store) {
		std::error_code ec;
		if (std::filesystem::exists(config->store, ec)) {
			log_step(options.log, fmt::format("removing the store {}", config->store.string()));
			StoreFile::destroy(config->store);
		} else {
			log_warning(options.log, fmt::format("the store {} is not reachable (its filesystem "
						     "is not mounted); remove it later with "
						     "cowfile-store destroy",
						     config->store.string()));
		}
	}
	if (config)
		remove_config(name);
}

} // namespace snapmgr
