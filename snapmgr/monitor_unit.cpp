// Store growth by default: where systemd runs, track and create enable the
// volume's store watcher, snapmgr-monitor@NAME (it grows the store before a
// held snapshot fills it), and untrack disables it. Anything else (no
// systemd, a chroot, the unit not installed) is said, never fatal: the
// volume is tracked either way.
#include "command.hpp"

#include <unistd.h>

#include "process.hpp"

namespace snapmgr::cli {

namespace {

// systemd's own test (sd_booted(3)).
bool systemd_runs()
{
	return ::access("/run/systemd/system", F_OK) == 0;
}

// The instance name as systemd-escape spells it: volume names are letters,
// digits and ._+- (config.cpp), of which only + needs escaping.
std::string unit_of(std::string_view volume)
{
	std::string instance;
	for (char c : volume)
		instance += c == '+' ? std::string("\\x2b") : std::string(1, c);
	return fmt::format("snapmgr-monitor@{}.service", instance);
}

int systemctl(const std::vector<std::string> &args)
{
	std::vector<std::string> argv{"systemctl"};
	argv.insert(argv.end(), args.begin(), args.end());
	return run_program(argv);
}

} // namespace

json enable_monitor(const std::string &volume, bool start_now, const Context &ctx)
{
	std::string unit = unit_of(volume);
	if (!systemd_runs()) {
		ctx.report(Severity::step,
			   fmt::format("systemd is not running: {} not enabled; run `snapmgr monitor "
				       "{}` to grow the store while a snapshot is held",
				       unit, volume));
		return {{"unit", unit}, {"enabled", false}, {"reason", "systemd is not running"}};
	}
	std::vector<std::string> args{"enable", "--quiet"};
	if (start_now)
		args.push_back("--now");
	args.push_back(unit);
	if (systemctl(args) != 0) {
		ctx.report(Severity::warning,
			   fmt::format("{}: `systemctl enable {}` failed: the store will not grow by "
				       "itself; enable it, or run `snapmgr monitor {}`",
				       volume, unit, volume));
		return {{"unit", unit}, {"enabled", false}, {"reason", "systemctl enable failed"}};
	}
	ctx.report(Severity::step, fmt::format("{} enabled{}", unit, start_now ? " and started" : ""));
	return {{"unit", unit}, {"enabled", true}};
}

void disable_monitor(const std::string &volume, const Context &ctx)
{
	std::string unit = unit_of(volume);
	if (!systemd_runs())
		return;
	// Not enabled, or not installed: nothing to undo.
	if (systemctl({"--quiet", "is-enabled", unit}) != 0)
		return;
	if (systemctl({"disable", "--quiet", "--now", unit}) != 0)
		ctx.report(Severity::warning,
			   fmt::format("{}: `systemctl disable --now {}` failed: disable it by hand",
				       volume, unit));
}

} // namespace snapmgr::cli
