#pragma once

// What every snapmgr command shares: global options, how a command runs
// after parsing, output helpers. One file per command registers it.

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "snapmgr/disk.hpp"
#include "snapmgr/error.hpp"
#include "snapmgr/size.hpp"
#include "snapmgr/volume.hpp"

namespace snapmgr::cli {

using nlohmann::json;

// Exit codes (snapmgr(8), EXIT STATUS).
inline constexpr int exit_ok = 0;
inline constexpr int exit_failed = 1;
inline constexpr int exit_usage = 2;

struct Context {
	bool as_json = false;
	bool verbose = false;
	// Set by the chosen command's parse callback, run once parsing is done.
	std::function<int()> run;

	// On stderr: steps with --verbose, warnings and errors always.
	void report(Severity severity, std::string_view text) const;
	// Passes what the library reports to report().
	Logger logger() const;
	void print_json(const json &value) const;
};

// Registers a command; its callback sets ctx.run.
void add_track(CLI::App &app, Context &ctx);
void add_create(CLI::App &app, Context &ctx);
void add_untrack(CLI::App &app, Context &ctx);
void add_reattach(CLI::App &app, Context &ctx);
void add_udev_claim(CLI::App &app, Context &ctx);
void add_snapshot(CLI::App &app, Context &ctx);
void add_release(CLI::App &app, Context &ctx);
void add_reset(CLI::App &app, Context &ctx);
void add_list(CLI::App &app, Context &ctx);
void add_status(CLI::App &app, Context &ctx);
void add_changes(CLI::App &app, Context &ctx);
void add_backup(CLI::App &app, Context &ctx);
void add_grow(CLI::App &app, Context &ctx);
void add_wait(CLI::App &app, Context &ctx);
void add_monitor(CLI::App &app, Context &ctx);
void add_doctor(CLI::App &app, Context &ctx);

// Sizes in tables: --units h (human, 1.5g) or b/k/m/g/t (whole units);
// without the unit letter for --nosuffix.
std::string format_size(std::uint64_t bytes, char unit, bool suffix = true);

// The volume's store watcher, snapmgr-monitor@NAME, where systemd runs
// (monitor_unit.cpp): enabled (and started when START_NOW) by track and
// create, with what happened as JSON; disabled by untrack.
json enable_monitor(const std::string &volume, bool start_now, const Context &ctx);
void disable_monitor(const std::string &volume, const Context &ctx);

// Whole disks (cmd_disk.cpp): a name that is a tracked disk and not a
// volume, and what track, snapshot and backup of a disk print.
bool names_disk(const std::string &name);
int report_disk_tracked(const DiskTrackResult &r, bool no_monitor, const Context &ctx);
int report_disk_snapshot(const DiskSnapshotResult &r, const Context &ctx);
int report_disk_backup(const DiskBackupResult &r, const Context &ctx);
int report_disk_status(const DiskStatus &s, const Context &ctx);
int report_disk_changes(const DiskChanges &c, const Context &ctx);

json to_json(const VolumeStatus &s);
json to_json(const TrackResult &r);

} // namespace snapmgr::cli
