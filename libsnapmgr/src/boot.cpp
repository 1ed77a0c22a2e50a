// Boot integration: the udev claim and giving a device back when a volume
// cannot be attached (boot.hpp).
#include "snapmgr/boot.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/core.h>

#include "aligned_buffer.hpp"
#include "file_descriptor.hpp"
#include "snapmgr/device.hpp"
#include "snapmgr/dm.hpp"
#include "snapmgr/error.hpp"
#include "log.hpp"
#include "store_check.hpp"
#include "throw_errno.hpp"
#include "volume_devices.hpp"

namespace snapmgr {

namespace fs = std::filesystem;

namespace {

fs::path given_back_path(const std::string &name) { return run_dir() / "given-back" / name; }

// Whether the configured device of a wrap volume is this device: by its
// filesystem UUID when one was recorded (kernel names move between boots),
// else by the device number the configured path has now.
bool names_device(const VolumeConfig &c, const BlockDevice &d)
{
	if (!c.device_fs_uuid.empty())
		return d.fs_uuid == c.device_fs_uuid;
	struct stat st{};
	return ::stat(c.device.c_str(), &st) == 0 && S_ISBLK(st.st_mode) &&
	       ::major(st.st_rdev) == d.major && ::minor(st.st_rdev) == d.minor;
}

bool is_snapmgr_dm(const std::string &kernel_name)
{
	std::ifstream in("/sys/class/block/" + kernel_name + "/dm/uuid");
	std::string uuid;
	return std::getline(in, uuid) && uuid.rfind(dm::uuid_prefix, 0) == 0;
}

bool held_by_wrapper(const BlockDevice &d)
{
	for (const auto &holder : d.holders)
		if (is_snapmgr_dm(holder))
			return true;
	return false;
}

// Sets the lost-tracking flag in a store superblock nobody has open, after
// checking that the block is that store's superblock (the caller checked
// that the store file still owns it).
bool mark_store_lost(const std::string &device, std::uint64_t sb_sector, const Uuid &store)
{
	FileDescriptor fd(::open(device.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC));
	if (!fd.valid())
		throw_errno(device, "cannot open the store device");
	AlignedBuffer block(store_block_size);
	const off_t offset = off_t(sb_sector * 512);
	if (::pread(fd.get(), block.data(), block.size(), offset) != ssize_t(block.size()))
		throw_errno(device, fmt::format("cannot read the store superblock at sector {}",
						sb_sector));
	Superblock sb = decode_superblock(ConstBlockBytes(block.data(), store_block_size), sb_sector);
	if (sb.store_uuid != store || sb.sb_sector != sb_sector)
		throw StoreCorruptError(device, EINVAL,
					fmt::format("sector {} of {} holds the superblock of store {}, "
						    "not {}",
						    sb_sector, device, format_uuid(sb.store_uuid),
						    format_uuid(store)));
	if (sb.tracking_lost())
		return false;
	sb.flags |= COWFILE_SB_TRACKING_LOST;
	encode_superblock(sb, BlockBytes(block.data(), store_block_size));
	if (::pwrite(fd.get(), block.data(), block.size(), offset) != ssize_t(block.size()) ||
	    ::fdatasync(fd.get()) < 0)
		throw_errno(device, "cannot write the store superblock");
	return true;
}

// The kernel log is where an administrator looks after a boot went wrong;
// /dev/kmsg may be missing (containers), then stderr through the logger is
// all there is.
void kernel_log(const std::string &text)
{
	FileDescriptor fd(::open("/dev/kmsg", O_WRONLY | O_CLOEXEC));
	if (!fd.valid())
		return;
	const std::string line = fmt::format("<4>snapmgr[{}]: {}\n", ::getpid(), text);
	[[maybe_unused]] ssize_t n = ::write(fd.get(), line.data(), line.size());
}

// A "change" uevent makes udev run the rules again: the device loses its
// claim and gets its by-uuid link (udevadm trigger does the same).
void retrigger(const std::string &kernel_name)
{
	std::ofstream out("/sys/class/block/" + kernel_name + "/uevent");
	out << "change\n";
}

// What udev_claim() can rule out before it probes the device (blkid,
// mountinfo, holders): no volume is configured in the device's mode, or,
// for a dm device, under its name.
bool may_claim(const std::string &devnode, const std::vector<VolumeConfig> &configs)
{
	const std::string kernel_name = fs::path(devnode).filename();
	std::ifstream in("/sys/class/block/" + kernel_name + "/dm/name");
	std::string dm_name;
	const bool dm = static_cast<bool>(std::getline(in, dm_name));
	for (const VolumeConfig &c : configs)
		if (dm ? c.mode == AttachMode::insert && c.name == dm_name : c.mode == AttachMode::wrap)
			return true;
	return false;
}

} // namespace

bool boot_disabled()
{
	std::ifstream in("/proc/cmdline");
	std::string word;
	while (in >> word)
		if (word == "rd.snapmgr=0" || word == "snapmgr=0")
			return true;
	return false;
}

std::optional<std::string> given_back_reason(const std::string &name)
{
	std::ifstream in(given_back_path(name));
	std::string reason;
	if (!in || !std::getline(in, reason))
		return std::nullopt;
	return reason;
}

std::optional<UdevClaim> udev_claim(const std::string &devnode)
{
	const std::vector<VolumeConfig> configs = load_all_configs();
	if (!may_claim(devnode, configs))
		return std::nullopt;
	const BlockDevice d = probe_device(devnode);
	for (const VolumeConfig &c : configs) {
		UdevClaim claim;
		claim.volume = c.name;
		if (d.dm) {
			// An LVM volume configured for insertion: hidden until its
			// wrapper is in, so nothing mounts it untracked at boot.
			if (c.mode != AttachMode::insert || d.dm->name != c.name)
				continue;
			claim.attached = attached_table(c.name).has_value();
		} else {
			if (c.mode != AttachMode::wrap || !names_device(c, d))
				continue;
			claim.attached = held_by_wrapper(d);
		}
		// Claimed with rd.snapmgr=0 too, until reattach --boot has given
		// it back with its store marked lost: root would otherwise be
		// mounted before that runs, and its writes missed unseen.
		claim.claim = claim.attached || (!d.in_use() && !given_back_reason(c.name));
		if (d.dm && claim.attached)
			claim.claim = false; // the wrapper is the volume now
		return claim;
	}
	return std::nullopt;
}

GiveBack give_back(const VolumeConfig &c, const std::string &why, const Logger &log)
{
	GiveBack out;
	const fs::path marker = given_back_path(c.name);
	std::error_code ec;
	fs::create_directories(marker.parent_path(), ec);
	{
		std::ofstream f(marker);
		f << why << '\n';
	}

	std::optional<BlockDevice> device;
	try {
		if (c.mode == AttachMode::insert)
			device = probe_device(dm::device_path(c.name));
		else
			device = probe_device(c.device);
		if (c.mode == AttachMode::wrap && !c.device_fs_uuid.empty() &&
		    device->fs_uuid != c.device_fs_uuid) {
			device.reset();
			if (auto path = find_filesystem(c.device_fs_uuid))
				device = probe_device(*path);
		}
	} catch (const Error &) {
		device.reset();
	}
	if (device)
		out.device = device->path;

	const std::string store_device = c.store_on_volume ? out.device : c.store_device;
	if (store_device.empty()) {
		out.store_note = fmt::format("{} is not there", c.device);
	} else {
		try {
			const StoreReader reader = StoreReader::open_device(store_device, c.sb_sector);
			if (auto problem = store_file_problem(c, store_device, reader.extents())) {
				out.store_note = *problem;
			} else {
				mark_store_lost(store_device, c.sb_sector, c.store_uuid);
				out.marked_lost = true;
			}
		} catch (const Error &e) {
			out.store_note = e.what();
		}
	}

	const std::string text = fmt::format(
		"{}: not attached: {}; {} runs without change tracking and {}", c.name, why,
		out.device.empty() ? c.device : out.device,
		out.marked_lost ? "the next backup is full"
				: fmt::format("the store cannot record it ({}): untrack and track "
					      "the volume again",
					      out.store_note));
	kernel_log(text);
	log_warning(log, text);
	if (device && !device->dm && !held_by_wrapper(*device))
		retrigger(device->kernel_name);
	return out;
}

} // namespace snapmgr
