#pragma once

// What the user configured, so that a boot can attach a volume again:
// /etc/snapmgr/volumes/<name>.conf, one "key = value" per line
// (snapmgr.conf(5)). Nothing the kernel or the store already knows is kept
// here; the store superblock's location is, because before the filesystem
// holding the store is mounted nothing else can find it.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "snapmgr/types.hpp"

namespace snapmgr {

enum class AttachMode {
	insert, // a dm volume: the wrapper is slid under its name (<name>-real below)
	wrap    // any other device: a new dm device <name> over it
};
std::string_view to_string(AttachMode mode) noexcept;

struct VolumeConfig {
	std::string name;
	std::string device; // the tracked device as the user named it
	// Its filesystem UUID when it had one: finds a plain device again when
	// its kernel name changed between boots (vdb became vdc).
	std::string device_fs_uuid;
	AttachMode mode = AttachMode::wrap;
	std::filesystem::path store; // the store file
	// The store file's path inside its filesystem ("/.snapmgr-vda1.store"
	// for a store at /.snapmgr-vda1.store on the root filesystem): where to
	// look for it when that filesystem is not mounted. Empty in
	// configurations written before snapmgr recorded it.
	std::string store_in_fs;
	// The store's extents are on the tracked device itself (the store file
	// lives on the tracked filesystem); otherwise on store_device.
	bool store_on_volume = true;
	std::string store_device;
	std::uint64_t sb_sector = 0;
	Uuid store_uuid{};

	bool operator==(const VolumeConfig &) const = default;
};

// Throws UsageError when a name cannot be a volume name (it becomes a dm
// device name and a file name): 1-100 of [A-Za-z0-9._+-], not starting with
// '-' or '.'.
void check_volume_name(std::string_view name);

std::string format_config(const VolumeConfig &config);
// Throws UsageError naming the line that does not parse or the key that is
// missing.
VolumeConfig parse_config(std::string_view text, const std::string &origin);

// The configuration directory: $SNAPMGR_CONFIG_DIR, or /etc/snapmgr.
std::filesystem::path config_dir();
// Locks and boot state: $SNAPMGR_RUN_DIR, or /run/snapmgr.
std::filesystem::path run_dir();
std::optional<VolumeConfig> load_config(const std::string &name);
// Written to a temporary file, synced and renamed: never half a file.
void save_config(const VolumeConfig &config);
// The same for any file: path holds the old text or the new, whole.
void write_file_durably(const std::filesystem::path &path, std::string_view text,
			unsigned mode);
void remove_config(const std::string &name);
std::vector<VolumeConfig> load_all_configs();

// Serialises every snapmgr operation on one volume: an exclusive flock on
// /run/snapmgr/<name>.lock ($SNAPMGR_RUN_DIR instead of /run/snapmgr), held
// for the object's lifetime. Waits for the holder.
class VolumeLock {
public:
	explicit VolumeLock(const std::string &name);
	VolumeLock(VolumeLock &&other) noexcept;
	VolumeLock &operator=(VolumeLock &&) = delete;
	VolumeLock(const VolumeLock &) = delete;
	~VolumeLock();

private:
	int fd_ = -1;
};

} // namespace snapmgr
