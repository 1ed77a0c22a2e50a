#pragma once

// Tracked volumes: putting a device under a cowfile wrapper and taking it
// out again, snapshots, status and changed ranges. Every operation holds the
// volume's lock (see lock.hpp) and is transactional: when it fails part way
// it undoes the device-mapper changes it made before it throws.
//
// The truth about a volume is the kernel's status and the store superblock;
// the configuration (config.hpp) only says which device and which store the
// user chose, so that a boot can attach it again.

#include <linux/dm-cowfile.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "snapmgr/config.hpp"
#include "snapmgr/cowfile.hpp"
#include "snapmgr/types.hpp"

namespace snapmgr {

// How much a message from the library matters. A step is progress the
// caller may show ("creating vg-lv-real"); a warning is something the user
// should know although the command did what it was asked (the device stays
// wrapped until the next boot); an error is something the library could not
// do or undo (a rollback step that failed), which the user must put right.
enum class Severity { step, warning, error };
using Logger = std::function<void(Severity, std::string_view)>;

struct TrackOptions {
	std::string device;                        // the volume to track
	std::string name;                          // empty: derived from the device
	std::optional<std::filesystem::path> store; // empty: on the volume's filesystem
	std::uint64_t store_bytes = 0;             // 0: default_store_bytes()
	std::uint32_t chunk_sectors = COWFILE_DEFAULT_CHUNK_SECTORS;
	Logger log;
};

// A tenth of the volume, at least 64 MiB, rounded to 4 KiB.
std::uint64_t default_store_bytes(std::uint64_t volume_bytes);

enum class TrackOutcome {
	tracking,        // the wrapper is live now
	next_boot,       // a mounted plain partition: wrapped at the next boot
	already_tracking // reattach: nothing to do
};
std::string_view to_string(TrackOutcome outcome) noexcept;

struct TrackResult {
	std::string name;
	std::string device; // /dev/mapper/<name> when tracking
	TrackOutcome outcome = TrackOutcome::tracking;
	VolumeConfig config;
};

// Puts a volume under tracking: live insertion under a dm volume, an
// immediate wrapper over an unused device, or for a mounted plain partition
// the configuration and store now and the wrapper at the next boot.
TrackResult track(const TrackOptions &options);
// A new tracked volume over an unused (blank) device, for the user to mkfs
// and mount. A blank device has no filesystem to hold the store, so
// options.store must name a file on another mounted filesystem.
TrackResult create(const TrackOptions &options);
// Attaches configured volumes that are not attached (at boot). Names empty:
// every configured volume. A failure of one volume is reported in its
// result's error and does not stop the others.
struct ReattachOptions {
	// What boot does (udev, the initramfs): a volume that cannot be
	// attached, or whose boot integration is disabled on the kernel
	// command line, is given back unwrapped (boot.hpp) so that the machine
	// boots, and is not tried again until the next boot.
	bool give_back = false;
	Logger log;
};
struct ReattachResult {
	std::string name;
	std::optional<TrackResult> result;
	std::string error;
	bool given_back = false;
};
std::vector<ReattachResult> reattach(const std::vector<std::string> &names,
				     const ReattachOptions &options = {});

struct UntrackOptions {
	bool keep_store = false;
	Logger log;
};
// Restores the device exactly as it was (the original table, or no wrapper)
// and removes the configuration and, unless kept, the store file. Refuses
// while a snapshot is held.
void untrack(const std::string &name, const UntrackOptions &options = {});

struct SnapshotResult {
	std::string name;
	std::string image;  // /dev/mapper/<name>-snap
	std::string generation;
	std::uint64_t epoch = 0; // the epoch the snapshot closed
	// What that epoch wrote (its chunks, since the previous snapshot or
	// the generation's start) and the store's room for copies: as much
	// written again while the snapshot is held would fill the store.
	std::uint64_t changed_bytes = 0;
	std::uint64_t store_room_bytes = 0;
};
// One instant for all the named volumes: suspend all (freezing their
// filesystems), snapshot each, resume all, then create the read-only image
// devices. On any failure every volume is resumed and no snapshot is left.
std::vector<SnapshotResult> snapshot(const std::vector<std::string> &names, const Logger &log = {});
// Removes the image device and drops the held snapshot.
void release(const std::string &name, const Logger &log = {});
// Starts a new generation (the next backup is full) and resumes tracking
// after a loss. Refused while a snapshot is held.
void reset(const std::string &name, const Logger &log = {});

// Grows the store by add_bytes (a multiple of 4 KiB) while the volume runs:
// the file is preallocated further and the kernel appends the new extents
// to its copy area. Returns the store's new size in bytes. When the kernel
// refuses, the file is cut back.
std::uint64_t grow(const std::string &name, std::uint64_t add_bytes, const Logger &log = {});

// What the monitor did, or could not do, each time.
struct MonitorReport {
	std::string name;
	std::string event; // "grew", "refused" or "detached"
	std::uint64_t store_used_bytes = 0; // used by the snapshot when it looked
	std::uint64_t store_room_bytes = 0; // its room for copies then
	std::uint64_t step_bytes = 0;
	std::uint64_t store_size_bytes = 0; // the store file's size after it grew
	std::string reason;            // why it did not grow
	std::string text;              // all of it, as one line for people
};
// Watches a volume until it is detached: whenever a held snapshot has used
// its store past the kernel's low water mark (the table's low_water, else
// 80%), grows the store by step_bytes while the store's filesystem has that
// much free, and reports each growth and each refusal. In between it waits
// for a dm event (the kernel raises one at the mark), looking again every
// 5 seconds; it holds the volume lock only while it grows. Throws when the
// volume is not attached to begin with.
struct MonitorOptions {
	std::uint64_t step_bytes = std::uint64_t(1) << 30;
	std::function<void(const MonitorReport &)> report; // each growth, refusal, the end
	Logger log; // the steps of each growth
};
void monitor(const std::string &name, const MonitorOptions &options);

enum class VolumeState {
	tracking,  // attached, every change recorded
	lost,      // attached, a change may have been missed: next backup is full
	next_boot, // configured, not attached yet (mounted plain partition)
	detached,  // configured, not attached, not in use: run reattach
	given_back // boot could not attach it (attach_error says why): it runs
		   // unwrapped and untracked, its store marked lost
};
std::string_view to_string(VolumeState state) noexcept;

struct VolumeStatus {
	std::string name;
	std::string disk; // the tracked disk it is a partition of (disk.hpp)
	VolumeState state = VolumeState::detached;
	VolumeConfig config;
	std::string device;   // /dev/mapper/<name> when attached
	std::string origin;   // the device under the wrapper
	std::uint64_t size_bytes = 0;
	std::optional<CowfileStatus> kernel; // when attached
	std::string image;    // the image device, when it exists
	std::string attach_error; // why boot gave it back (given_back)
	// The store's one vocabulary (snapmgr(8), list): its file's size, its
	// room for copies (the size less the metadata), and what the held
	// snapshot uses of that room.
	std::uint64_t store_size_bytes = 0;
	std::uint64_t store_room_bytes = 0;
	std::uint64_t store_used_bytes = 0;
	// An active snapshot has used the store past its low water mark (the
	// table's low_water, else 80%): it is lost when the store fills.
	bool store_nearly_full = false;
};
VolumeStatus status(const std::string &name);
// Every configured volume and every cowfile device, sorted by name.
std::vector<VolumeStatus> list();

// Waits for the volume's next dm event (a snapshot taken, released or
// invalidated, the store past its low water mark, tracking lost, a new
// generation) and returns the status after it; returns too when the volume
// goes away. Holds no lock, and no hold on the device, while it waits.
VolumeStatus wait_for_event(const std::string &name);

// "GENERATION:EPOCH", the position a backup was taken at.
struct Position {
	Uuid generation{};
	std::uint64_t epoch = 0;
	std::string to_string() const;
	// Throws UsageError when text is not "<uuid>:<epoch>".
	static Position parse(std::string_view text);
};

struct Changes {
	std::string name;
	Position now;              // generation and held snapshot's epoch (or open epoch - 1)
	std::uint32_t chunk_bytes = 0;
	std::uint64_t size_bytes = 0;
	ChangeSet set;
};
// Byte ranges written after `since` (or "full" with a reason). The answer is
// a superset of what changed: it never misses a written chunk.
Changes changes(const std::string &name, const std::optional<Position> &since);

} // namespace snapmgr
