// snapmgr track, create, untrack, reattach: putting volumes under tracking
// and taking them out.
#include "command.hpp"

#include <memory>

#include "snapmgr/boot.hpp"

namespace snapmgr::cli {

namespace {

struct TrackArgs {
	std::string device;
	std::string name;
	std::string store;
	std::string store_size;
	std::string chunk_size = "64K";
	bool no_monitor = false;
};

void add_track_options(CLI::App *cmd, TrackArgs &a, bool store_required)
{
	cmd->add_option("DEVICE", a.device, "The block device")->required();
	cmd->add_option("-n,--name", a.name,
			"Volume name (default: the dm name of a dm volume, else the kernel name)");
	auto store = cmd->add_option("-s,--store", a.store,
				     store_required
					     ? "Store file, on another mounted ext4 or xfs filesystem"
					     : "Store file (default: .snapmgr-NAME.store at the root of "
					       "the volume's mounted filesystem); for a partitioned disk, "
					       "a directory for its unmounted partitions' stores");
	if (store_required)
		store->required();
	cmd->add_option("-S,--store-size", a.store_size,
			"Store size (default: a tenth of the volume, at least 64M)");
	cmd->add_option("-c,--chunk-size", a.chunk_size,
			"Tracking and copy unit, a power of two from 4K to 1M")
		->capture_default_str();
	cmd->add_flag("--no-monitor", a.no_monitor,
		      "Do not enable snapmgr-monitor@NAME, the systemd unit that grows the store "
		      "while a snapshot is held");
}

TrackOptions to_options(const TrackArgs &a, const Context &ctx)
{
	TrackOptions o;
	o.device = a.device;
	o.name = a.name;
	if (!a.store.empty())
		o.store = a.store;
	if (!a.store_size.empty())
		o.store_bytes = parse_size(a.store_size, "--store-size");
	std::uint64_t chunk = parse_size(a.chunk_size, "--chunk-size");
	o.chunk_sectors = std::uint32_t(chunk / 512);
	if (chunk % 512 || !valid_chunk_sectors(o.chunk_sectors))
		throw UsageError("--chunk-size", EINVAL,
				 fmt::format("--chunk-size {} is not a power of two from 4K to 1M",
					     a.chunk_size));
	o.log = ctx.logger();
	return o;
}

void report(const TrackResult &r, const Context &ctx)
{
	if (ctx.as_json) {
		ctx.print_json(to_json(r));
		return;
	}
	switch (r.outcome) {
	case TrackOutcome::tracking:
		fmt::print("{}: tracking changes on {}, store {}\n", r.name, r.device,
			   r.config.store.string());
		break;
	case TrackOutcome::next_boot:
		fmt::print("{}: {} is mounted, so the wrapper cannot be slid under it now.\n"
			   "{}: the store {} is ready; tracking starts at the next boot, when "
			   "the device is wrapped before it is mounted.\n",
			   r.name, r.config.device, r.name, r.config.store.string());
		break;
	case TrackOutcome::already_tracking:
		fmt::print("{}: already tracking\n", r.name);
		break;
	}
}

} // namespace

json to_json(const TrackResult &r)
{
	return {{"name", r.name},
		{"outcome", std::string(to_string(r.outcome))},
		{"device", r.device},
		{"origin", r.config.device},
		{"mode", std::string(to_string(r.config.mode))},
		{"store", r.config.store.string()},
		{"store_uuid", format_uuid(r.config.store_uuid)}};
}

namespace {

// What track and create print: the volume, then its store watcher (started
// now when the volume is live, at the next boot otherwise).
int report_tracked(const TrackResult &r, const TrackArgs &a, const Context &ctx)
{
	json monitor = nullptr;
	if (!a.no_monitor)
		monitor = enable_monitor(r.name, r.outcome == TrackOutcome::tracking, ctx);
	if (ctx.as_json) {
		json j = to_json(r);
		j["monitor"] = monitor;
		ctx.print_json(j);
		return exit_ok;
	}
	report(r, ctx);
	if (!monitor.is_null() && monitor["enabled"] == true)
		fmt::print("{}: {} grows the store while a snapshot is held\n", r.name,
			   monitor["unit"].get<std::string>());
	return exit_ok;
}

} // namespace

void add_track(CLI::App &app, Context &ctx)
{
	auto args = std::make_shared<TrackArgs>();
	auto cmd = app.add_subcommand("track", "Put a volume under change tracking");
	add_track_options(cmd, *args, false);
	cmd->callback([&ctx, args] {
		ctx.run = [&ctx, args] {
			TrackOptions o = to_options(*args, ctx);
			if (!is_partitioned_disk(o.device))
				return report_tracked(track(o), *args, ctx);
			if (!o.name.empty())
				throw UsageError("--name", EINVAL,
						 "--name names a volume; a disk's partitions keep "
						 "their kernel names");
			return report_disk_tracked(track_disk(o), args->no_monitor, ctx);
		};
	});
}

void add_create(CLI::App &app, Context &ctx)
{
	auto args = std::make_shared<TrackArgs>();
	auto cmd = app.add_subcommand("create",
				      "Make a new tracked volume over a blank device, to mkfs and mount");
	add_track_options(cmd, *args, true);
	cmd->callback([&ctx, args] {
		ctx.run = [&ctx, args] { return report_tracked(create(to_options(*args, ctx)), *args, ctx); };
	});
}

void add_untrack(CLI::App &app, Context &ctx)
{
	struct Args {
		std::string name;
		bool keep_store = false;
	};
	auto args = std::make_shared<Args>();
	auto cmd = app.add_subcommand(
		"untrack", "Stop tracking: restore the device as it was, remove the store");
	cmd->add_option("VOLUME", args->name, "Volume or disk name")->required();
	cmd->add_flag("--keep-store", args->keep_store, "Leave the store file in place");
	cmd->callback([&ctx, args] {
		ctx.run = [&ctx, args] {
			UntrackOptions o;
			o.keep_store = args->keep_store;
			o.log = ctx.logger();
			if (names_disk(args->name)) {
				const auto disk = load_disk_config(args->name);
				untrack_disk(args->name, o);
				for (const auto &p : disk->partitions)
					if (p.role == PartitionRole::tracked)
						disable_monitor(p.volume, ctx);
			} else {
				untrack(args->name, o);
				disable_monitor(args->name, ctx);
			}
			if (ctx.as_json)
				ctx.print_json({{"name", args->name}, {"untracked", true}});
			else
				fmt::print("{}: no longer tracked\n", args->name);
			return exit_ok;
		};
	});
}

void add_reattach(CLI::App &app, Context &ctx)
{
	struct Args {
		std::vector<std::string> names;
		bool all = false;
		bool boot = false;
	};
	auto args = std::make_shared<Args>();
	auto cmd = app.add_subcommand("reattach",
				      "Attach configured volumes again (at boot, or after a failure)");
	auto names = cmd->add_option("VOLUME", args->names, "Volume names");
	auto all = cmd->add_flag("-a,--all", args->all, "Every configured volume");
	cmd->add_flag("--boot", args->boot,
		      "As boot does: give a volume that cannot be attached back unwrapped, its "
		      "generation marked lost");
	names->excludes(all);
	cmd->callback([&ctx, args] {
		ctx.run = [&ctx, args] {
			if (!args->all && args->names.empty())
				throw UsageError("reattach", EINVAL, "name volumes, or give --all");
			ReattachOptions options;
			options.give_back = args->boot;
			options.log = ctx.logger();
			auto results = reattach(args->names, options);
			int rc = exit_ok;
			json out = json::array();
			for (const auto &r : results) {
				if (!r.error.empty())
					rc = exit_failed;
				if (ctx.as_json) {
					json j = r.result ? to_json(*r.result)
							  : json{{"name", r.name}};
					j["error"] = r.error;
					j["given_back"] = r.given_back;
					out.push_back(j);
				} else if (r.result) {
					report(*r.result, ctx);
				} else {
					fmt::print(stderr, "snapmgr: {}: {}\n", r.name, r.error);
				}
			}
			if (ctx.as_json)
				ctx.print_json(out);
			return rc;
		};
	});
}

// For udev rules: prints the udev properties of a device that a configured
// volume names (snapmgr(8), udev-claim); prints nothing for any other device.
void add_udev_claim(CLI::App &app, Context &ctx)
{
	auto devnode = std::make_shared<std::string>();
	auto cmd = app.add_subcommand("udev-claim",
				      "For udev rules: the volume a device belongs to, as udev "
				      "properties");
	cmd->add_option("DEVICE", *devnode, "The device node udev handles")->required();
	cmd->callback([&ctx, devnode] {
		ctx.run = [devnode] {
			if (auto c = udev_claim(*devnode))
				fmt::print("SNAPMGR_VOLUME={}\nSNAPMGR_CLAIM={}\nSNAPMGR_ATTACHED={}\n",
					   c->volume, c->claim ? 1 : 0, c->attached ? 1 : 0);
			return exit_ok;
		};
	});
}

} // namespace snapmgr::cli
