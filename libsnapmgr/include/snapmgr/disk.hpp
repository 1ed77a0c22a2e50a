#pragma once

// Whole disks: a partitioned disk tracked as a group of volumes, one per
// partition that can be tracked, snapshotted at one instant and backed up as
// one raw disk image. What is not in a partition (the partition table at
// both ends, the bootloader's gap, unpartitioned space) is read while the
// partitions are suspended, so that it belongs to the same instant.
//
// The group is /etc/snapmgr/disks/<name>.json ($SNAPMGR_CONFIG_DIR): the
// disk, its partition table as it was tracked, and each partition's role.
// A snapshot of the disk leaves <name>.instant.json and <name>.gaps beside
// it: the members' positions and the bytes outside the partitions.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "snapmgr/backup.hpp"
#include "snapmgr/types.hpp"
#include "snapmgr/volume.hpp"

namespace snapmgr {

// What a backup of the disk does with a partition.
enum class PartitionRole {
	tracked, // a volume of its own: its snapshot image, changes only
	zeros,   // swap: zeros (its content is not needed to boot)
	live     // cannot be tracked: copied whole from the live device each time
};
std::string_view to_string(PartitionRole role) noexcept;

struct DiskPartition {
	unsigned number = 0;      // as the kernel numbers it (vda2: 2)
	std::string kernel_name;  // vda2, nvme0n1p2
	std::uint64_t start_bytes = 0;
	std::uint64_t size_bytes = 0;
	std::string type;         // GPT type GUID, or "0x83" on a dos table
	std::string uuid;         // the partition's own UUID (PARTUUID)
	std::string fs_type;      // what was on it when it was tracked
	PartitionRole role = PartitionRole::live;
	std::string volume;       // tracked: its volume's name
	std::string reason;       // zeros and live: why it is not tracked
};

struct DiskConfig {
	std::string name;   // the disk's kernel name when tracked (vda)
	std::string device; // as the user named it
	std::string table_type; // "gpt" or "dos"
	std::string table_uuid;
	std::uint64_t size_bytes = 0;
	std::vector<DiskPartition> partitions; // by start
};

// A whole disk with partitions (what track_disk() takes); false for
// anything else, a path that is no block device included.
bool is_partitioned_disk(const std::string &device) noexcept;
// The disk's partition table as the kernel sees it now (roles unset).
// Throws UsageError when the device is not a whole disk with partitions.
DiskConfig read_disk_layout(const std::string &device);
// Partition tables differ (a partition added, removed, moved, resized,
// retyped, or another table): nullopt when they are the same, else what
// differs, for people.
std::optional<std::string> layout_difference(const DiskConfig &recorded, const DiskConfig &now);
// What no partition covers, in disk order.
std::vector<ByteRange> disk_gaps(const DiskConfig &disk);

std::optional<DiskConfig> load_disk_config(const std::string &name);
std::vector<DiskConfig> load_all_disk_configs();
// The disk a volume belongs to, if any.
std::optional<DiskConfig> disk_of_volume(const std::string &volume);

struct DiskTrackResult {
	DiskConfig disk;
	std::vector<TrackResult> volumes; // the tracked partitions, in disk order
};
// Tracks every partition of a partitioned disk that can be tracked (a
// mounted one from the next boot, as track() does) and records the group.
// options.store, when given, is a directory that holds the store of each
// partition with no mounted filesystem of its own. All or nothing: when one
// partition fails, those tracked before it are untracked again.
DiskTrackResult track_disk(const TrackOptions &options);
// Untracks the disk's volumes and forgets the group.
void untrack_disk(const std::string &name, const UntrackOptions &options = {});

struct DiskStatus {
	DiskConfig disk;
	// What differs between the table as tracked and the disk now (or why
	// the disk cannot be read); nullopt when it is the same.
	std::optional<std::string> table_changed;
	bool snapshot_held = false; // snapshot_disk() left an instant for backup_disk()
	std::vector<VolumeStatus> volumes; // the tracked partitions', in disk order
};
DiskStatus disk_status(const std::string &name);

// A disk's position: each tracked partition's, written
// "vda2=<uuid>:<epoch>,vda3=<uuid>:<epoch>" (as snapshot and backup of the
// disk print it).
using DiskPosition = std::map<std::string, Position>;
std::string to_string(const DiskPosition &position);
// Throws UsageError when text is not VOLUME=GENERATION:EPOCH[,...].
DiskPosition parse_disk_position(std::string_view text);

struct DiskChanges {
	std::string name;
	std::uint64_t size_bytes = 0;
	DiskPosition now;
	std::vector<Changes> volumes;     // each tracked partition's, on the partition
	std::vector<ByteRange> untracked; // outside the tracked partitions, swap excepted
	std::vector<ByteRange> ranges;    // all of it on the disk, by start, merged
};
// What a backup of the disk since `since` copies: each tracked partition's
// changes at its offset (the whole partition when `since` has no position
// of it or its changes are full), and, every time, what no tracked
// partition covers but swap (the gaps and the partitions copied live:
// nothing tracks their writes). Refused when the table changed.
DiskChanges disk_changes(const std::string &name, const DiskPosition &since);

struct DiskSnapshotResult {
	std::string name;
	std::vector<SnapshotResult> volumes;
	std::uint64_t captured_bytes = 0; // outside the partitions, at the instant
	std::vector<ByteRange> live;      // ranges a backup reads from the live disk
};
// One instant for every tracked partition; the gaps between them are read
// while they are suspended. Refused when the partition table changed since
// the disk was tracked.
DiskSnapshotResult snapshot_disk(const std::string &name, const Logger &log = {});
struct SnapshotManyResult {
	std::vector<DiskSnapshotResult> disks; // in the order asked
	std::vector<SnapshotResult> volumes;   // the volumes asked, by name
};
// One instant for several disks' tracked partitions and other volumes
// together (snapshot() for volumes alone).
SnapshotManyResult snapshot_disks(const std::vector<std::string> &disks,
				  const std::vector<std::string> &volumes, const Logger &log = {});
// Whether snapshot_disk() left an instant that release_disk() has not
// removed (the partitions may have lost theirs since: DiskImageReader).
bool disk_snapshot_held(const std::string &name);
// Releases the snapshot of every tracked partition.
void release_disk(const std::string &name, const Logger &log = {});

struct DiskBackupResult {
	std::string name;
	std::filesystem::path image;
	std::uint64_t size_bytes = 0;
	std::uint64_t copied_bytes = 0;
	std::vector<BackupResult> volumes; // each tracked partition's part
	std::vector<ByteRange> live;       // copied from the live disk, not the instant
	std::vector<ByteRange> zeros;      // swap partitions, written as zeros
};
// Copies the disk's held snapshot into one raw disk image: the bytes
// outside the partitions at the instant, each tracked partition's snapshot
// at its offset (incremental per partition when the image holds an earlier
// position of it), swap as zeros, the rest from the live disk. A sidecar
// IMAGE.snapmgr.json records the table and each partition's position.
DiskBackupResult backup_disk(const std::string &name, const std::filesystem::path &image,
			     const BackupOptions &options = {});

// The disk's held snapshot read as one disk image, byte for byte what
// backup_disk() writes: each tracked partition from its snapshot image, the
// bytes read at the instant outside the partitions, the live partitions and
// areas from the disk, swap as zeros. Throws UsageError when the disk holds
// no snapshot, SnapshotLostError when a partition no longer holds it.
// Copies share one set of open files; reads from several threads are safe.
class DiskImageReader {
public:
	explicit DiskImageReader(const std::string &name);
	std::uint64_t size() const noexcept;
	// Reads at most n bytes at offset (less where one source ends and the
	// next begins); 0 past the end. Throws Error when a source fails.
	std::size_t read(std::uint8_t *buffer, std::size_t n, std::uint64_t offset) const;
	// Throws SnapshotLostError when a partition no longer holds the
	// disk's snapshot (what was read since may be of another instant).
	void expect_held() const;

private:
	struct State;
	std::shared_ptr<const State> state_;
};

} // namespace snapmgr
