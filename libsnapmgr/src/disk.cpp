// Whole disks as groups of tracked partitions (disk.hpp).
#include "snapmgr/disk.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <optional>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "aligned_buffer.hpp"
#include "file_descriptor.hpp"
#include "image_copy.hpp"
#include "log.hpp"
#include "snapmgr/config.hpp"
#include "snapmgr/device.hpp"
#include "snapmgr/dm.hpp"
#include "snapmgr/error.hpp"
#include "throw_errno.hpp"
#include "volume_devices.hpp"

namespace snapmgr {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Gaps are read at the instant up to this much in all, smallest first; a
// larger unpartitioned area is read from the live disk by the backup (and
// the backup says so).
constexpr std::uint64_t max_captured_bytes = 64ull << 20;

fs::path disks_dir() { return config_dir() / "disks"; }
fs::path disk_path(const std::string &name) { return disks_dir() / (name + ".json"); }
fs::path instant_path(const std::string &name) { return disks_dir() / (name + ".instant.json"); }
fs::path gaps_path(const std::string &name) { return disks_dir() / (name + ".gaps"); }

json ranges_to_json(const std::vector<ByteRange> &ranges)
{
	json out = json::array();
	for (const auto &r : ranges)
		out.push_back({r.start, r.length});
	return out;
}

std::vector<ByteRange> ranges_from_json(const json &j)
{
	std::vector<ByteRange> out;
	for (const auto &r : j)
		out.push_back({r.at(0).get<std::uint64_t>(), r.at(1).get<std::uint64_t>()});
	return out;
}

PartitionRole role_from_string(const std::string &text)
{
	if (text == "tracked")
		return PartitionRole::tracked;
	if (text == "zeros")
		return PartitionRole::zeros;
	if (text == "live")
		return PartitionRole::live;
	throw std::invalid_argument("unknown partition role " + text);
}

json to_json(const DiskConfig &d)
{
	json parts = json::array();
	for (const auto &p : d.partitions)
		parts.push_back({{"number", p.number},
				 {"kernel_name", p.kernel_name},
				 {"start_bytes", p.start_bytes},
				 {"size_bytes", p.size_bytes},
				 {"type", p.type},
				 {"uuid", p.uuid},
				 {"fs_type", p.fs_type},
				 {"role", to_string(p.role)},
				 {"volume", p.volume},
				 {"reason", p.reason}});
	return {{"name", d.name},
		{"device", d.device},
		{"table_type", d.table_type},
		{"table_uuid", d.table_uuid},
		{"size_bytes", d.size_bytes},
		{"partitions", parts}};
}

DiskConfig disk_from_json(const json &j)
{
	DiskConfig d;
	d.name = j.at("name").get<std::string>();
	d.device = j.at("device").get<std::string>();
	d.table_type = j.at("table_type").get<std::string>();
	d.table_uuid = j.at("table_uuid").get<std::string>();
	d.size_bytes = j.at("size_bytes").get<std::uint64_t>();
	for (const auto &p : j.at("partitions")) {
		DiskPartition q;
		q.number = p.at("number").get<unsigned>();
		q.kernel_name = p.at("kernel_name").get<std::string>();
		q.start_bytes = p.at("start_bytes").get<std::uint64_t>();
		q.size_bytes = p.at("size_bytes").get<std::uint64_t>();
		q.type = p.at("type").get<std::string>();
		q.uuid = p.at("uuid").get<std::string>();
		q.fs_type = p.at("fs_type").get<std::string>();
		q.role = role_from_string(p.at("role").get<std::string>());
		q.volume = p.at("volume").get<std::string>();
		q.reason = p.at("reason").get<std::string>();
		d.partitions.push_back(std::move(q));
	}
	return d;
}

std::optional<json> read_json_file(const fs::path &path)
{
	std::ifstream in(path);
	if (!in)
		return std::nullopt;
	try {
		return json::parse(in);
	} catch (const json::exception &e) {
		throw UsageError(path.string(), EINVAL,
				 fmt::format("{} does not parse: {}", path.string(), e.what()));
	}
}

void save_disk_config(const DiskConfig &d)
{
	std::error_code ec;
	fs::create_directories(disks_dir(), ec);
	if (ec)
		throw UsageError(disks_dir().string(), ec.value(),
				 fmt::format("cannot create {}: {}", disks_dir().string(),
					     ec.message()));
	write_file_durably(disk_path(d.name), to_json(d).dump(1) + "\n", 0600);
}

void remove_file(const fs::path &path)
{
	if (::unlink(path.c_str()) < 0 && errno != ENOENT)
		throw_errno(path.string(), "cannot remove");
}

std::vector<std::string> tracked_volumes(const DiskConfig &d)
{
	std::vector<std::string> out;
	for (const auto &p : d.partitions)
		if (p.role == PartitionRole::tracked)
			out.push_back(p.volume);
	return out;
}

DiskConfig load_disk_or_throw(const std::string &name)
{
	auto d = load_disk_config(name);
	if (!d)
		throw UsageError(name, ENOENT, fmt::format("no disk named {} is tracked", name));
	return *d;
}

// The disk as it is now must have the table it was tracked with: a
// partition that moved or grew would put a volume's image at the wrong
// place in the disk image.
void expect_same_layout(const DiskConfig &d)
{
	const DiskConfig now = read_disk_layout(d.device);
	if (auto diff = layout_difference(d, now))
		throw UsageError(d.name, EINVAL,
				 fmt::format("the partition table of {} changed since it was tracked "
					     "({}); a disk image of it would be wrong. Untrack it "
					     "(snapmgr untrack {}) and track it again: the next "
					     "backup is full",
					     d.device, *diff, d.name));
}

// What a snapshot of the disk leaves for its backup.
struct Instant {
	std::map<std::string, Position> positions; // tracked volume: its snapshot
	std::vector<ByteRange> captured;           // in the gaps file, in this order
	std::vector<ByteRange> live;               // gaps read from the live disk
};

Instant load_instant(const DiskConfig &d)
{
	auto j = read_json_file(instant_path(d.name));
	if (!j)
		throw UsageError(d.name, ENOENT,
				 fmt::format("disk {} holds no snapshot; take one with snapmgr "
					     "snapshot {}",
					     d.name, d.name));
	Instant in;
	try {
		for (const auto &[volume, position] : j->at("positions").items())
			in.positions[volume] = Position::parse(position.get<std::string>());
		in.captured = ranges_from_json(j->at("captured"));
		in.live = ranges_from_json(j->at("live"));
	} catch (const json::exception &e) {
		throw UsageError(instant_path(d.name).string(), EINVAL,
				 fmt::format("{} does not parse: {}", instant_path(d.name).string(),
					     e.what()));
	}
	return in;
}

// Every tracked partition must still hold the snapshot the disk's instant
// names: one taken or released on its own would mix instants.
void expect_instant_held(const DiskConfig &d, const Instant &in)
{
	for (const auto &volume : tracked_volumes(d)) {
		auto it = in.positions.find(volume);
		CowfileStatus k = kernel_status(volume);
		if (it == in.positions.end() || k.snap_state != SnapState::active ||
		    k.generation != format_uuid(it->second.generation) ||
		    k.snap_epoch != it->second.epoch)
			throw SnapshotLostError(
				volume, 0,
				fmt::format("volume {} of disk {} no longer holds the disk's snapshot "
					    "({}); take a new one with snapmgr snapshot {}",
					    volume, d.name,
					    k.snap_state == SnapState::invalid
						    ? fmt::format("invalidated: {}", k.invalid_reason)
						    : "released or taken on its own",
					    d.name));
	}
}

// The record beside a disk image.
struct DiskImageRecord {
	std::string disk;
	std::uint64_t size_bytes = 0;
	DiskConfig layout; // table and partitions only
	std::map<std::string, Position> positions;
	bool complete = false;
};

void write_disk_record(const fs::path &image, const DiskConfig &d,
		       const std::map<std::string, Position> &positions, bool complete)
{
	json volumes = json::object();
	for (const auto &[volume, position] : positions)
		volumes[volume] = position.to_string();
	json j = {{"disk", d.name},
		  {"size_bytes", d.size_bytes},
		  {"layout", to_json(d)},
		  {"volumes", volumes},
		  {"complete", complete}};
	write_file_durably(sidecar_path(image), j.dump(1) + "\n", 0600);
}

std::optional<DiskImageRecord> read_disk_record(const fs::path &image)
{
	const fs::path path = sidecar_path(image);
	auto j = read_json_file(path);
	if (!j)
		return std::nullopt;
	try {
		DiskImageRecord r;
		r.disk = j->at("disk").get<std::string>();
		r.size_bytes = j->at("size_bytes").get<std::uint64_t>();
		r.layout = disk_from_json(j->at("layout"));
		for (const auto &[volume, position] : j->at("volumes").items())
			r.positions[volume] = Position::parse(position.get<std::string>());
		r.complete = j->at("complete").get<bool>();
		return r;
	} catch (const std::exception &e) {
		throw UsageError(path.string(), EINVAL,
				 fmt::format("{} is not a snapmgr disk image record ({}); back up "
					     "with --full to overwrite the image, or to a new image",
					     path.string(), e.what()));
	}
}

// Reads ranges of the disk (while its partitions are suspended).
std::string read_ranges(const std::string &device, const std::vector<ByteRange> &ranges)
{
	FileDescriptor fd(::open(device.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));
	if (!fd.valid())
		throw_errno(device, "cannot open the disk");
	std::string out;
	for (const auto &r : ranges) {
		AlignedBuffer buffer(r.length);
		for (std::uint64_t done = 0; done < r.length;) {
			ssize_t got = ::pread(fd.get(), buffer.data() + done, r.length - done,
					      off_t(r.start + done));
			if (got < 0 && errno == EINTR)
				continue;
			if (got <= 0) {
				if (got == 0)
					errno = EIO;
				throw_errno(device, fmt::format("cannot read at byte {}", r.start + done));
			}
			done += std::uint64_t(got);
		}
		out.append(reinterpret_cast<const char *>(buffer.data()), r.length);
	}
	return out;
}

} // namespace

std::string_view to_string(PartitionRole role) noexcept
{
	switch (role) {
	case PartitionRole::tracked:
		return "tracked";
	case PartitionRole::zeros:
		return "zeros";
	case PartitionRole::live:
		return "live";
	}
	return "?";
}

bool is_partitioned_disk(const std::string &device) noexcept
{
	struct stat st{};
	if (::stat(device.c_str(), &st) < 0 || !S_ISBLK(st.st_mode))
		return false;
	try {
		const BlockDevice d = probe_device(device);
		return !d.is_partition && !d.dm && !d.partitions.empty();
	} catch (const std::exception &) {
		return false;
	}
}

DiskConfig read_disk_layout(const std::string &device)
{
	const BlockDevice disk = probe_device(device);
	if (disk.is_partition || disk.dm || disk.partitions.empty() || disk.part_table_type.empty())
		throw UsageError(device, EINVAL,
				 fmt::format("{} is not a whole disk with a partition table", device));
	DiskConfig d;
	d.name = disk.kernel_name;
	d.device = device;
	d.table_type = disk.part_table_type;
	d.table_uuid = disk.part_table_uuid;
	d.size_bytes = disk.size_bytes;
	for (const auto &kname : disk.partitions) {
		const BlockDevice p = probe_device("/dev/" + kname);
		DiskPartition q;
		q.kernel_name = kname;
		q.number = p.partition_number;
		q.start_bytes = p.start_sector * 512;
		q.size_bytes = p.size_bytes;
		q.type = p.part_type;
		q.uuid = p.part_uuid;
		q.fs_type = p.is_swap ? "swap" : p.fs_type;
		d.partitions.push_back(std::move(q));
	}
	std::sort(d.partitions.begin(), d.partitions.end(),
		  [](const auto &a, const auto &b) { return a.start_bytes < b.start_bytes; });
	return d;
}

std::optional<std::string> layout_difference(const DiskConfig &was, const DiskConfig &now)
{
	if (was.size_bytes != now.size_bytes)
		return fmt::format("its size was {} bytes, now {}", was.size_bytes, now.size_bytes);
	if (was.table_type != now.table_type || was.table_uuid != now.table_uuid)
		return fmt::format("its {} table {} is now a {} table {}", was.table_type,
				   was.table_uuid, now.table_type, now.table_uuid);
	for (const auto &p : was.partitions) {
		auto it = std::find_if(now.partitions.begin(), now.partitions.end(),
				       [&](const auto &q) { return q.number == p.number; });
		if (it == now.partitions.end())
			return fmt::format("partition {} is gone", p.number);
		if (it->start_bytes != p.start_bytes || it->size_bytes != p.size_bytes)
			return fmt::format("partition {} was {} bytes at byte {}, now {} at {}",
					   p.number, p.size_bytes, p.start_bytes, it->size_bytes,
					   it->start_bytes);
		if (it->type != p.type || it->uuid != p.uuid)
			return fmt::format("partition {} changed its type or UUID", p.number);
	}
	for (const auto &q : now.partitions)
		if (std::none_of(was.partitions.begin(), was.partitions.end(),
				 [&](const auto &p) { return p.number == q.number; }))
			return fmt::format("partition {} is new", q.number);
	return std::nullopt;
}

std::vector<ByteRange> disk_gaps(const DiskConfig &d)
{
	std::vector<ByteRange> gaps;
	std::uint64_t at = 0;
	for (const auto &p : d.partitions) {
		if (p.start_bytes > at)
			gaps.push_back({at, p.start_bytes - at});
		at = std::max(at, p.start_bytes + p.size_bytes);
	}
	if (d.size_bytes > at)
		gaps.push_back({at, d.size_bytes - at});
	return gaps;
}

std::optional<DiskConfig> load_disk_config(const std::string &name)
{
	check_volume_name(name);
	auto j = read_json_file(disk_path(name));
	if (!j)
		return std::nullopt;
	try {
		return disk_from_json(*j);
	} catch (const std::exception &e) {
		throw UsageError(disk_path(name).string(), EINVAL,
				 fmt::format("{} is not a snapmgr disk ({})", disk_path(name).string(),
					     e.what()));
	}
}

std::vector<DiskConfig> load_all_disk_configs()
{
	std::vector<DiskConfig> out;
	std::error_code ec;
	for (const auto &entry : fs::directory_iterator(disks_dir(), ec)) {
		const fs::path &p = entry.path();
		const std::string stem = p.stem().string();
		if (p.extension() != ".json" || stem.find('.') != std::string::npos)
			continue;
		if (auto d = load_disk_config(stem))
			out.push_back(std::move(*d));
	}
	std::sort(out.begin(), out.end(), [](const auto &a, const auto &b) { return a.name < b.name; });
	return out;
}

std::optional<DiskConfig> disk_of_volume(const std::string &volume)
{
	for (auto &d : load_all_disk_configs())
		for (const auto &p : d.partitions)
			if (p.role == PartitionRole::tracked && p.volume == volume)
				return std::move(d);
	return std::nullopt;
}

DiskTrackResult track_disk(const TrackOptions &options)
{
	DiskConfig d = read_disk_layout(options.device);
	check_volume_name(d.name);
	if (load_disk_config(d.name))
		throw UsageError(d.name, EEXIST,
				 fmt::format("disk {} is tracked already (snapmgr status {})", d.name,
					     d.name));
	std::error_code ec;
	if (options.store && !fs::is_directory(*options.store, ec))
		throw UsageError(options.store->string(), ENOTDIR,
				 fmt::format("for a disk, --store names a directory to hold the "
					     "stores of its unmounted partitions; {} is not one",
					     options.store->string()));

	// Decide every partition's role before anything is tracked.
	std::vector<BlockDevice> devices;
	for (auto &p : d.partitions) {
		const BlockDevice pd = probe_device("/dev/" + p.kernel_name);
		devices.push_back(pd);
		const bool store_fs = p.fs_type == "ext4" || p.fs_type == "xfs";
		if (p.fs_type == "swap") {
			p.role = PartitionRole::zeros;
			p.reason = "swap: its content is not needed to boot; the image holds zeros";
		} else if (auto why = untrackable_reason(pd)) {
			p.reason = *why;
		} else if (p.fs_type.empty()) {
			p.reason = "holds no filesystem (a bootloader's area, or raw data)";
		} else if (!pd.holders.empty()) {
			p.reason = fmt::format("in use by {} (a device stacked on it)", pd.holders.front());
		} else if (pd.mountpoints.empty() && !options.store) {
			if (store_fs)
				throw UsageError(pd.path, EINVAL,
						 fmt::format("{} ({}) is not mounted, so there is no "
							     "filesystem on it to hold its store: give "
							     "--store DIR, a directory on another "
							     "mounted ext4 or xfs filesystem",
							     pd.path, p.fs_type));
			p.reason = fmt::format("{} cannot hold a store; give --store DIR to track it",
					       p.fs_type);
		} else if (!pd.mountpoints.empty() && !store_fs && !options.store) {
			p.reason = fmt::format("{} cannot hold a store; give --store DIR to track it",
					       p.fs_type);
		} else {
			p.role = PartitionRole::tracked;
			p.volume = p.kernel_name;
		}
	}
	if (tracked_volumes(d).empty())
		throw UsageError(d.device, EINVAL,
				 fmt::format("{} has no partition that can be tracked", d.device));

	DiskTrackResult result;
	Rollback rollback(options.log);
	for (std::size_t i = 0; i < d.partitions.size(); i++) {
		const DiskPartition &p = d.partitions[i];
		if (p.role != PartitionRole::tracked)
			continue;
		TrackOptions o = options;
		o.device = devices[i].path;
		o.name = p.volume;
		o.store.reset();
		if (devices[i].mountpoints.empty() || (p.fs_type != "ext4" && p.fs_type != "xfs"))
			o.store = *options.store / (".snapmgr-" + p.volume + ".store");
		log_step(options.log, fmt::format("tracking partition {} ({})", o.device, p.fs_type));
		result.volumes.push_back(track(o));
		rollback.add(fmt::format("untrack {}", p.volume), [&options, name = p.volume] {
			UntrackOptions undo;
			undo.log = options.log;
			untrack(name, undo);
		});
	}
	save_disk_config(d);
	rollback.commit();
	result.disk = d;
	return result;
}

void untrack_disk(const std::string &name, const UntrackOptions &options)
{
	const DiskConfig d = load_disk_or_throw(name);
	// Refused before anything is untracked, rather than half way.
	for (const auto &volume : tracked_volumes(d))
		if (attached_table(volume) && (kernel_status(volume).snap_state != SnapState::none ||
					       dm_exists(image_name(volume))))
			throw UsageError(volume, EBUSY,
					 fmt::format("volume {} of disk {} holds a snapshot; release "
						     "it first (snapmgr release {})",
						     volume, name, name));
	for (const auto &volume : tracked_volumes(d)) {
		if (!load_config(volume) && !attached_table(volume)) {
			log_warning(options.log, fmt::format("volume {} of disk {} is not tracked any more",
							     volume, name));
			continue;
		}
		untrack(volume, options);
	}
	remove_file(gaps_path(name));
	remove_file(instant_path(name));
	remove_file(disk_path(name));
}

DiskStatus disk_status(const std::string &name)
{
	DiskStatus s;
	s.disk = load_disk_or_throw(name);
	try {
		s.table_changed = layout_difference(s.disk, read_disk_layout(s.disk.device));
	} catch (const Error &e) {
		s.table_changed = e.what();
	}
	std::error_code ec;
	s.snapshot_held = fs::exists(instant_path(name), ec);
	for (const auto &volume : tracked_volumes(s.disk))
		s.volumes.push_back(status(volume));
	return s;
}

std::string to_string(const DiskPosition &position)
{
	std::string out;
	for (const auto &[volume, at] : position)
		out += (out.empty() ? "" : ",") + volume + "=" + at.to_string();
	return out;
}

DiskPosition parse_disk_position(std::string_view text)
{
	DiskPosition out;
	while (!text.empty()) {
		const std::string_view item = text.substr(0, text.find(','));
		text.remove_prefix(std::min(text.size(), item.size() + 1));
		const auto eq = item.find('=');
		if (eq == std::string_view::npos || eq == 0)
			throw UsageError(std::string(item), EINVAL,
					 fmt::format("a disk's position is VOLUME=GENERATION:EPOCH "
						     "for each of its volumes, separated by commas; "
						     "\"{}\" is not one",
						     item));
		const std::string volume(item.substr(0, eq));
		if (!out.emplace(volume, Position::parse(item.substr(eq + 1))).second)
			throw UsageError(volume, EINVAL,
					 fmt::format("volume {} is named twice in the position", volume));
	}
	return out;
}

DiskChanges disk_changes(const std::string &name, const DiskPosition &since)
{
	const DiskConfig d = load_disk_or_throw(name);
	expect_same_layout(d);
	for (const auto &[volume, at] : since)
		if (!std::any_of(d.partitions.begin(), d.partitions.end(),
				 [&](const auto &p) { return p.volume == volume; }))
			throw UsageError(volume, ENOENT,
					 fmt::format("{} is no volume of disk {}", volume, name));
	DiskChanges out;
	out.name = name;
	out.size_bytes = d.size_bytes;
	std::vector<ByteRange> all;
	for (const auto &p : d.partitions) {
		if (p.role == PartitionRole::live)
			out.untracked.push_back({p.start_bytes, p.size_bytes});
		if (p.role != PartitionRole::tracked)
			continue;
		auto it = since.find(p.volume);
		Changes c = changes(p.volume, it == since.end() ? std::nullopt
							       : std::optional<Position>(it->second));
		if (it == since.end())
			c.set.full_reason = fmt::format("no position of {} was given", p.volume);
		if (c.set.full)
			c.set.ranges = {{0, p.size_bytes}};
		for (const auto &r : c.set.ranges)
			all.push_back({p.start_bytes + r.start, r.length});
		out.now[p.volume] = c.now;
		out.volumes.push_back(std::move(c));
	}
	for (const auto &g : disk_gaps(d))
		out.untracked.push_back(g);
	std::sort(out.untracked.begin(), out.untracked.end(),
		  [](const auto &a, const auto &b) { return a.start < b.start; });
	all.insert(all.end(), out.untracked.begin(), out.untracked.end());
	std::sort(all.begin(), all.end(), [](const auto &a, const auto &b) { return a.start < b.start; });
	for (const auto &r : all) {
		if (!out.ranges.empty() && out.ranges.back().start + out.ranges.back().length >= r.start) {
			auto &last = out.ranges.back();
			last.length = std::max(last.start + last.length, r.start + r.length) - last.start;
		} else {
			out.ranges.push_back(r);
		}
	}
	return out;
}

namespace {

// What a snapshot of the disk reads at the instant (the gaps, smallest
// first, while they fit) and what its backup must read live.
Instant plan_instant(const DiskConfig &d)
{
	std::vector<ByteRange> gaps = disk_gaps(d);
	std::sort(gaps.begin(), gaps.end(),
		  [](const auto &a, const auto &b) { return a.length < b.length; });
	Instant in;
	std::uint64_t captured_bytes = 0;
	for (const auto &g : gaps) {
		if (captured_bytes + g.length <= max_captured_bytes) {
			in.captured.push_back(g);
			captured_bytes += g.length;
		} else {
			in.live.push_back(g);
		}
	}
	auto by_start = [](const auto &a, const auto &b) { return a.start < b.start; };
	std::sort(in.captured.begin(), in.captured.end(), by_start);
	for (const auto &p : d.partitions)
		if (p.role == PartitionRole::live)
			in.live.push_back({p.start_bytes, p.size_bytes});
	std::sort(in.live.begin(), in.live.end(), by_start);
	return in;
}

std::uint64_t total_bytes(const std::vector<ByteRange> &ranges)
{
	std::uint64_t n = 0;
	for (const auto &r : ranges)
		n += r.length;
	return n;
}

} // namespace

DiskSnapshotResult snapshot_disk(const std::string &name, const Logger &log)
{
	return std::move(snapshot_disks({name}, {}, log).disks.front());
}

SnapshotManyResult snapshot_disks(const std::vector<std::string> &disks,
				  const std::vector<std::string> &volumes, const Logger &log)
{
	std::vector<DiskConfig> configs;
	std::vector<Instant> instants;
	std::vector<std::string> names = volumes;
	for (const auto &name : disks) {
		configs.push_back(load_disk_or_throw(name));
		expect_same_layout(configs.back());
		std::error_code ec;
		if (fs::exists(instant_path(name), ec))
			throw UsageError(name, EBUSY,
					 fmt::format("disk {} holds a snapshot; release it first "
						     "(snapmgr release {})",
						     name, name));
		instants.push_back(plan_instant(configs.back()));
		for (const auto &v : tracked_volumes(configs.back()))
			names.push_back(v);
	}
	std::vector<std::string> captured(configs.size());
	std::vector<SnapshotResult> taken = snapshot_with(names, log, [&] {
		for (std::size_t i = 0; i < configs.size(); i++) {
			log_step(log, fmt::format("reading {} bytes outside the partitions of {}",
						  total_bytes(instants[i].captured),
						  configs[i].device));
			captured[i] = read_ranges(configs[i].device, instants[i].captured);
		}
	});
	SnapshotManyResult out;
	try {
		for (std::size_t i = 0; i < configs.size(); i++) {
			const DiskConfig &d = configs[i];
			Instant &in = instants[i];
			DiskSnapshotResult r{d.name, {}, total_bytes(in.captured), in.live};
			json positions = json::object();
			for (const auto &t : taken) {
				const auto members = tracked_volumes(d);
				if (std::find(members.begin(), members.end(), t.name) == members.end())
					continue;
				positions[t.name] = Position{parse_uuid(t.generation).value_or(Uuid{}),
							     t.epoch}
							    .to_string();
				r.volumes.push_back(t);
			}
			write_file_durably(gaps_path(d.name), captured[i], 0600);
			write_file_durably(instant_path(d.name),
					   json({{"positions", positions},
						 {"captured", ranges_to_json(in.captured)},
						 {"live", ranges_to_json(in.live)}})
							   .dump(1) +
						   "\n",
					   0600);
			out.disks.push_back(std::move(r));
		}
	} catch (...) {
		for (const auto &d : configs) {
			::unlink(instant_path(d.name).c_str());
			::unlink(gaps_path(d.name).c_str());
		}
		for (const auto &t : taken) {
			try {
				release(t.name, log);
			} catch (const std::exception &e) {
				log_error(log, fmt::format("rollback: cannot release {}: {}", t.name,
							   e.what()));
			}
		}
		throw;
	}
	for (auto &t : taken)
		if (std::find(volumes.begin(), volumes.end(), t.name) != volumes.end())
			out.volumes.push_back(std::move(t));
	return out;
}

bool disk_snapshot_held(const std::string &name)
{
	std::error_code ec;
	return fs::exists(instant_path(name), ec);
}

void release_disk(const std::string &name, const Logger &log)
{
	const DiskConfig d = load_disk_or_throw(name);
	remove_file(instant_path(name));
	remove_file(gaps_path(name));
	for (const auto &volume : tracked_volumes(d)) {
		CowfileStatus k = kernel_status(volume);
		if (k.snap_state == SnapState::none && !dm_exists(image_name(volume)))
			continue;
		release(volume, log);
	}
}

DiskBackupResult backup_disk(const std::string &name, const fs::path &image,
			     const BackupOptions &options)
{
	const DiskConfig d = load_disk_or_throw(name);
	expect_same_layout(d);
	const std::vector<std::string> volumes = tracked_volumes(d);
	// Locks in name order, as snapshot() takes them.
	std::vector<std::unique_ptr<VolumeLock>> locks;
	std::vector<std::string> lock_order = volumes;
	std::sort(lock_order.begin(), lock_order.end());
	for (const auto &volume : lock_order)
		locks.push_back(std::make_unique<VolumeLock>(volume));
	const Instant in = load_instant(d);
	expect_instant_held(d, in);

	DiskBackupResult result;
	result.name = name;
	result.image = image;
	result.size_bytes = d.size_bytes;

	// What the image holds decides, per partition, between full and
	// incremental; a record of another disk or table makes it all full.
	std::error_code ec;
	const bool image_exists = fs::exists(image, ec);
	auto record = image_exists && !options.force_full ? read_disk_record(image) : std::nullopt;
	if (image_exists && !record && !options.force_full)
		throw UsageError(image.string(), EEXIST,
				 fmt::format("{} exists and is not a snapmgr disk image (no {}); "
					     "refusing to overwrite it without --full",
					     image.string(), sidecar_path(image).string()));
	std::string fresh_reason;
	if (options.force_full)
		fresh_reason = "a full backup was asked for";
	else if (!image_exists)
		fresh_reason = "the image is new";
	else if (record->disk != name)
		fresh_reason = fmt::format("the image holds disk {}", record->disk);
	else if (!record->complete)
		fresh_reason = "the previous backup into the image did not finish";
	else if (auto diff = layout_difference(record->layout, d))
		fresh_reason = fmt::format("the image has another partition table ({})", *diff);
	const bool fresh = !fresh_reason.empty();

	std::map<std::string, Position> positions = in.positions;
	if (image_exists)
		write_disk_record(image, d, {}, false);
	ImageFile out(image, fresh);
	if (!image_exists)
		write_disk_record(image, d, {}, false);
	if (fresh)
		out.set_size(d.size_bytes);

	std::vector<std::unique_ptr<CopySource>> sources;
	std::vector<CopyPiece> pieces;
	for (const auto &p : d.partitions) {
		if (p.role == PartitionRole::zeros) {
			// A fresh image is a hole there; an image with this table
			// got its zeros the first time.
			result.zeros.push_back({p.start_bytes, p.size_bytes});
			continue;
		}
		if (p.role != PartitionRole::tracked)
			continue;
		std::optional<Position> since;
		BackupResult part;
		part.name = p.volume;
		part.image = image;
		if (!fresh) {
			auto it = record->positions.find(p.volume);
			if (it != record->positions.end())
				since = it->second;
			else
				part.full_reason = "the image holds no position of it";
		} else {
			part.full_reason = fresh_reason;
		}
		Changes ch = changes_locked(p.volume, since);
		if (since && ch.set.full) {
			part.full_reason = ch.set.full_reason;
			since.reset();
		}
		if (ch.size_bytes != p.size_bytes)
			throw UsageError(p.volume, EINVAL,
					 fmt::format("volume {} is {} bytes, its partition {}", p.volume,
						     ch.size_bytes, p.size_bytes));
		part.full = !since;
		part.since = since;
		part.position = in.positions.at(p.volume);
		part.size_bytes = p.size_bytes;
		std::vector<ByteRange> ranges =
			part.full ? std::vector<ByteRange>{{0, p.size_bytes}} : ch.set.ranges;
		if (since && since->generation == part.position.generation &&
		    since->epoch == part.position.epoch)
			ranges.clear(); // the image holds this very snapshot already
		sources.push_back(std::make_unique<CopySource>(dm::device_path(image_name(p.volume)),
							       "the snapshot image"));
		for (const auto &r : ranges) {
			pieces.push_back({sources.back().get(), r.start, p.start_bytes + r.start,
					  r.length});
			part.copied_bytes += r.length;
		}
		part.ranges = ranges.size();
		result.volumes.push_back(std::move(part));
	}
	// The gaps at the instant, then what can only be read live.
	sources.push_back(std::make_unique<CopySource>(gaps_path(name).string(),
						       "the disk's gaps file", false));
	std::uint64_t at = 0;
	for (const auto &g : in.captured) {
		pieces.push_back({sources.back().get(), at, g.start, g.length});
		at += g.length;
	}
	if (!in.live.empty())
		sources.push_back(std::make_unique<CopySource>(d.device, "the disk"));
	for (const auto &r : in.live) {
		pieces.push_back({sources.back().get(), r.start, r.start, r.length});
		result.live.push_back(r);
	}
	for (const auto &piece : pieces)
		result.copied_bytes += piece.length;

	try {
		copy_pieces(out, pieces, options.progress);
		out.sync();
	} catch (const Error &) {
		expect_instant_held(d, in); // the cause, rather than EIO
		throw;
	}
	expect_instant_held(d, in);
	write_disk_record(image, d, positions, true);
	return result;
}

struct DiskImageReader::State {
	struct Piece {
		std::uint64_t start = 0;
		std::uint64_t length = 0;
		int fd = -1; // -1: zeros
		std::uint64_t from = 0;
		std::string source;
		bool direct = false; // fd is O_DIRECT: read through an aligned buffer
	};
	DiskConfig disk;
	Instant instant;
	std::vector<FileDescriptor> fds;
	std::vector<Piece> pieces; // by start, covering the disk
};

DiskImageReader::DiskImageReader(const std::string &name)
{
	auto s = std::make_shared<State>();
	s->disk = load_disk_or_throw(name);
	s->instant = load_instant(s->disk);
	expect_instant_held(s->disk, s->instant);
	auto open = [&s](const std::string &path, const char *what, int flags = 0) {
		FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | flags));
		if (!fd.valid())
			throw_errno(path, fmt::format("cannot open {}", what));
		s->fds.push_back(std::move(fd));
		return s->fds.back().get();
	};
	for (const auto &p : s->disk.partitions) {
		if (p.role == PartitionRole::tracked) {
			const std::string image = dm::device_path(image_name(p.volume));
			s->pieces.push_back({p.start_bytes, p.size_bytes,
					     open(image, "the snapshot image"), 0, image});
		} else if (p.role == PartitionRole::zeros) {
			s->pieces.push_back({p.start_bytes, p.size_bytes, -1, 0, "zeros"});
		}
	}
	const std::string gaps = gaps_path(name).string();
	const int gaps_fd = open(gaps, "the disk's gaps file");
	std::uint64_t at = 0;
	for (const auto &g : s->instant.captured) {
		s->pieces.push_back({g.start, g.length, gaps_fd, at, gaps});
		at += g.length;
	}
	// The live disk with O_DIRECT: what was written through a partition's
	// device (a bootloader installed on its BIOS boot partition) is not
	// in the whole disk's page cache, which would read it stale.
	const int disk_fd =
		s->instant.live.empty() ? -1 : open(s->disk.device, "the disk", O_DIRECT);
	for (const auto &r : s->instant.live)
		s->pieces.push_back({r.start, r.length, disk_fd, r.start, s->disk.device, true});
	std::sort(s->pieces.begin(), s->pieces.end(),
		  [](const auto &a, const auto &b) { return a.start < b.start; });
	std::uint64_t end = 0;
	for (const auto &p : s->pieces) {
		if (p.start != end)
			throw Error(name, EINVAL,
				    fmt::format("disk {}: nothing in its snapshot covers bytes {}-{}",
						name, end, p.start));
		end += p.length;
	}
	if (end != s->disk.size_bytes)
		throw Error(name, EINVAL,
			    fmt::format("disk {}: its snapshot covers {} of its {} bytes", name, end,
					s->disk.size_bytes));
	state_ = std::move(s);
}

std::uint64_t DiskImageReader::size() const noexcept { return state_->disk.size_bytes; }

std::size_t DiskImageReader::read(std::uint8_t *buffer, std::size_t n, std::uint64_t offset) const
{
	const auto &pieces = state_->pieces;
	if (offset >= size())
		return 0;
	auto p = std::upper_bound(pieces.begin(), pieces.end(), offset,
				  [](std::uint64_t at, const auto &x) { return at < x.start; });
	--p; // pieces cover [0, size): one starts at or before offset
	const std::uint64_t within = offset - p->start;
	n = std::size_t(std::min<std::uint64_t>(n, p->length - within));
	if (p->fd < 0) {
		std::memset(buffer, 0, n);
		return n;
	}
	const std::uint64_t at = p->from + within;
	const std::uint64_t first = p->direct ? at / AlignedBuffer::alignment * AlignedBuffer::alignment : at;
	const std::uint64_t skip = at - first;
	std::optional<AlignedBuffer> bounce;
	if (p->direct)
		bounce.emplace(std::size_t(skip + n + AlignedBuffer::alignment - 1) /
			       AlignedBuffer::alignment * AlignedBuffer::alignment);
	for (;;) {
		const ssize_t got = p->direct ? ::pread(p->fd, bounce->data(), bounce->size(), off_t(first))
					      : ::pread(p->fd, buffer, n, off_t(at));
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= ssize_t(p->direct ? skip : 0)) {
			if (got >= 0)
				errno = EIO;
			throw_errno(p->source, fmt::format("cannot read at byte {}", at));
		}
		if (!p->direct)
			return std::size_t(got);
		n = std::min(n, std::size_t(got) - std::size_t(skip));
		std::memcpy(buffer, bounce->data() + skip, n);
		return n;
	}
}

void DiskImageReader::expect_held() const { expect_instant_held(state_->disk, state_->instant); }

} // namespace snapmgr
