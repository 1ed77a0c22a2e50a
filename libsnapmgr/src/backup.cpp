#include "snapmgr/backup.hpp"

#include <cerrno>
#include <fstream>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "image_copy.hpp"
#include "snapmgr/config.hpp"
#include "snapmgr/dm.hpp"
#include "snapmgr/error.hpp"
#include "throw_errno.hpp"
#include "volume_devices.hpp"

namespace snapmgr {

namespace fs = std::filesystem;

namespace {

void write_image_record(const fs::path &image, const ImageRecord &record)
{
	nlohmann::json j = {{"volume", record.volume},
			    {"generation", format_uuid(record.position.generation)},
			    {"epoch", record.position.epoch},
			    {"size_bytes", record.size_bytes},
			    {"complete", record.complete}};
	write_file_durably(sidecar_path(image), j.dump(1) + "\n", 0600);
}

// What to do about a snapshot the kernel invalidated for `reason`.
std::string advice_for(const std::string &name, const std::string &reason,
		       const std::string &store)
{
	if (reason == "store_full")
		return fmt::format("its store {} filled with copies of blocks written after the "
				   "snapshot; grow it (snapmgr grow {} SIZE), keep snapmgr monitor "
				   "{} running to grow it before it fills, or track the volume with "
				   "a larger --store-size",
				   store, name, name);
	if (reason == "store_io_error" || reason == "metadata_error")
		return fmt::format("its store {} could not be written; the kernel log says why",
				   store);
	if (reason == "origin_io_error")
		return "the volume could not be read; the kernel log says why";
	return "see snapmgr status " + name;
}

// Throws when the held snapshot of `name` is no longer valid: an image read
// made around the moment it was invalidated cannot be trusted, whether it
// failed (EIO, then) or not. The image's record stays incomplete.
void expect_snapshot_still_valid(const std::string &name, const fs::path &image)
{
	CowfileStatus k = kernel_status(name);
	if (k.snap_state == SnapState::active)
		return;
	auto config = load_config(name);
	throw SnapshotLostError(
		name, 0,
		fmt::format("the snapshot of {} became invalid during the backup ({}): {}. {} is "
			    "incomplete (so marked in {}); take a new snapshot (snapmgr snapshot "
			    "{}) and back up again",
			    name, k.invalid_reason.empty() ? "released meanwhile" : k.invalid_reason,
			    advice_for(name, k.invalid_reason,
				       config ? config->store.string() : "of the volume"),
			    image.string(), sidecar_path(image).string(), name));
}

} // namespace

fs::path sidecar_path(const fs::path &image) { return image.string() + ".snapmgr.json"; }

std::optional<ImageRecord> read_image_record(const fs::path &image)
{
	const fs::path path = sidecar_path(image);
	std::ifstream in(path);
	if (!in)
		return std::nullopt;
	try {
		nlohmann::json j = nlohmann::json::parse(in);
		ImageRecord r;
		r.volume = j.at("volume").get<std::string>();
		auto uuid = parse_uuid(j.at("generation").get<std::string>());
		if (!uuid)
			throw std::invalid_argument("generation is not a UUID");
		r.position.generation = *uuid;
		r.position.epoch = j.at("epoch").get<std::uint64_t>();
		r.size_bytes = j.at("size_bytes").get<std::uint64_t>();
		r.complete = j.at("complete").get<bool>();
		return r;
	} catch (const std::exception &e) {
		throw UsageError(path.string(), EINVAL,
				 fmt::format("{} is not a snapmgr image record ({}); back up with "
					     "--full to overwrite the image, or to a new image",
					     path.string(), e.what()));
	}
}

BackupResult backup(const std::string &name, const fs::path &image, const BackupOptions &options)
{
	BackupResult result;
	result.name = name;
	result.image = image;

	// What the image holds decides between full and incremental.
	std::optional<Position> since;
	std::error_code ec;
	const bool image_exists = fs::exists(image, ec);
	// --full overwrites the record too, so an unreadable one is no obstacle.
	auto record = image_exists && !options.force_full ? read_image_record(image) : std::nullopt;
	if (options.force_full)
		result.full_reason = "a full backup was asked for";
	else if (!image_exists)
		result.full_reason = "the image is new";
	else if (!record)
		result.full_reason = fmt::format("{} has no record of what the image holds",
						 sidecar_path(image).string());
	else if (record->volume != name)
		result.full_reason = fmt::format("the image holds volume {}", record->volume);
	else if (!record->complete)
		result.full_reason = "the previous backup into the image did not finish";
	else
		since = record->position;
	if (image_exists && !record && !options.force_full)
		throw UsageError(image.string(), EEXIST,
				 fmt::format("{} exists and is not a snapmgr backup image (no {}); "
					     "refusing to overwrite it without --full",
					     image.string(), sidecar_path(image).string()));

	VolumeLock lock(name);
	Changes ch = changes_locked(name, since);
	CowfileStatus k = kernel_status(name);
	if (k.snap_state != SnapState::active)
		throw UsageError(name, EINVAL,
				 fmt::format("volume {} holds no valid snapshot{}; take one with "
					     "snapmgr snapshot {}",
					     name,
					     k.snap_state == SnapState::invalid
						     ? fmt::format(" (it was invalidated: {})",
								   k.invalid_reason)
						     : "",
					     name));
	if (record && record->size_bytes != ch.size_bytes && since) {
		since.reset();
		result.full_reason = "the volume's size changed";
	}
	if (since && ch.set.full)
		result.full_reason = ch.set.full_reason;
	result.full = !since || ch.set.full;
	if (result.full)
		since.reset();
	result.since = since;
	const std::string source = dm::device_path(image_name(name));
	if (!dm_exists(image_name(name)))
		throw UsageError(name, ENODEV,
				 fmt::format("the image device {} of volume {} does not exist",
					     source, name));
	result.position = ch.now;
	result.size_bytes = ch.size_bytes;

	std::vector<ByteRange> ranges = result.full ? std::vector<ByteRange>{{0, ch.size_bytes}}
						    : ch.set.ranges;
	// The image holds this very snapshot already. The chunk map keeps only
	// each chunk's last epoch, so the changes since a position include the
	// chunks written after the snapshot too (the image reads them as they
	// were); between a position and itself nothing changed.
	if (since && since->generation == ch.now.generation && since->epoch == ch.now.epoch)
		ranges.clear();
	std::uint64_t total = 0;
	for (const auto &r : ranges)
		total += r.length;
	result.ranges = ranges.size();

	// Incomplete until the copy is done, and so marked before an existing
	// image is touched (a full copy truncates it): an interruption from here
	// on makes the next backup full.
	ImageRecord rec{name, ch.now, ch.size_bytes, false};
	if (image_exists)
		write_image_record(image, rec);
	const CopySource snapshot_image(source, "the snapshot image");
	ImageFile out(image, result.full);
	if (!image_exists)
		write_image_record(image, rec);
	if (result.full)
		out.set_size(ch.size_bytes);
	std::vector<CopyPiece> pieces;
	for (const auto &r : ranges)
		pieces.push_back({&snapshot_image, r.start, r.start, r.length});
	try {
		copy_pieces(out, pieces, options.progress);
		out.sync();
	} catch (const Error &) {
		expect_snapshot_still_valid(name, image); // the cause, rather than EIO
		throw;
	}
	expect_snapshot_still_valid(name, image);
	result.copied_bytes = total;
	rec.complete = true;
	write_image_record(image, rec);
	return result;
}

} // namespace snapmgr
