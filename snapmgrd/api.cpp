#include "api.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <thread>

#include <fmt/core.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "disk_group.hpp"
#include "inventory.hpp"
#include "snapmgr/device.hpp"
#include "snapmgr/disk.hpp"
#include "snapmgr/error.hpp"
#include "snapmgr/volume.hpp"

namespace snapmgr::agent {
namespace fs = std::filesystem;
using json = nlohmann::json;
using httplib::Request;
using httplib::Response;

namespace {

// A refusal with its HTTP status: 400 bad input, 404 unknown id, 409 wrong
// state, 416 unsatisfiable range.
struct HttpError : std::runtime_error {
	HttpError(int status, const std::string &details) : std::runtime_error(details), status(status) {}
	int status;
};

std::string_view reason(int status)
{
	switch (status) {
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 409: return "Conflict";
	case 416: return "Range Not Satisfiable";
	default: return "Server error";
	}
}

// Labels, names and paths come from the system (or the request) as bytes,
// not always UTF-8: a label that is not must not make the whole answer
// fail, so such bytes become U+FFFD, as the reference's Go encoder does.
std::string text_of(const json &body)
{
	return body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

void send_error(const Request &req, Response &res, int status, const std::string &details)
{
	// httplib would cut an error body to the request's ranges too.
	const_cast<Request &>(req).ranges.clear();
	res.status = status;
	res.set_content(text_of({{"error", reason(status)}, {"details", details}}), "application/json");
}

void send_json(Response &res, const json &body) { res.set_content(text_of(body), "application/json"); }

// Log lines carry request text (paths, ids): control bytes and backslashes
// are escaped (\x0a, \\) so that a request can neither forge a line nor
// send terminal escapes to whoever reads the log.
void log_line(const std::string &text)
{
	std::string line;
	for (const char c : text) {
		const auto byte = static_cast<unsigned char>(c);
		if (byte < 0x20 || byte == 0x7f)
			line += fmt::format("\\x{:02x}", byte);
		else if (c == '\\')
			line += "\\\\";
		else
			line += c;
	}
	fmt::print(stderr, "snapmgrd: {}\n", line);
}

// Runs a handler, turning what it throws into the error response: our
// refusals keep their status, the library's "cannot do that now"
// (UsageError) is 409, anything else is a fault (500).
template <typename F> httplib::Server::Handler serve(F handler)
{
	return [handler](const Request &req, Response &res) {
		try {
			handler(req, res);
		} catch (const HttpError &e) {
			send_error(req, res, e.status, e.what());
		} catch (const json::exception &e) {
			send_error(req, res, 400, fmt::format("invalid request: {}", e.what()));
		} catch (const UsageError &e) {
			send_error(req, res, 409, e.what());
		} catch (const std::exception &e) {
			log_line(fmt::format("{} {}: {}", req.method, req.path, e.what()));
			send_error(req, res, 500, e.what());
		}
	};
}

// A disk id is a whole disk's kernel name ("vdb", "nvme0n1"): checked by
// its characters before it is used in a path, then looked up in sysfs.
void check_disk_id(const std::string &id)
{
	const bool ok = !id.empty() && id.size() <= 64 && id[0] != '.' &&
			std::all_of(id.begin(), id.end(), [](char c) {
				return std::isalnum(static_cast<unsigned char>(c)) || c == '-' ||
				       c == '_' || c == '.' || c == '+';
			});
	if (!ok)
		throw HttpError(400, fmt::format("\"{}\" is not a disk id", id));
	if (!fs::exists(fs::path("/sys/block") / id))
		throw HttpError(404, fmt::format("disk with id {} not found", id));
}

void check_snapshot_id(const std::string &id)
{
	if (!valid_snapshot_id(id))
		throw HttpError(400, fmt::format("\"{}\" is not a snapshot id", id));
}

std::optional<dev_t> device_number(const std::string &path)
{
	struct stat st{};
	if (path.empty() || ::stat(path.c_str(), &st) != 0 || !S_ISBLK(st.st_mode))
		return std::nullopt;
	return st.st_rdev;
}

// The disk a volume tracks: the kernel name of the device its
// configuration names.
std::optional<std::string> disk_of(const VolumeStatus &v)
{
	auto number = device_number(v.config.device);
	if (!number)
		return std::nullopt;
	std::error_code ec;
	fs::path dir = fs::canonical(
		fmt::format("/sys/dev/block/{}:{}", ::major(*number), ::minor(*number)), ec);
	if (ec || fs::exists(dir / "partition"))
		return std::nullopt;
	return dir.filename().string();
}

std::map<std::string, VolumeStatus> volumes_by_disk()
{
	std::map<std::string, VolumeStatus> out;
	for (auto &v : list())
		if (auto disk = disk_of(v))
			out.emplace(*disk, std::move(v));
	return out;
}

// The tracked disk groups (partitioned disks), by disk id.
std::map<std::string, DiskConfig> disk_groups()
{
	std::map<std::string, DiskConfig> out;
	for (auto &d : load_all_disk_configs())
		out.emplace(d.name, std::move(d));
	return out;
}

// The status of each tracked partition of a group; one untracked on its
// own since (snapmgr untrack PARTITION) is left out.
std::vector<VolumeStatus> members_of(const DiskConfig &d)
{
	std::vector<VolumeStatus> out;
	for (const auto &p : d.partitions) {
		if (p.role != PartitionRole::tracked)
			continue;
		try {
			out.push_back(status(p.volume));
		} catch (const UsageError &e) {
			if (e.error_number() != ENOENT)
				throw;
		}
	}
	return out;
}

std::size_t tracked_partitions(const DiskConfig &d)
{
	return std::size_t(std::count_if(d.partitions.begin(), d.partitions.end(), [](const auto &p) {
		return p.role == PartitionRole::tracked;
	}));
}

// Where a group's partitions hold their snapshots now (only those that
// hold an active one).
DiskPosition held_positions(const std::vector<VolumeStatus> &members)
{
	DiskPosition out;
	for (const auto &v : members)
		if (v.kernel && v.kernel->snap_state == SnapState::active)
			if (auto g = parse_uuid(v.kernel->generation))
				out[v.name] = Position{*g, v.kernel->snap_epoch};
	return out;
}

json device_json(const std::string &path)
{
	auto number = device_number(path);
	return {{"device_path", path},
		{"major", number ? ::major(*number) : 0},
		{"minor", number ? ::minor(*number) : 0}};
}

// What a recorded snapshot's volume holds now: "active" while the volume
// holds the recorded epoch of the recorded generation, "invalid" when that
// snapshot was invalidated (store full, store error), "gone" when it was
// released or the volume is not attached.
std::string state_of(const RecordedDisk &d, const VolumeStatus &v)
{
	if (!v.kernel || v.kernel->generation != d.generation || v.kernel->snap_epoch != d.epoch)
		return "gone";
	return v.kernel->snap_state == SnapState::active ? "active" : "invalid";
}

// A recorded disk group's snapshot: "active" while every partition holds
// the recorded group position, "invalid" when one's was invalidated,
// "gone" otherwise (released, taken again, the group untracked).
std::string group_state(const RecordedDisk &d)
{
	auto group = load_disk_config(d.disk);
	if (!group)
		return "gone";
	const auto members = members_of(*group);
	for (const auto &v : members)
		if (v.kernel && v.kernel->snap_state == SnapState::invalid)
			return "invalid";
	const DiskPosition held = held_positions(members);
	const GroupPosition now = group_position(held);
	if (held.size() != tracked_partitions(*group) || now.generation != d.generation ||
	    now.number != d.epoch || !disk_snapshot_held(d.disk))
		return "gone";
	return "active";
}

// A recorded volume's status, or an empty one (no kernel status, so its
// snapshot is "gone") when it was untracked since.
VolumeStatus status_of(const RecordedDisk &d)
{
	try {
		return status(d.volume);
	} catch (const UsageError &e) {
		if (e.error_number() != ENOENT)
			throw;
		VolumeStatus none;
		none.name = d.volume;
		return none;
	}
}

json snapshot_json(const SnapshotRecord &r)
{
	json volumes = json::array();
	for (const auto &d : r.disks) {
		if (d.volume.empty()) { // a disk group: no one device holds its image
			json original = device_json("/dev/" + d.disk);
			original["tracking_id"] = d.disk;
			volumes.push_back({{"snapshot_number", d.epoch},
					   {"generation_id", d.generation},
					   {"original_device", original},
					   {"snapshot_image", device_json("")},
					   {"state", group_state(d)}});
			continue;
		}
		VolumeStatus v = status_of(d);
		json original = device_json(v.config.device);
		original["tracking_id"] = d.disk;
		volumes.push_back({{"snapshot_number", d.epoch},
				   {"generation_id", d.generation},
				   {"original_device", original},
				   {"snapshot_image", device_json(v.image)},
				   {"state", state_of(d, v)}});
	}
	return {{"snapshot_id", r.id}, {"volume_snapshots", volumes}};
}

// A disk of a recorded snapshot, and its volume's status now.
struct Held {
	RecordedDisk disk;
	VolumeStatus volume;
};

// The held snapshot of disk in record r, or 404 when r does not cover the
// disk, 409 when its volume no longer holds it.
Held held(const SnapshotRecord &r, const std::string &disk)
{
	auto d = std::find_if(r.disks.begin(), r.disks.end(),
			      [&disk](const auto &x) { return x.disk == disk; });
	if (d == r.disks.end())
		throw HttpError(404, fmt::format("could not find volume snapshot for {}", disk));
	if (d->volume.empty()) {
		const std::string state = group_state(*d);
		if (state != "active")
			throw HttpError(409, fmt::format("the snapshot of {} is {}", disk, state));
		return {*d, {}};
	}
	VolumeStatus v = status_of(*d);
	const std::string state = state_of(*d, v);
	if (state != "active" || v.image.empty())
		throw HttpError(409, fmt::format("the snapshot of {} is {}{}", disk, state,
						 v.kernel && !v.kernel->invalid_reason.empty()
							 ? " (" + v.kernel->invalid_reason + ")"
							 : ""));
	return {*d, std::move(v)};
}

bool flag(const Request &req, const std::string &name)
{
	const std::string v = req.get_param_value(name.c_str());
	return v == "1" || v == "t" || v == "T" || v == "true" || v == "TRUE" || v == "True";
}

std::uint64_t number_param(const Request &req, const char *name)
{
	const std::string v = req.get_param_value(name);
	if (v.empty())
		return 0;
	std::uint64_t n = 0;
	auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
	if (ec != std::errc() || end != v.data() + v.size())
		throw HttpError(400, fmt::format("{}={} is not a number", name, v));
	return n;
}

// The request's byte ranges made absolute and within size, without the
// ones that do not overlap it (RFC 9110 14.1.2): 416 when none does. Empty
// (send the whole) without a Range header, and when the ranges together
// ask for more than the whole, as the reference does, so that a request
// cannot make the agent send a device many times over.
std::vector<ByteRange> wanted_ranges(const Request &req, std::uint64_t size)
{
	std::vector<ByteRange> out;
	std::uint64_t total = 0;
	for (auto [first, last] : req.ranges) {
		if (first < 0) { // "-N": the last N bytes
			if (last <= 0 || size == 0)
				continue;
			first = ssize_t(size - std::min<std::uint64_t>(std::uint64_t(last), size));
			last = ssize_t(size) - 1;
		} else {
			if (std::uint64_t(first) >= size || (last >= 0 && last < first))
				continue;
			if (last < 0 || std::uint64_t(last) >= size)
				last = ssize_t(size) - 1;
		}
		out.push_back({std::uint64_t(first), std::uint64_t(last - first + 1)});
		total += out.back().length;
	}
	if (!req.ranges.empty() && out.empty())
		throw HttpError(416, fmt::format("no range overlaps the image's {} bytes", size));
	return total > size ? std::vector<ByteRange>{} : out;
}

// What a response body is made of: text (multipart headers) and ranges of
// the image, in order.
struct Piece {
	std::string text;
	ByteRange data;
	std::uint64_t size() const { return text.empty() ? data.length : text.size(); }
};

struct Body {
	std::vector<Piece> pieces;
	std::string type = "application/octet-stream";
};

// The whole image, one range, or a multipart/byteranges body of several.
Body body_of(Response &res, const std::vector<ByteRange> &ranges, std::uint64_t size)
{
	const auto content_range = [size](const ByteRange &r) {
		return fmt::format("bytes {}-{}/{}", r.start, r.start + r.length - 1, size);
	};
	if (ranges.empty())
		return {{{"", {0, size}}}};
	res.status = 206;
	if (ranges.size() == 1) {
		res.set_header("Content-Range", content_range(ranges[0]));
		return {{{"", ranges[0]}}};
	}
	std::random_device random;
	const std::string boundary = fmt::format("snapmgrd-{:016x}{:08x}", std::uint64_t(random()) << 32 | random(), random());
	Body body{{}, "multipart/byteranges; boundary=" + boundary};
	for (const auto &r : ranges) {
		body.pieces.push_back({fmt::format("\r\n--{}\r\nContent-Type: application/octet-stream\r\n"
					      "Content-Range: {}\r\n\r\n",
					      boundary, content_range(r)),
				  {}});
		body.pieces.push_back({"", r});
	}
	body.pieces.push_back({fmt::format("\r\n--{}--\r\n", boundary), {}});
	return body;
}

// What a download reads: an image device, or a disk group's image made of
// several (DiskImageReader). read() answers as pread does.
struct ImageSource {
	std::string name;
	std::uint64_t size = 0;
	std::function<ssize_t(char *, std::size_t, std::uint64_t)> read;
};

ImageSource device_source(const std::string &image)
{
	int raw = ::open(image.c_str(), O_RDONLY | O_CLOEXEC);
	if (raw < 0)
		throw Error(image, errno, fmt::format("{}: {}", image, std::strerror(errno)));
	auto fd = std::shared_ptr<int>(new int(raw), [](int *p) {
		::close(*p);
		delete p;
	});
	const off_t end = ::lseek(*fd, 0, SEEK_END);
	if (end < 0)
		throw Error(image, errno, fmt::format("{}: {}", image, std::strerror(errno)));
	return {image, std::uint64_t(end), [fd](char *buffer, std::size_t n, std::uint64_t at) {
			return ::pread(*fd, buffer, n, off_t(at));
		}};
}

ImageSource disk_group_source(const std::string &disk)
{
	auto reader = std::make_shared<const DiskImageReader>(disk);
	return {disk, reader->size(), [reader, disk](char *buffer, std::size_t n, std::uint64_t at) {
			try {
				return ssize_t(reader->read(reinterpret_cast<std::uint8_t *>(buffer), n, at));
			} catch (const std::exception &e) {
				log_line(fmt::format("disk {}: {}", disk, e.what()));
				errno = EIO;
				return ssize_t(-1);
			}
		}};
}

// Streams the image: ranges are answered here, not by httplib (its
// multipart parts give the total size as 0 when the body comes from a
// provider). Reads are 1 MiB at most, so a download holds 1 MiB however
// large the range; each download has its own descriptors and no lock, so
// any number run at once.
void stream_image(const Request &req, Response &res, ImageSource source)
{
	const std::uint64_t size = source.size;
	res.set_header("Accept-Ranges", "bytes");
	std::vector<ByteRange> ranges;
	try {
		ranges = wanted_ranges(req, size);
	} catch (const HttpError &) {
		res.set_header("Content-Range", fmt::format("bytes */{}", size));
		throw;
	}
	// The request object is the server's own, not const: without its
	// ranges httplib sends the body as it is given.
	const_cast<Request &>(req).ranges.clear();
	Body body = body_of(res, ranges, size);
	auto pieces = std::make_shared<std::vector<Piece>>(std::move(body.pieces));
	std::uint64_t length = 0;
	for (const auto &p : *pieces)
		length += p.size();
	auto buffer = std::make_shared<std::vector<char>>(std::size_t(1) << 20);
	auto from = std::make_shared<ImageSource>(std::move(source));
	res.set_content_provider(
		length, body.type,
		[from, buffer, pieces](std::size_t offset, std::size_t want, httplib::DataSink &sink) {
			std::uint64_t at = offset;
			auto p = pieces->begin();
			for (; p != pieces->end() && at >= p->size(); ++p)
				at -= p->size();
			if (p == pieces->end())
				return false;
			const std::size_t n = std::size_t(std::min<std::uint64_t>({want, p->size() - at, buffer->size()}));
			if (!p->text.empty())
				return sink.write(p->text.data() + at, n);
			const ssize_t got = from->read(buffer->data(), n, p->data.start + at);
			if (got <= 0) {
				log_line(fmt::format("reading {} at {}: {}", from->name, p->data.start + at,
						     got < 0 ? std::strerror(errno) : "end of device"));
				return false; // the connection is closed: the client sees it short
			}
			return sink.write(buffer->data(), std::size_t(got));
		});
}

// The disks a snapshot request names: none when the body is empty, has no
// "tracked_disk_ids", or it is null or [] (the client's "every disk").
std::vector<std::string> disks_asked(const std::string &body)
{
	if (body.find_first_not_of(" \t\r\n") == std::string::npos)
		return {};
	const json request = json::parse(body);
	if (!request.is_object())
		throw HttpError(400, "the request is not a JSON object");
	const auto it = request.find("tracked_disk_ids");
	if (it == request.end() || it->is_null())
		return {};
	return it->get<std::vector<std::string>>();
}

// The changes of a disk group's snapshot since an earlier one of the same
// group (its generation_id and snapshot_number): each partition's at its
// offset, and every time what no partition tracks (DiskChanges).
json group_changes(const RecordedDisk &d, const std::string &snapshot_id,
		   const std::string &generation, std::uint64_t number)
{
	const auto group = load_disk_config(d.disk);
	if (!group)
		throw HttpError(409, fmt::format("disk {} is not tracked any more", d.disk));
	const DiskPosition now = held_positions(members_of(*group));
	std::optional<DiskPosition> since;
	std::string reason;
	if (!generation.empty() && number > 0) {
		since = members_at({generation, number}, now);
		if (!since)
			reason = "the disk's partitions changed generation or were snapshotted apart "
				 "since that snapshot";
	}
	const DiskChanges c = disk_changes(d.disk, since.value_or(DiskPosition{}));
	if (group_position(c.now).generation != d.generation || group_position(c.now).number != d.epoch)
		throw HttpError(409, fmt::format("{} no longer holds this snapshot", d.disk));
	// Full unless every partition is incremental: then one range covers
	// the whole disk, swap included, as for a disk without partitions.
	bool full = !since;
	std::uint32_t chunk = 0;
	for (const auto &v : c.volumes) {
		if (since && v.set.full && !full)
			reason = fmt::format("{}: {}", v.name, v.set.full_reason);
		full = full || v.set.full;
		chunk = chunk ? std::min(chunk, v.chunk_bytes) : v.chunk_bytes;
	}
	json ranges = json::array();
	for (const auto &range : full ? std::vector<ByteRange>{{0, c.size_bytes}} : c.ranges)
		ranges.push_back({{"start_offset", range.start}, {"length", range.length}});
	json out = {{"tracked_disk_id", d.disk},
		    {"snapshot_id", snapshot_id},
		    {"cbt_block_size_bytes", chunk},
		    {"backup_type", full ? "full" : "incremental"},
		    {"ranges", ranges}};
	if (full && !reason.empty())
		out["full_backup_reason"] = reason;
	return out;
}

} // namespace

void Agent::release_when_closed(const std::function<void()> &release)
{
	// A download of the image keeps it open; the reference's DELETE waits
	// for a download to end (it holds the download's lock), so wait too,
	// as long as a stalled reader is given before it is cut.
	const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(config_.write_timeout);
	for (;;) {
		try {
			return release();
		} catch (const UsageError &e) {
			if (e.error_number() != EBUSY || std::chrono::steady_clock::now() >= deadline)
				throw;
		}
		std::this_thread::sleep_for(std::chrono::milliseconds(100));
	}
}

Agent::Agent(AgentConfig config) : config_(std::move(config)), records_(config_.state_dir) {}

void Agent::watch(const std::string &volume)
{
	if (config_.growth_step == 0)
		return;
	{
		std::lock_guard<std::mutex> lock(watchers_lock_);
		if (!watchers_.insert(volume).second)
			return;
	}
	std::thread([this, volume] {
		MonitorOptions options;
		options.step_bytes = config_.growth_step;
		options.report = [](const MonitorReport &r) { log_line(r.text); };
		try {
			monitor(volume, options);
		} catch (const std::exception &e) {
			log_line(fmt::format("{}: store growth watcher: {}", volume, e.what()));
		}
		std::lock_guard<std::mutex> lock(watchers_lock_);
		watchers_.erase(volume);
	}).detach();
}

TrackResult Agent::map(const std::string &disk, const fs::path &location)
{
	TrackOptions options;
	options.device = "/dev/" + disk;
	options.name = disk;
	options.store = location / (disk + ".snapstore");
	options.store_bytes = config_.store_bytes;
	TrackResult r = track(options);
	log_line(fmt::format("{}: {} (store {})", disk, to_string(r.outcome), options.store->string()));
	if (r.outcome == TrackOutcome::tracking)
		watch(r.name);
	return r;
}

DiskConfig Agent::map_disk(const std::string &disk, const fs::path &location)
{
	TrackOptions options;
	options.device = "/dev/" + disk;
	options.store = location;
	options.store_bytes = config_.store_bytes;
	DiskTrackResult r = track_disk(options);
	for (const auto &v : r.volumes) {
		log_line(fmt::format("{}: partition {}: {} (store {})", disk, v.name, to_string(v.outcome),
				     v.config.store.string()));
		if (v.outcome == TrackOutcome::tracking)
			watch(v.name);
	}
	return r.disk;
}

bool Agent::mapped(const VolumeStatus &v) const
{
	return std::count(config_.locations.begin(), config_.locations.end(),
			  v.config.store.parent_path()) > 0;
}

void Agent::start()
{
	auto tracked = volumes_by_disk();
	auto groups = disk_groups();
	for (const auto &m : config_.mappings) {
		if (tracked.count(m.device) || groups.count(m.device))
			continue;
		try {
			if (is_partitioned_disk("/dev/" + m.device))
				map_disk(m.device, m.location);
			else
				map(m.device, m.location);
		} catch (const std::exception &e) {
			log_line(fmt::format("snapstore_mapping of {}: {}", m.device, e.what()));
		}
	}
	auto watched = [](const VolumeStatus &v) {
		return v.state == VolumeState::tracking || v.state == VolumeState::lost;
	};
	for (const auto &[disk, v] : volumes_by_disk())
		if (mapped(v) && watched(v))
			watch(v.name);
	for (const auto &[disk, d] : disk_groups())
		for (const auto &v : members_of(d))
			if (watched(v))
				watch(v.name);
}

void Agent::install(httplib::Server &server)
{
	const std::string api = "/api/v1";

	// Which disk ids are tracked, and which devices hold store locations
	// (never listed, never tracked).
	auto filter = [this](const Request &req) {
		DiskFilter f;
		f.include_virtual = flag(req, "includeVirtual");
		f.include_swap = flag(req, "includeSwap");
		for (const auto &l : config_.locations) {
			auto under = devices_under(l);
			f.store_devices.insert(under.begin(), under.end());
		}
		auto tracked = std::make_shared<std::set<dev_t>>();
		for (const auto &[disk, v] : volumes_by_disk())
			if (auto n = device_number(v.config.device))
				tracked->insert(*n);
		for (const auto &[disk, d] : disk_groups())
			if (auto n = device_number(d.device))
				tracked->insert(*n);
		f.tracked_id = [tracked](const BlockDevice &d) {
			return tracked->count(::makedev(d.major, d.minor)) ? d.kernel_name : "";
		};
		return f;
	};

	server.Get(api + "/disks/?", serve([filter](const Request &req, Response &res) {
			   send_json(res, disks_json(filter(req)));
		   }));

	server.Get(api + "/disks/([^/]+)/?", serve([this, filter](const Request &req, Response &res) {
			   const std::string id = req.matches[1];
			   check_disk_id(id);
			   if (!volumes_by_disk().count(id) && !disk_groups().count(id))
				   throw HttpError(404, fmt::format("disk with id {} not found (not tracked)", id));
			   DiskFilter f = filter(req);
			   f.include_virtual = f.include_swap = true;
			   for (const auto &d : disks_json(f))
				   if (d.value("id", "") == id)
					   return send_json(res, d);
			   throw HttpError(404, fmt::format("disk with id {} not found", id));
		   }));

	server.Get(api + "/snapstorelocations/?", serve([this](const Request &, Response &res) {
			   const auto volumes = list();
			   json out = json::array();
			   for (const auto &l : config_.locations) {
				   struct statvfs vfs{};
				   if (::statvfs(l.c_str(), &vfs) != 0)
					   throw Error(l, errno, fmt::format("{}: {}", l.string(), std::strerror(errno)));
				   std::uint64_t allocated = 0;
				   for (const auto &v : volumes)
					   if (v.config.store.parent_path() == l)
						   allocated += v.store_size_bytes;
				   MountedOn m = mount_of(l);
				   out.push_back({{"available_capacity", std::uint64_t(vfs.f_bavail) * vfs.f_frsize},
						  {"allocated_capacity", allocated},
						  {"total_capacity", std::uint64_t(vfs.f_blocks) * vfs.f_frsize},
						  {"path", l.string()},
						  {"device_path", device_node(fmt::format("{}:{}", m.major, m.minor))},
						  {"major", m.major},
						  {"minor", m.minor}});
			   }
			   send_json(res, out);
		   }));

	auto mapping_json = [](const std::string &disk, const VolumeStatus &v) {
		return json{{"id", format_uuid(v.config.store_uuid)},
			    {"tracked_disk_id", disk},
			    {"storage_location", v.config.store.parent_path().string()},
			    {"state", to_string(v.state)}};
	};
	// A disk group's mapping is its first tracked partition's store (each
	// has its own: on itself when mounted, in the location otherwise), in
	// the first state of its partitions that is not tracking.
	auto group_mapping_json = [mapping_json](const DiskConfig &d) {
		const auto members = members_of(d);
		if (members.empty())
			return json();
		json out = mapping_json(d.name, members.front());
		if (members.size() != tracked_partitions(d))
			out["state"] = "detached"; // a partition was untracked on its own
		for (const auto &v : members)
			if (v.state != VolumeState::tracking) {
				out["state"] = to_string(v.state);
				break;
			}
		return out;
	};

	server.Get(api + "/snapstoremappings/?", serve([this, mapping_json, group_mapping_json](const Request &, Response &res) {
			   json out = json::array();
			   for (const auto &[disk, v] : volumes_by_disk())
				   if (mapped(v))
					   out.push_back(mapping_json(disk, v));
			   for (const auto &[disk, d] : disk_groups())
				   if (json m = group_mapping_json(d); !m.is_null())
					   out.push_back(m);
			   send_json(res, out);
		   }));

	// Each mapped volume has one store (the reference's snap store):
	// its size now and what the held snapshot uses of it.
	server.Get(api + "/snapstores/?", serve([this](const Request &, Response &res) {
			   json out = json::array();
			   for (const auto &[disk, v] : volumes_by_disk())
				   if (mapped(v))
					   out.push_back({{"id", format_uuid(v.config.store_uuid)},
							  {"tracked_disk_id", disk},
							  {"storage_location", v.config.store.parent_path().string()},
							  {"allocated_disk_space", v.store_size_bytes},
							  {"used_disk_space", v.store_used_bytes}});
			   for (const auto &[disk, d] : disk_groups()) {
				   const auto members = members_of(d);
				   if (members.empty())
					   continue;
				   std::uint64_t allocated = 0, used = 0;
				   for (const auto &v : members) {
					   allocated += v.store_size_bytes;
					   used += v.store_used_bytes;
				   }
				   out.push_back({{"id", format_uuid(members.front().config.store_uuid)},
						  {"tracked_disk_id", disk},
						  {"storage_location",
						   members.front().config.store.parent_path().string()},
						  {"allocated_disk_space", allocated},
						  {"used_disk_space", used}});
			   }
			   send_json(res, out);
		   }));

	server.Post(api + "/snapstoremappings/?", serve([this, mapping_json, group_mapping_json](const Request &req, Response &res) {
			    const json body = json::parse(req.body);
			    const std::string location = body.at("snapstore_location_id").get<std::string>();
			    const std::string disk = body.at("tracked_disk_id").get<std::string>();
			    if (location.empty() || disk.empty())
				    throw HttpError(400, "snapstore_location_id and tracked_disk_id are required");
			    if (!std::count(config_.locations.begin(), config_.locations.end(), fs::path(location)))
				    throw HttpError(404, fmt::format("store location {} not found", location));
			    check_disk_id(disk);
			    std::lock_guard<std::mutex> lock(change_);
			    auto tracked = volumes_by_disk();
			    if (auto it = tracked.find(disk); it != tracked.end())
				    throw HttpError(409, fmt::format("disk {} already has a snap store mapping: {}",
								     disk, format_uuid(it->second.config.store_uuid)));
			    if (disk_groups().count(disk))
				    throw HttpError(409, fmt::format("disk {} already has a snap store mapping "
								     "(its partitions are tracked)",
								     disk));
			    for (const auto &l : config_.locations)
				    if (devices_under(l).count(disk))
					    throw HttpError(409, fmt::format("disk {} holds the store location {}",
									     disk, l.string()));
			    if (is_partitioned_disk("/dev/" + disk))
				    return send_json(res, group_mapping_json(map_disk(disk, location)));
			    TrackResult r = map(disk, location);
			    send_json(res, mapping_json(disk, status(r.name)));
		    }));

	server.Post(api + "/snapshots/?", serve([this](const Request &req, Response &res) {
			    const std::vector<std::string> asked = disks_asked(req.body);
			    std::set<std::string> seen;
			    for (const auto &d : asked) {
				    check_disk_id(d);
				    if (!seen.insert(d).second)
					    throw HttpError(400, fmt::format("disk {} is named twice", d));
			    }
			    std::lock_guard<std::mutex> lock(change_);
			    auto tracked = volumes_by_disk();
			    auto groups = disk_groups();
			    // No list: every disk that has an id and can be
			    // snapshotted now, as the reference snapshots every
			    // tracked disk (a disk group when all its partitions are
			    // attached).
			    std::vector<std::string> disks = asked;
			    if (disks.empty()) {
				    for (const auto &[disk, v] : tracked)
					    if (v.kernel)
						    disks.push_back(disk);
				    for (const auto &[disk, d] : groups) {
					    const auto members = members_of(d);
					    if (members.size() == tracked_partitions(d) &&
						std::all_of(members.begin(), members.end(),
							    [](const auto &v) { return v.kernel.has_value(); }))
						    disks.push_back(disk);
				    }
				    if (disks.empty())
					    throw HttpError(409, "no disk is tracked: map one to a store location first");
			    }
			    // Each disk's volume, or its group's partitions.
			    std::vector<std::string> names, group_names;
			    std::vector<VolumeStatus> volumes;
			    for (const auto &d : disks) {
				    if (auto g = groups.find(d); g != groups.end()) {
					    group_names.push_back(d);
					    for (auto &v : members_of(g->second))
						    volumes.push_back(std::move(v));
					    continue;
				    }
				    auto it = tracked.find(d);
				    if (it == tracked.end())
					    throw HttpError(404, fmt::format("disk {} is not tracked: map it to a "
									     "store location first",
									     d));
				    names.push_back(it->second.name);
				    volumes.push_back(it->second);
			    }
			    // A volume that lost track of changes cannot give an
			    // incremental snapshot; the reference answers with a new
			    // generation (the client's next backup is full), so do
			    // what snapmgr reset does instead of refusing. One that
			    // still holds a snapshot is left to snapshot()'s refusal
			    // (409): its generation must not change under that
			    // snapshot, and the client deletes it first.
			    for (const VolumeStatus &v : volumes)
				    if (v.state == VolumeState::lost && v.kernel && v.kernel->snap_state == SnapState::none) {
					    reset(v.name);
					    log_line(fmt::format("{}: tracking was lost: new generation started, "
								 "the next backup is full",
								 v.name));
				    }
			    SnapshotRecord record{records_.new_id(), {}};
			    // The library answers per volume, in its own order: pair
			    // each disk with its volume's result by name, never by place.
			    SnapshotManyResult all = snapshot_disks(group_names, names);
			    std::map<std::string, SnapshotResult> taken;
			    for (auto &t : all.volumes)
				    taken.emplace(t.name, std::move(t));
			    std::map<std::string, GroupPosition> group_taken;
			    for (const auto &g : all.disks) {
				    DiskPosition members;
				    for (const auto &t : g.volumes)
					    members[t.name] = Position{parse_uuid(t.generation).value_or(Uuid{}), t.epoch};
				    group_taken[g.name] = group_position(members);
			    }
			    for (const auto &d : disks) {
				    if (auto g = group_taken.find(d); g != group_taken.end()) {
					    record.disks.push_back({d, "", g->second.generation, g->second.number});
					    continue;
				    }
				    const SnapshotResult &t = taken.at(tracked.at(d).name);
				    record.disks.push_back({d, t.name, t.generation, t.epoch});
			    }
			    try {
				    records_.save(record);
			    } catch (...) {
				    for (const auto &[name, t] : taken)
					    release(name);
				    for (const auto &g : group_names)
					    release_disk(g);
				    throw;
			    }
			    log_line(fmt::format("snapshot {} of {} taken", record.id, fmt::join(disks, ", ")));
			    send_json(res, snapshot_json(record));
		    }));

	server.Get(api + "/snapshots/?", serve([this](const Request &, Response &res) {
			   json out = json::array();
			   for (const auto &r : records_.all())
				   out.push_back(snapshot_json(r));
			   send_json(res, out);
		   }));

	auto record_of = [this](const std::string &id) {
		check_snapshot_id(id);
		auto r = records_.load(id);
		if (!r)
			throw HttpError(404, fmt::format("snapshot {} not found", id));
		return *r;
	};

	// .../{snapshot id}/{changes|consume}/{disk id}/
	auto held_in = [record_of](const Request &req) {
		const SnapshotRecord r = record_of(req.matches[1]);
		check_disk_id(req.matches[2]);
		return held(r, req.matches[2]);
	};

	server.Get(api + "/snapshots/([^/]+)/?", serve([record_of](const Request &req, Response &res) {
			   send_json(res, snapshot_json(record_of(req.matches[1])));
		   }));

	// The reference answers 200 for an id it does not know (deleted
	// already, or never taken): a client's retry or cleanup after a failure
	// must not fail.
	server.Delete(api + "/snapshots/([^/]+)/?", serve([this](const Request &req, Response &res) {
			      const std::string id = req.matches[1];
			      check_snapshot_id(id);
			      std::lock_guard<std::mutex> lock(change_);
			      const auto r = records_.load(id);
			      if (!r) {
				      log_line(fmt::format("snapshot {} not found: nothing to delete", id));
				      return res.set_content("", "application/json");
			      }
			      for (const auto &d : r->disks) {
				      if (d.volume.empty()) {
					      if (group_state(d) != "gone")
						      release_when_closed([&d] { release_disk(d.disk); });
				      } else if (state_of(d, status_of(d)) != "gone") {
					      release_when_closed([&d] { release(d.volume); });
				      }
			      }
			      records_.remove(r->id);
			      log_line(fmt::format("snapshot {} deleted", r->id));
			      res.set_content("", "application/json");
		      }));

	server.Get(api + "/snapshots/([^/]+)/changes/([^/]+)/?",
		   serve([held_in](const Request &req, Response &res) {
			   const RecordedDisk d = held_in(req).disk;
			   const std::string generation = req.get_param_value("previousGenerationID");
			   const std::uint64_t number = number_param(req, "previousNumber");
			   if (!generation.empty() && !parse_uuid(generation))
				   throw HttpError(400, fmt::format("previousGenerationID={} is not a UUID", generation));
			   if (d.volume.empty())
				   return send_json(res, group_changes(d, req.matches[1], generation, number));
			   std::optional<Position> since;
			   if (!generation.empty() && number > 0)
				   since = Position{*parse_uuid(generation), number};
			   const Changes c = changes(d.volume, since);
			   if (c.now.epoch != d.epoch)
				   throw HttpError(409, fmt::format("{} holds epoch {}, not this snapshot's {}",
								    d.disk, c.now.epoch, d.epoch));
			   json ranges = json::array(); // the whole volume when full
			   for (const auto &range : c.set.ranges)
				   ranges.push_back({{"start_offset", range.start}, {"length", range.length}});
			   json out = {{"tracked_disk_id", d.disk},
				       {"snapshot_id", req.matches[1].str()},
				       {"cbt_block_size_bytes", c.chunk_bytes},
				       {"backup_type", c.set.full ? "full" : "incremental"},
				       {"ranges", ranges}};
			   if (c.set.full && since)
				   out["full_backup_reason"] = c.set.full_reason;
			   send_json(res, out);
		   }));

	server.Get(api + "/snapshots/([^/]+)/consume/([^/]+)/?",
		   serve([held_in](const Request &req, Response &res) {
			   const Held h = held_in(req);
			   stream_image(req, res, h.disk.volume.empty() ? disk_group_source(h.disk.disk)
								       : device_source(h.volume.image));
		   }));

	server.Get(api + "/systeminfo/?", serve([filter](const Request &req, Response &res) {
			   send_json(res, system_info(disks_json(filter(req))));
		   }));

	// Unknown paths and methods: the reference's JSON 404.
	server.set_error_handler([](const Request &req, Response &res) {
		if (res.body.empty() && res.status == 404)
			send_error(req, res, 404, "Resource not found");
	});
	server.set_logger([](const Request &req, const Response &res) {
		log_line(fmt::format("{} {} {} {}", req.remote_addr, req.method, req.path, res.status));
	});
}

} // namespace snapmgr::agent
