#pragma once

// Copying a held snapshot into a raw image file: everything the first time,
// only the changed chunks after that. Beside the image, a sidecar
// IMAGE.snapmgr.json records which volume, generation and epoch the image
// holds; it is marked incomplete before an incremental copy starts, so an
// interrupted backup makes the next one full instead of leaving a mix.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "snapmgr/volume.hpp"

namespace snapmgr {

struct BackupOptions {
	bool force_full = false;
	// Called after each copied range with bytes done and bytes to copy.
	std::function<void(std::uint64_t done, std::uint64_t total)> progress;
	Logger log;
};

struct BackupResult {
	std::string name;
	std::filesystem::path image;
	bool full = false;
	std::string full_reason;       // why it was full
	std::optional<Position> since; // incremental: the position it built on
	Position position;             // what the image holds now
	std::uint64_t size_bytes = 0;
	std::uint64_t copied_bytes = 0;
	std::uint64_t ranges = 0;
};

// The sidecar of an image: what it holds, when it is complete.
struct ImageRecord {
	std::string volume;
	Position position;
	std::uint64_t size_bytes = 0;
	bool complete = false;
};
std::filesystem::path sidecar_path(const std::filesystem::path &image);
// nullopt when there is no sidecar; throws UsageError when it does not parse.
std::optional<ImageRecord> read_image_record(const std::filesystem::path &image);

// Copies the held snapshot of `name` (its image device must exist: snapmgr
// snapshot creates it) into `image`, created 0600 if new.
BackupResult backup(const std::string &name, const std::filesystem::path &image,
		    const BackupOptions &options = {});

} // namespace snapmgr
