// Asks the filesystem whether a store file still owns its blocks
// (store_check.hpp).
#include "store_check.hpp"

#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include <fmt/core.h>

#include "snapmgr/device.hpp"
#include "snapmgr/error.hpp"

namespace snapmgr {

namespace fs = std::filesystem;

namespace {

// Options that keep a read-only mount from writing: no journal or log
// replay. Replaying below the wrapper would write blocks no change map
// records; the real mount replays through it.
const char *no_replay_option(const std::string &fs_type)
{
	if (fs_type == "ext4" || fs_type == "ext3" || fs_type == "ext2")
		return "noload";
	if (fs_type == "xfs")
		return "norecovery";
	return nullptr;
}

// The filesystem on a device nobody has mounted, mounted read-only under
// the run directory while this lives.
class ReadOnlyMount {
public:
	ReadOnlyMount(const BlockDevice &device, const char *option)
	{
		const fs::path parent = run_dir();
		fs::create_directories(parent);
		std::string dir = (parent / "check.XXXXXX").string();
		if (!::mkdtemp(dir.data()))
			throw_failure(device, "cannot make a directory to mount it on");
		dir_ = dir;
		const std::string type = device.fs_type == "xfs" ? "xfs" : "ext4";
		if (::mount(device.path.c_str(), dir_.c_str(), type.c_str(),
			    MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, option) < 0) {
			const int e = errno;
			::rmdir(dir_.c_str());
			errno = e;
			throw_failure(device, "cannot mount it read-only to check the store file");
		}
	}
	ReadOnlyMount(const ReadOnlyMount &) = delete;
	ReadOnlyMount &operator=(const ReadOnlyMount &) = delete;
	~ReadOnlyMount()
	{
		if (::umount2(dir_.c_str(), 0) < 0)
			::umount2(dir_.c_str(), MNT_DETACH);
		::rmdir(dir_.c_str());
	}
	const std::string &dir() const noexcept { return dir_; }

private:
	[[noreturn]] static void throw_failure(const BlockDevice &device, const char *what)
	{
		const int e = errno;
		throw DeviceError(device.path, e,
				  fmt::format("{}: {}: {}", device.path, what, std::strerror(e)));
	}
	std::string dir_;
};

} // namespace

std::optional<std::string> store_file_problem(const VolumeConfig &config,
					      const std::string &store_device,
					      std::span<const StoreExtent> recorded)
{
	if (config.store_in_fs.empty())
		return std::nullopt;
	const BlockDevice device = probe_device(store_device);
	const std::vector<MountedOn> mounts = mounts_of(device.major, device.minor);
	if (mounts.empty()) {
		const char *option = no_replay_option(device.fs_type);
		if (!option)
			return std::nullopt;
		try {
			ReadOnlyMount m(device, option);
			return StoreFile::mismatch(m.dir() + config.store_in_fs,
						   config.store.string(), recorded);
		} catch (const Error &e) {
			return e.what();
		}
	}
	// Mounted (a store on another filesystem, or a dm volume taking its
	// wrapper live): any mount showing the directory will do.
	for (const MountedOn &m : mounts) {
		const std::string root = m.fs_root == "/" ? "" : m.fs_root;
		if (config.store_in_fs.rfind(root + "/", 0) != 0)
			continue;
		return StoreFile::mismatch(m.mountpoint + config.store_in_fs.substr(root.size()),
					   config.store.string(), recorded);
	}
	return std::nullopt;
}

} // namespace snapmgr
