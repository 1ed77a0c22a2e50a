#include "snapmgr/device.hpp"

#include <blkid/blkid.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include <fmt/core.h>

#include "snapmgr/error.hpp"

namespace snapmgr {

namespace fs = std::filesystem;

namespace {

std::string read_line(const fs::path &file)
{
	std::ifstream in(file);
	std::string line;
	std::getline(in, line);
	return line;
}

std::uint64_t read_number(const fs::path &file)
{
	std::string line = read_line(file);
	return line.empty() ? 0 : std::stoull(line);
}

std::vector<std::string> directory_names(const fs::path &dir)
{
	std::vector<std::string> names;
	std::error_code ec;
	for (const auto &entry : fs::directory_iterator(dir, ec))
		names.push_back(entry.path().filename().string());
	return names;
}

// "\040" in mountinfo stands for a space, and so on.
std::string unescape_octal(const std::string &s)
{
	std::string out;
	for (std::size_t i = 0; i < s.size(); i++) {
		if (s[i] == '\\' && i + 3 < s.size()) {
			out += char(std::stoi(s.substr(i + 1, 3), nullptr, 8));
			i += 3;
		} else {
			out += s[i];
		}
	}
	return out;
}

std::vector<MountedOn> read_mounts()
{
	std::vector<MountedOn> mounts;
	std::ifstream in("/proc/self/mountinfo");
	for (std::string line; std::getline(in, line);) {
		std::istringstream fields(line);
		std::string id, parent, devno, root, mountpoint;
		fields >> id >> parent >> devno >> root >> mountpoint;
		unsigned major = 0, minor = 0;
		if (std::sscanf(devno.c_str(), "%u:%u", &major, &minor) == 2)
			mounts.push_back({unescape_octal(mountpoint), major, minor,
					  unescape_octal(root)});
	}
	return mounts;
}

struct ProbeDeleter {
	void operator()(blkid_probe p) const noexcept { blkid_free_probe(p); }
};

void probe_contents(BlockDevice &d)
{
	std::unique_ptr<blkid_struct_probe, ProbeDeleter> probe(
		blkid_new_probe_from_filename(d.path.c_str()));
	if (!probe)
		return; // unreadable (e.g. no media): nothing known about its content
	blkid_probe_enable_superblocks(probe.get(), 1);
	blkid_probe_set_superblocks_flags(probe.get(), BLKID_SUBLKS_TYPE | BLKID_SUBLKS_UUID |
							       BLKID_SUBLKS_LABEL);
	blkid_probe_enable_partitions(probe.get(), 1);
	// PART_ENTRY_* (a partition's own entry in its disk's table) only
	// with this flag.
	blkid_probe_set_partitions_flags(probe.get(), BLKID_PARTS_ENTRY_DETAILS);
	if (blkid_do_safeprobe(probe.get()) != 0)
		return;
	const char *value = nullptr;
	if (blkid_probe_lookup_value(probe.get(), "TYPE", &value, nullptr) == 0)
		d.fs_type = value;
	if (blkid_probe_lookup_value(probe.get(), "UUID", &value, nullptr) == 0)
		d.fs_uuid = value;
	if (blkid_probe_lookup_value(probe.get(), "LABEL", &value, nullptr) == 0)
		d.fs_label = value;
	if (blkid_probe_lookup_value(probe.get(), "PART_ENTRY_UUID", &value, nullptr) == 0)
		d.part_uuid = value;
	if (blkid_probe_lookup_value(probe.get(), "PART_ENTRY_TYPE", &value, nullptr) == 0)
		d.part_type = value;
	if (blkid_probe_lookup_value(probe.get(), "PTTYPE", &value, nullptr) == 0)
		d.part_table_type = value;
	if (blkid_probe_lookup_value(probe.get(), "PTUUID", &value, nullptr) == 0)
		d.part_table_uuid = value;
}

bool is_swap_device(unsigned major, unsigned minor)
{
	std::ifstream in("/proc/swaps");
	std::string line;
	std::getline(in, line); // header
	while (std::getline(in, line)) {
		std::istringstream fields(line);
		std::string name;
		fields >> name;
		struct stat st{};
		if (::stat(name.c_str(), &st) == 0 && S_ISBLK(st.st_mode) &&
		    ::major(st.st_rdev) == major && ::minor(st.st_rdev) == minor)
			return true;
	}
	return false;
}

} // namespace

std::string BlockDevice::number() const { return fmt::format("{}:{}", major, minor); }

BlockDevice probe_device(unsigned major, unsigned minor)
{
	const fs::path sys = fmt::format("/sys/dev/block/{}:{}", major, minor);
	std::error_code ec;
	const fs::path dir = fs::canonical(sys, ec);
	if (ec)
		throw DeviceError(fmt::format("{}:{}", major, minor), ENODEV,
				  fmt::format("no block device {}:{} ({})", major, minor,
					      ec.message()));
	BlockDevice d;
	d.major = major;
	d.minor = minor;
	d.kernel_name = dir.filename().string();
	d.path = "/dev/" + d.kernel_name;
	d.is_partition = fs::exists(dir / "partition");
	if (d.is_partition) {
		d.start_sector = read_number(dir / "start");
		d.partition_number = unsigned(read_number(dir / "partition"));
	}
	const fs::path queue = d.is_partition ? dir.parent_path() / "queue" : dir / "queue";
	d.size_bytes = read_number(dir / "size") * 512;
	d.logical_sector_size = unsigned(read_number(queue / "logical_block_size"));
	d.physical_sector_size = unsigned(read_number(queue / "physical_block_size"));
	d.read_only = read_number(dir / "ro") != 0;
	for (const char *prefix : {"loop", "ram", "zram", "nbd"})
		if (d.kernel_name.rfind(prefix, 0) == 0)
			d.is_virtual = true;
	if (fs::exists(dir / "dm")) {
		d.dm = DmIdentity{read_line(dir / "dm" / "name"), read_line(dir / "dm" / "uuid")};
		d.path = "/dev/mapper/" + d.dm->name;
	}
	for (const auto &name : directory_names(dir))
		if (name.rfind(d.kernel_name, 0) == 0 && fs::exists(dir / name / "partition"))
			d.partitions.push_back(name);
	d.holders = directory_names(dir / "holders");
	for (const auto &m : read_mounts())
		if (m.major == major && m.minor == minor)
			d.mountpoints.push_back(m.mountpoint);
	d.is_swap = is_swap_device(major, minor);
	std::istringstream stat(read_line(dir / "stat"));
	std::uint64_t reads = 0, rmerges = 0, rsectors = 0, rticks = 0;
	stat >> reads >> rmerges >> rsectors >> rticks >> d.writes_completed;
	probe_contents(d);
	return d;
}

BlockDevice probe_device(const std::string &path)
{
	struct stat st{};
	if (::stat(path.c_str(), &st) < 0) {
		int e = errno;
		throw DeviceError(path, e, fmt::format("{}: {}", path, std::strerror(e)));
	}
	if (!S_ISBLK(st.st_mode))
		throw UsageError(path, ENOTBLK, fmt::format("{} is not a block device", path));
	BlockDevice d = probe_device(::major(st.st_rdev), ::minor(st.st_rdev));
	if (!d.dm)
		d.path = path;
	return d;
}

std::vector<BlockDevice> list_disks()
{
	std::vector<BlockDevice> disks;
	for (const auto &name : directory_names("/sys/block")) {
		unsigned major = 0, minor = 0;
		char colon = 0;
		std::istringstream number(read_line(fs::path("/sys/block") / name / "dev"));
		if (!(number >> major >> colon >> minor) || colon != ':')
			continue;
		try {
			disks.push_back(probe_device(major, minor));
		} catch (const DeviceError &) {
			// removed while we looked: not a disk any more
		}
	}
	std::sort(disks.begin(), disks.end(),
		  [](const auto &a, const auto &b) { return a.kernel_name < b.kernel_name; });
	return disks;
}

std::optional<std::string> untrackable_reason(const BlockDevice &d)
{
	if (d.fs_type == "btrfs")
		return fmt::format("{} holds btrfs, which moves data on its own; use btrfs "
				   "snapshots there",
				   d.path);
	if (d.fs_type == "zfs_member")
		return fmt::format("{} is a ZFS pool member; use ZFS snapshots there", d.path);
	if (d.is_swap || d.fs_type == "swap")
		return fmt::format("{} is swap space, which holds nothing worth a backup", d.path);
	if (!d.partitions.empty())
		return fmt::format("{} has partitions ({}...); track a partition, or the disk "
				   "with snapmgr track (its partitions as a group)",
				   d.path, d.partitions.front());
	if (d.read_only)
		return fmt::format("{} is read-only", d.path);
	if (d.dm && d.dm->uuid.rfind("SNAPMGR-", 0) == 0)
		return fmt::format("{} is a snapmgr device already", d.path);
	return std::nullopt;
}

std::optional<std::string> find_filesystem(const std::string &fs_uuid)
{
	char *found = blkid_evaluate_tag("UUID", fs_uuid.c_str(), nullptr);
	if (!found)
		return std::nullopt;
	std::string path = found;
	std::free(found);
	return path;
}

std::vector<MountedOn> mounts_of(unsigned major, unsigned minor)
{
	std::vector<MountedOn> out;
	for (auto &m : read_mounts())
		if (m.major == major && m.minor == minor)
			out.push_back(std::move(m));
	return out;
}

MountedOn mount_of(const std::string &path)
{
	struct stat st{};
	if (::stat(path.c_str(), &st) < 0) {
		int e = errno;
		throw DeviceError(path, e, fmt::format("{}: {}", path, std::strerror(e)));
	}
	MountedOn best;
	std::size_t best_length = 0;
	std::error_code ec;
	const std::string real = fs::weakly_canonical(path, ec).string();
	for (const auto &m : read_mounts()) {
		if (m.major != ::major(st.st_dev) || m.minor != ::minor(st.st_dev))
			continue;
		bool inside = real == m.mountpoint || m.mountpoint == "/" ||
			      real.rfind(m.mountpoint + "/", 0) == 0;
		if (inside && m.mountpoint.size() >= best_length) {
			best = m;
			best_length = m.mountpoint.size();
		}
	}
	if (best.mountpoint.empty())
		throw DeviceError(path, ENOENT,
				  fmt::format("cannot find the mounted filesystem holding {}", path));
	return best;
}

} // namespace snapmgr
