#include "snapmgr/config.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/core.h>

#include "file_descriptor.hpp"
#include "snapmgr/error.hpp"
#include "throw_errno.hpp"

namespace snapmgr {

namespace fs = std::filesystem;

namespace {

std::string trim(std::string_view s)
{
	auto first = s.find_first_not_of(" \t\r");
	if (first == std::string_view::npos)
		return {};
	auto last = s.find_last_not_of(" \t\r");
	return std::string(s.substr(first, last - first + 1));
}

fs::path volumes_dir() { return config_dir() / "volumes"; }

fs::path config_path(const std::string &name) { return volumes_dir() / (name + ".conf"); }

} // namespace

fs::path run_dir()
{
	const char *dir = std::getenv("SNAPMGR_RUN_DIR");
	return dir && *dir ? fs::path(dir) : fs::path("/run/snapmgr");
}

std::string_view to_string(AttachMode mode) noexcept
{
	return mode == AttachMode::insert ? "insert" : "wrap";
}

void check_volume_name(std::string_view name)
{
	bool ok = !name.empty() && name.size() <= 100 && name[0] != '-' && name[0] != '.';
	for (char c : name)
		ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
			    c == '+' || c == '-');
	if (!ok)
		throw UsageError(std::string(name), EINVAL,
				 fmt::format("'{}' cannot be a volume name: use 1-100 letters, "
					     "digits and ._+- (not first: - or .)",
					     name));
}

std::string format_config(const VolumeConfig &c)
{
	std::string out = "# snapmgr volume, see snapmgr.conf(5). Written by snapmgr track.\n";
	out += fmt::format("name = {}\n", c.name);
	out += fmt::format("device = {}\n", c.device);
	if (!c.device_fs_uuid.empty())
		out += fmt::format("device_fs_uuid = {}\n", c.device_fs_uuid);
	out += fmt::format("mode = {}\n", to_string(c.mode));
	out += fmt::format("store = {}\n", c.store.string());
	if (!c.store_in_fs.empty())
		out += fmt::format("store_in_fs = {}\n", c.store_in_fs);
	out += fmt::format("store_device = {}\n", c.store_on_volume ? "volume" : c.store_device);
	out += fmt::format("store_sb_sector = {}\n", c.sb_sector);
	out += fmt::format("store_uuid = {}\n", format_uuid(c.store_uuid));
	return out;
}

VolumeConfig parse_config(std::string_view text, const std::string &origin)
{
	std::map<std::string, std::string> values;
	std::istringstream in{std::string(text)};
	unsigned lineno = 0;
	for (std::string line; std::getline(in, line);) {
		lineno++;
		std::string t = trim(line);
		if (t.empty() || t[0] == '#')
			continue;
		auto eq = t.find('=');
		if (eq == std::string::npos)
			throw UsageError(origin, EINVAL,
					 fmt::format("{}:{}: expected 'key = value', got '{}'", origin,
						     lineno, t));
		values[trim(t.substr(0, eq))] = trim(t.substr(eq + 1));
	}
	auto take = [&](const char *key) {
		auto it = values.find(key);
		if (it == values.end() || it->second.empty())
			throw UsageError(origin, EINVAL, fmt::format("{}: '{}' is missing", origin, key));
		std::string v = std::move(it->second);
		values.erase(it);
		return v;
	};
	VolumeConfig c;
	c.name = take("name");
	check_volume_name(c.name);
	c.device = take("device");
	if (auto it = values.find("device_fs_uuid"); it != values.end()) {
		c.device_fs_uuid = it->second;
		values.erase(it);
	}
	std::string mode = take("mode");
	if (mode == "insert")
		c.mode = AttachMode::insert;
	else if (mode == "wrap")
		c.mode = AttachMode::wrap;
	else
		throw UsageError(origin, EINVAL,
				 fmt::format("{}: mode '{}' is neither insert nor wrap", origin, mode));
	c.store = take("store");
	if (auto it = values.find("store_in_fs"); it != values.end()) {
		c.store_in_fs = it->second;
		values.erase(it);
		if (c.store_in_fs.front() != '/')
			throw UsageError(origin, EINVAL,
					 fmt::format("{}: store_in_fs '{}' is not an absolute path",
						     origin, c.store_in_fs));
	}
	c.store_device = take("store_device");
	c.store_on_volume = c.store_device == "volume";
	if (c.store_on_volume)
		c.store_device.clear();
	std::string sector = take("store_sb_sector");
	auto [end, ec] = std::from_chars(sector.data(), sector.data() + sector.size(), c.sb_sector);
	if (ec != std::errc() || end != sector.data() + sector.size())
		throw UsageError(origin, EINVAL,
				 fmt::format("{}: store_sb_sector '{}' is not a number", origin, sector));
	std::string uuid = take("store_uuid");
	auto parsed = parse_uuid(uuid);
	if (!parsed)
		throw UsageError(origin, EINVAL,
				 fmt::format("{}: store_uuid '{}' is not a UUID", origin, uuid));
	c.store_uuid = *parsed;
	if (!values.empty())
		throw UsageError(origin, EINVAL,
				 fmt::format("{}: unknown key '{}'", origin, values.begin()->first));
	return c;
}

fs::path config_dir()
{
	const char *dir = std::getenv("SNAPMGR_CONFIG_DIR");
	return dir && *dir ? fs::path(dir) : fs::path("/etc/snapmgr");
}

std::optional<VolumeConfig> load_config(const std::string &name)
{
	check_volume_name(name);
	const fs::path path = config_path(name);
	std::ifstream in(path);
	if (!in) {
		if (errno == ENOENT)
			return std::nullopt;
		throw_errno(path.string(), "cannot read the volume configuration");
	}
	std::stringstream text;
	text << in.rdbuf();
	VolumeConfig c = parse_config(text.str(), path.string());
	if (c.name != name)
		throw UsageError(path.string(), EINVAL,
				 fmt::format("{} configures volume '{}', not '{}'", path.string(),
					     c.name, name));
	return c;
}

void write_file_durably(const fs::path &path, std::string_view text, unsigned mode)
{
	const fs::path temp = path.string() + ".tmp";
	{
		FileDescriptor fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
		if (!fd.valid())
			throw_errno(temp.string(), "cannot write");
		if (::write(fd.get(), text.data(), text.size()) != ssize_t(text.size()) ||
		    ::fsync(fd.get()) < 0) {
			int e = errno;
			::unlink(temp.c_str());
			errno = e;
			throw_errno(temp.string(), "cannot write");
		}
	}
	if (::rename(temp.c_str(), path.c_str()) < 0) {
		int e = errno;
		::unlink(temp.c_str());
		errno = e;
		throw_errno(path.string(), "cannot install");
	}
	const fs::path dir = path.parent_path();
	FileDescriptor d(::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
	if (d.valid())
		::fsync(d.get());
}

void save_config(const VolumeConfig &config)
{
	check_volume_name(config.name);
	const fs::path dir = volumes_dir();
	std::error_code ec;
	fs::create_directories(dir, ec);
	if (ec)
		throw DeviceError(dir.string(), ec.value(),
				  fmt::format("cannot create {}: {}", dir.string(), ec.message()));
	write_file_durably(config_path(config.name), format_config(config), 0600);
}

void remove_config(const std::string &name)
{
	const fs::path path = config_path(name);
	if (::unlink(path.c_str()) < 0 && errno != ENOENT)
		throw_errno(path.string(), "cannot remove the volume configuration");
}

std::vector<VolumeConfig> load_all_configs()
{
	std::vector<VolumeConfig> configs;
	std::error_code ec;
	for (const auto &entry : fs::directory_iterator(volumes_dir(), ec)) {
		const fs::path &p = entry.path();
		if (p.extension() != ".conf")
			continue;
		if (auto c = load_config(p.stem().string()))
			configs.push_back(std::move(*c));
	}
	std::sort(configs.begin(), configs.end(),
		  [](const VolumeConfig &a, const VolumeConfig &b) { return a.name < b.name; });
	return configs;
}

VolumeLock::VolumeLock(const std::string &name)
{
	check_volume_name(name);
	const fs::path dir = run_dir();
	std::error_code ec;
	fs::create_directories(dir, ec);
	const fs::path path = dir / (name + ".lock");
	fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd_ < 0)
		throw_errno(path.string(), "cannot open the volume lock");
	while (::flock(fd_, LOCK_EX) < 0) {
		if (errno == EINTR)
			continue;
		int e = errno;
		::close(fd_);
		errno = e;
		throw_errno(path.string(), "cannot lock the volume");
	}
}

VolumeLock::VolumeLock(VolumeLock &&other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

VolumeLock::~VolumeLock()
{
	if (fd_ >= 0)
		::close(fd_);
}

} // namespace snapmgr
