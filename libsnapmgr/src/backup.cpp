#include "snapmgr/backup.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "aligned_buffer.hpp"
#include "file_descriptor.hpp"
#include "snapmgr/config.hpp"
#include "snapmgr/dm.hpp"
#include "snapmgr/error.hpp"
#include "throw_errno.hpp"
#include "volume_devices.hpp"

namespace snapmgr {

namespace fs = std::filesystem;

namespace {

constexpr std::size_t copy_buffer_bytes = 1 << 20;
constexpr std::uint64_t copy_piece_bytes = 4 << 20;
constexpr unsigned copy_threads = 8;

void write_image_record(const fs::path &image, const ImageRecord &record)
{
	nlohmann::json j = {{"volume", record.volume},
			    {"generation", format_uuid(record.position.generation)},
			    {"epoch", record.position.epoch},
			    {"size_bytes", record.size_bytes},
			    {"complete", record.complete}};
	const std::string text = j.dump(1) + "\n";
	const fs::path path = sidecar_path(image);
	const fs::path temp = path.string() + ".tmp";
	FileDescriptor fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
	if (!fd.valid())
		throw_errno(temp.string(), "cannot write the image record");
	if (::write(fd.get(), text.data(), text.size()) != ssize_t(text.size()) ||
	    ::fsync(fd.get()) < 0)
		throw_errno(temp.string(), "cannot write the image record");
	if (::rename(temp.c_str(), path.c_str()) < 0)
		throw_errno(path.string(), "cannot install the image record");
	fs::path dir = path.parent_path();
	FileDescriptor d(::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
	if (d.valid())
		::fsync(d.get());
}

bool all_zero(const std::uint8_t *p, std::size_t n)
{
	return n == 0 || (p[0] == 0 && std::memcmp(p, p + 1, n - 1) == 0);
}

class Copier {
public:
	Copier(const std::string &source, const fs::path &image, bool fresh)
		: source_name_(source), image_name_(image.string())
	{
		src_ = FileDescriptor(::open(source.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));
		if (!src_.valid())
			throw_errno(source, "cannot open the snapshot image");
		// Direct I/O on the image too: a backup streams far more than the
		// page cache should hold, and buffered writes of it run several
		// times slower than dd's. Filesystems without O_DIRECT (tmpfs) get
		// buffered writes.
		int flags = O_WRONLY | O_CLOEXEC | (fresh ? O_CREAT | O_TRUNC : 0);
		dst_ = FileDescriptor(::open(image.c_str(), flags | O_DIRECT, 0600));
		if (!dst_.valid() && errno == EINVAL)
			dst_ = FileDescriptor(::open(image.c_str(), flags, 0600));
		if (!dst_.valid())
			throw_errno(image_name_, "cannot open the backup image");
		if (fresh && ::fchmod(dst_.get(), 0600) < 0)
			throw_errno(image_name_, "cannot set mode 0600");
		fresh_ = fresh;
	}

	void set_size(std::uint64_t bytes)
	{
		if (::ftruncate(dst_.get(), off_t(bytes)) < 0)
			throw_errno(image_name_, "cannot size the backup image");
	}

	// A fresh image starts as a hole, so zero blocks need not be written.
	// Safe to call from several threads at once, each with its own buffer.
	void copy(std::uint64_t offset, std::uint64_t length, AlignedBuffer &buffer)
	{
		while (length) {
			std::size_t n = std::size_t(std::min<std::uint64_t>(length, buffer.size()));
			ssize_t got = ::pread(src_.get(), buffer.data(), n, off_t(offset));
			if (got < 0 && errno == EINTR)
				continue;
			if (got <= 0) {
				if (got == 0)
					errno = EIO;
				throw_errno(source_name_, fmt::format("cannot read at byte {}", offset));
			}
			n = std::size_t(got);
			if (!(fresh_ && all_zero(buffer.data(), n))) {
				for (std::size_t done = 0; done < n;) {
					ssize_t w = ::pwrite(dst_.get(), buffer.data() + done, n - done,
							     off_t(offset + done));
					if (w < 0 && errno == EINTR)
						continue;
					if (w < 0 && errno == EINVAL && drop_direct_io())
						continue; // an unaligned tail: buffered
					if (w < 0)
						throw_errno(image_name_,
							    fmt::format("cannot write at byte {}",
									offset + done));
					done += std::size_t(w);
				}
			}
			offset += n;
			length -= n;
		}
	}

	bool drop_direct_io()
	{
		std::lock_guard guard(direct_io_lock_);
		int fl = ::fcntl(dst_.get(), F_GETFL);
		if (fl < 0 || !(fl & O_DIRECT))
			return false;
		return ::fcntl(dst_.get(), F_SETFL, fl & ~O_DIRECT) == 0;
	}

	void sync()
	{
		if (::fsync(dst_.get()) < 0)
			throw_errno(image_name_, "cannot flush the backup image (fsync)");
	}

private:
	std::string source_name_;
	std::string image_name_;
	FileDescriptor src_;
	FileDescriptor dst_;
	bool fresh_ = false;
	std::mutex direct_io_lock_;
};

// Copies the ranges with several reads and writes in flight: an incremental
// backup is thousands of small ranges, and one at a time it waits out every
// device round trip. Ranges are cut into pieces so a full copy spreads too.
void copy_ranges(Copier &copier, const std::vector<ByteRange> &ranges, std::uint64_t total,
		 const std::function<void(std::uint64_t, std::uint64_t)> &progress)
{
	std::vector<ByteRange> pieces;
	for (const auto &r : ranges)
		for (std::uint64_t at = 0; at < r.length; at += copy_piece_bytes)
			pieces.push_back({r.start + at, std::min(copy_piece_bytes, r.length - at)});
	std::atomic<std::size_t> next{0};
	std::mutex lock;
	std::uint64_t done = 0;
	std::exception_ptr failure;
	auto worker = [&] {
		AlignedBuffer buffer(copy_buffer_bytes);
		for (;;) {
			std::size_t i = next++;
			if (i >= pieces.size())
				return;
			try {
				copier.copy(pieces[i].start, pieces[i].length, buffer);
			} catch (...) {
				std::lock_guard guard(lock);
				if (!failure)
					failure = std::current_exception();
				next = pieces.size(); // the others stop too
				return;
			}
			std::lock_guard guard(lock);
			done += pieces[i].length;
			if (progress)
				progress(done, total);
		}
	};
	{
		std::vector<std::jthread> threads;
		for (unsigned t = 0; t < copy_threads; t++)
			threads.emplace_back(worker);
	}
	if (failure)
		std::rethrow_exception(failure);
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
	Copier copier(source, image, result.full);
	if (!image_exists)
		write_image_record(image, rec);
	if (result.full)
		copier.set_size(ch.size_bytes);
	try {
		copy_ranges(copier, ranges, total, options.progress);
		copier.sync();
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
