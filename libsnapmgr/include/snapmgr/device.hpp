#pragma once

// What a block device is and who uses it: sysfs for the kernel's view,
// libblkid for what is on it, /proc for mounts and swap.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace snapmgr {

struct DmIdentity {
	std::string name;
	std::string uuid;
};

struct BlockDevice {
	std::string path;        // as given, or /dev/<kernel name>
	std::string kernel_name; // vda1, dm-3, loop0
	unsigned major = 0;
	unsigned minor = 0;
	std::uint64_t size_bytes = 0;
	unsigned logical_sector_size = 512;
	unsigned physical_sector_size = 512;
	bool read_only = false;
	bool is_partition = false;
	bool is_virtual = false; // loop, ram, zram, nbd: no hardware behind it
	std::string fs_type;     // from blkid, empty when none found
	std::string fs_uuid;
	std::string fs_label;
	std::string part_uuid;
	std::string part_type; // a partition's: GPT type GUID, or "0x83" on a dos table
	std::string part_table_type; // a whole disk's: "gpt", "dos"; empty when none
	std::string part_table_uuid;
	std::uint64_t start_sector = 0; // a partition's first sector on its disk
	unsigned partition_number = 0;  // a partition's number (vda2: 2)
	std::optional<DmIdentity> dm;
	std::vector<std::string> partitions; // kernel names
	std::vector<std::string> holders;    // kernel names of devices stacked on it
	std::vector<std::string> mountpoints;
	bool is_swap = false;
	std::uint64_t writes_completed = 0; // since boot, /sys/.../stat

	std::string number() const; // "major:minor"
	std::uint64_t sectors() const noexcept { return size_bytes / 512; }
	bool in_use() const noexcept
	{
		return !mountpoints.empty() || !holders.empty() || is_swap;
	}
};

// Throws DeviceError when path is not a block device.
BlockDevice probe_device(const std::string &path);
BlockDevice probe_device(unsigned major, unsigned minor);

// Every whole disk the kernel has (/sys/block), sorted by kernel name.
std::vector<BlockDevice> list_disks();

// Why a device cannot be tracked (btrfs, zfs, swap, a partitioned disk, a
// read-only device), or nullopt.
std::optional<std::string> untrackable_reason(const BlockDevice &device);

// A device holding the filesystem with this UUID (libblkid's lookup, which
// probes the device it finds); nullopt when none does.
std::optional<std::string> find_filesystem(const std::string &fs_uuid);

// A mount: where, of which device, and which directory of the filesystem
// appears there ("/" unless it is a bind mount of a subdirectory).
struct MountedOn {
	std::string mountpoint;
	unsigned major = 0;
	unsigned minor = 0;
	std::string fs_root = "/";
};
// The mount holding path.
MountedOn mount_of(const std::string &path);
// Every mount of the device.
std::vector<MountedOn> mounts_of(unsigned major, unsigned minor);

} // namespace snapmgr
