// snapmgr doctor: what the next boot needs, checked before the reboot. A
// volume the next boot cannot attach is given back untracked and its next
// backup is full; the checks here find each cause of that which can be seen
// beforehand: no module for a kernel the machine may boot, an initramfs
// without snapmgr or with an old configuration of a volume it attaches,
// udev rules missing, a volume that boot already had to give back.
#include "command.hpp"

#include <stdlib.h>
#include <sys/utsname.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "process.hpp"
#include "snapmgr/config.hpp"

namespace snapmgr::cli {

namespace {

namespace fs = std::filesystem;

enum class Verdict { ok, warning, problem };

std::string_view to_string(Verdict v)
{
	switch (v) {
	case Verdict::ok:
		return "ok";
	case Verdict::warning:
		return "warning";
	case Verdict::problem:
		return "problem";
	}
	return "?";
}

struct Check {
	std::string subject;
	Verdict verdict;
	std::string detail;
};

std::string read_file(const fs::path &path)
{
	std::ifstream in(path);
	std::ostringstream text;
	text << in.rdbuf();
	return text.str();
}

std::string running_release()
{
	struct utsname u {};
	::uname(&u);
	return u.release;
}

// Kernels the machine can boot: a /boot/vmlinuz-R with /lib/modules/R. The
// newest first: it is the one a Debian boot loader starts by default.
std::vector<std::string> installed_kernels()
{
	std::vector<std::string> kernels;
	std::error_code ec;
	for (const auto &entry : fs::directory_iterator("/boot", ec)) {
		std::string name = entry.path().filename();
		if (name.rfind("vmlinuz-", 0) != 0)
			continue;
		std::string release = name.substr(std::strlen("vmlinuz-"));
		if (fs::is_directory("/lib/modules/" + release))
			kernels.push_back(release);
	}
	std::sort(kernels.begin(), kernels.end(), [](const std::string &a, const std::string &b) {
		return ::strverscmp(a.c_str(), b.c_str()) > 0;
	});
	return kernels;
}

// The module file for a kernel, as modprobe finds it; empty when none (or
// when the index still names a file that is gone).
std::string module_file(const std::string &release)
{
	std::string path;
	if (run_program({"modinfo", "-k", release, "-F", "filename", "dm-cowfile"}, &path) != 0)
		return {};
	path = path.substr(0, path.find('\n'));
	return fs::exists(path) ? path : std::string();
}

std::string module_srcversion(const std::string &release)
{
	std::string v;
	if (run_program({"modinfo", "-k", release, "-F", "srcversion", "dm-cowfile"}, &v) != 0)
		return {};
	return v.substr(0, v.find('\n'));
}

// The volume the root filesystem is on, if any: mounted from its wrapper,
// or (tracked from the next boot) from its device. The initramfs must
// attach it.
std::string root_volume(const std::vector<VolumeStatus> &volumes)
{
	std::ifstream mounts("/proc/self/mounts");
	std::string source, target, rest;
	while (mounts >> source >> target && std::getline(mounts, rest)) {
		if (target != "/")
			continue;
		std::error_code ec;
		const fs::path dev = fs::canonical(source, ec);
		if (ec)
			continue;
		for (const auto &v : volumes)
			for (const std::string &path : {v.device, v.origin, v.config.device})
				if (!path.empty() && fs::canonical(path, ec) == dev)
					return v.name;
	}
	return {};
}

void check_module(std::vector<Check> &checks, bool volumes_configured)
{
	const std::string running = running_release();
	const std::string file = module_file(running);
	const bool loaded = fs::exists("/sys/module/dm_cowfile");
	if (file.empty()) {
		checks.push_back({"module", volumes_configured ? Verdict::problem : Verdict::warning,
				  fmt::format("no dm-cowfile module for the running kernel {}{}", running,
					      loaded ? " (one is loaded: its file was removed)" : "")});
		return;
	}
	if (!loaded) {
		checks.push_back({"module", Verdict::ok,
				  fmt::format("{} for the running kernel {}, not loaded (no volume attached)",
					      file, running)});
		return;
	}
	std::string loaded_version = read_file("/sys/module/dm_cowfile/srcversion");
	loaded_version = loaded_version.substr(0, loaded_version.find('\n'));
	if (loaded_version != module_srcversion(running)) {
		checks.push_back({"module", Verdict::warning,
				  fmt::format("the loaded dm-cowfile is not {} (another build, srcversion {}): "
					      "the installed one is used from the next boot",
					      file, loaded_version)});
		return;
	}
	checks.push_back({"module", Verdict::ok,
			  fmt::format("{} loaded, for the running kernel {}", file, running)});
}

// Each kernel the machine can boot has the module; the one a boot starts by
// default (the newest) above all.
void check_kernels(std::vector<Check> &checks, const std::vector<std::string> &kernels,
		   bool volumes_configured)
{
	for (const auto &release : kernels) {
		const bool next = &release == &kernels.front();
		std::string subject = fmt::format("kernel {}{}", release, next ? " (default boot)" : "");
		std::string file = module_file(release);
		if (!file.empty()) {
			checks.push_back({subject, Verdict::ok, file});
			continue;
		}
		checks.push_back(
			{subject, volumes_configured ? Verdict::problem : Verdict::warning,
			 fmt::format("no dm-cowfile module: a boot of this kernel gives back {} and the next "
				     "backups are full; install linux-headers-{} so that DKMS builds it (or "
				     "`dkms autoinstall -k {}`), then rebuild its initramfs",
				     volumes_configured ? "every volume" : "any volume tracked by then",
				     release, release)});
	}
}

// An initramfs unpacked into a private folder, removed with it: one
// decompression for all the files looked at (`lsinitrd -f` decompresses the
// whole image for each file, a minute of doctor's time on a slow machine).
class UnpackedInitramfs {
public:
	explicit UnpackedInitramfs(const fs::path &image)
	{
		std::error_code ec;
		fs::path tmp = fs::temp_directory_path(ec); // $TMPDIR when it is a folder
		std::string dir = ((ec ? fs::path("/tmp") : tmp) / "snapmgr-doctor.XXXXXX").string();
		if (!::mkdtemp(dir.data()))
			return;
		root_ = dir;
		// Its exit status is cpio's, which fails for a device node it
		// may not make: an empty folder is what says it could not unpack.
		std::string ignored;
		run_program({"lsinitrd", "--unpack", image}, &ignored, root_);
		unpacked_ = !fs::is_empty(root_, ec) && !ec;
	}
	UnpackedInitramfs(const UnpackedInitramfs &) = delete;
	UnpackedInitramfs &operator=(const UnpackedInitramfs &) = delete;
	~UnpackedInitramfs()
	{
		std::error_code ec;
		if (!root_.empty())
			fs::remove_all(root_, ec);
	}

	bool unpacked() const { return unpacked_; }
	// Its own regular file, never a link that could name the host's.
	bool holds(std::string_view path) const
	{
		return fs::is_regular_file(fs::symlink_status(root_ / path));
	}
	// Modules may be compressed: dm-cowfile.ko.zst counts.
	bool holds_module(std::string_view name) const
	{
		std::error_code ec;
		for (fs::recursive_directory_iterator it(root_, ec), end; !ec && it != end; it.increment(ec))
			if (it->path().filename().string().starts_with(name) && it->is_regular_file())
				return true;
		return false;
	}
	std::string read(std::string_view path) const { return read_file(root_ / path); }

private:
	fs::path root_;
	bool unpacked_ = false;
};

// Each kernel's initramfs carries snapmgr, the module and the same
// configuration as /etc/snapmgr for every volume it holds; the root's
// volume must be among them.
void check_initramfs(std::vector<Check> &checks, const std::vector<std::string> &kernels,
		     const std::vector<VolumeConfig> &configs, const std::string &root_name)
{
	for (const auto &release : kernels) {
		const fs::path image = "/boot/initrd.img-" + release;
		const std::string subject = "initramfs " + image.string();
		if (!fs::exists(image)) {
			checks.push_back({subject, root_name.empty() ? Verdict::warning : Verdict::problem,
					  "missing"});
			continue;
		}
		const UnpackedInitramfs initramfs(image);
		if (!initramfs.unpacked()) {
			checks.push_back({subject, Verdict::warning,
					  "cannot unpack it (lsinitrd --unpack failed): not checked"});
			continue;
		}
		std::vector<std::string> wrong;
		const bool has_snapmgr = initramfs.holds(SNAPMGR_BINARY_IN_INITRD);
		if (!has_snapmgr)
			wrong.push_back("no snapmgr (rebuild it with dracut, whose module snapmgr installs)");
		if (!initramfs.holds_module("dm-cowfile.ko"))
			wrong.push_back("no dm-cowfile module");
		for (const auto &config : configs) {
			const std::string conf = fmt::format("etc/snapmgr/volumes/{}.conf", config.name);
			if (!initramfs.holds(conf)) {
				if (config.name == root_name)
					wrong.push_back(fmt::format("no configuration of {}, the root's volume",
								    config.name));
				continue;
			}
			if (initramfs.read(conf) != read_file(config_dir() / "volumes" / (config.name + ".conf")))
				wrong.push_back(fmt::format("an old configuration of {}", config.name));
		}
		if (wrong.empty()) {
			checks.push_back({subject, Verdict::ok, "holds snapmgr, the module and the configuration"});
			continue;
		}
		// Without snapmgr at all, only the root's volume depends on it: the
		// others are attached by udev once root is mounted.
		const bool matters = !root_name.empty() || has_snapmgr;
		std::string detail;
		for (const auto &w : wrong)
			detail += (detail.empty() ? "" : "; ") + w;
		checks.push_back({subject, matters ? Verdict::problem : Verdict::warning,
				  fmt::format("{}: run `dracut -f --kver {}`", detail, release)});
	}
}

void check_udev(std::vector<Check> &checks, bool volumes_configured)
{
	const Verdict missing = volumes_configured ? Verdict::problem : Verdict::warning;
	for (std::string_view rules : {SNAPMGR_UDEV_CLAIM_RULES_NAME, "69-snapmgr-attach.rules"}) {
		const fs::path installed = fs::path(SNAPMGR_UDEV_RULES_DIR) / rules;
		const fs::path local = fs::path("/etc/udev/rules.d") / rules;
		std::error_code ec;
		if (fs::exists(local) && fs::canonical(local, ec) == "/dev/null")
			checks.push_back({std::string(rules), missing, local.string() + " masks it"});
		else if (!fs::exists(installed) && !fs::exists(local))
			checks.push_back({std::string(rules), missing, installed.string() + " is missing"});
		else
			checks.push_back({std::string(rules), Verdict::ok,
					  fs::exists(local) ? local.string() : installed.string()});
	}
}

void check_volumes(std::vector<Check> &checks, const std::vector<VolumeStatus> &volumes)
{
	for (const auto &v : volumes) {
		Verdict verdict = Verdict::ok;
		std::string detail{snapmgr::to_string(v.state)};
		switch (v.state) {
		case VolumeState::tracking:
		case VolumeState::next_boot:
			break;
		case VolumeState::lost:
			verdict = Verdict::warning;
			detail += ": the next backup is full";
			break;
		case VolumeState::detached:
			verdict = Verdict::warning;
			detail += ": not tracked until `snapmgr reattach` or the next boot";
			break;
		case VolumeState::given_back:
			verdict = Verdict::problem;
			detail += fmt::format(": this boot could not attach it ({})", v.attach_error);
			break;
		}
		checks.push_back({"volume " + v.name, verdict, detail});
	}
}

} // namespace

void add_doctor(CLI::App &app, Context &ctx)
{
	auto cmd = app.add_subcommand(
		"doctor", "Check what the next boot needs: modules, initramfs, udev rules, volumes");
	cmd->callback([&ctx] {
		ctx.run = [&ctx] {
			const std::vector<VolumeConfig> configs = load_all_configs();
			const std::vector<std::string> kernels = installed_kernels();
			std::vector<Check> checks;
			// Without device-mapper the volumes cannot be read; the
			// files the next boot needs can still be checked.
			std::vector<VolumeStatus> volumes;
			try {
				volumes = list();
			} catch (const std::exception &e) {
				checks.push_back({"volumes", Verdict::problem, e.what()});
			}
			check_module(checks, !configs.empty());
			check_kernels(checks, kernels, !configs.empty());
			if (!configs.empty())
				check_initramfs(checks, kernels, configs, root_volume(volumes));
			check_udev(checks, !configs.empty());
			check_volumes(checks, volumes);

			const bool fine = std::none_of(checks.begin(), checks.end(), [](const Check &c) {
				return c.verdict == Verdict::problem;
			});
			if (ctx.as_json) {
				json out = {{"ok", fine}, {"checks", json::array()}};
				for (const auto &c : checks)
					out["checks"].push_back({{"subject", c.subject},
								 {"verdict", to_string(c.verdict)},
								 {"detail", c.detail}});
				ctx.print_json(out);
			} else {
				for (const auto &c : checks)
					fmt::print("{:<8} {}: {}\n", to_string(c.verdict), c.subject, c.detail);
				if (!fine)
					fmt::print(stderr, "snapmgr: a reboot now would give a volume back (see "
							   "\"problem\" above)\n");
			}
			return fine ? exit_ok : exit_failed;
		};
	});
}

} // namespace snapmgr::cli
