// snapmgr monitor: grow a held snapshot's store before it fills (the
// library's watcher, which snapmgrd runs too).
#include "command.hpp"

#include <cstdio>
#include <memory>

namespace snapmgr::cli {

void add_monitor(CLI::App &app, Context &ctx)
{
	struct Args {
		std::string name;
		std::string step = "1G";
	};
	auto args = std::make_shared<Args>();
	auto cmd = app.add_subcommand(
		"monitor", "Watch a volume and grow its store while a held snapshot fills it, "
			   "until the volume is detached");
	cmd->add_option("VOLUME", args->name, "Volume name")->required();
	cmd->add_option("--step", args->step,
			"How much to add each time the store passes its low water mark "
			"(K, M, G, T; a multiple of 4K)")
		->capture_default_str();
	cmd->callback([&ctx, args] {
		ctx.run = [&ctx, args] {
			MonitorOptions options;
			options.step_bytes = parse_size(args->step, "--step");
			// With --json, one JSON object per line, as each event happens.
			options.report = [&ctx](const MonitorReport &r) {
				if (ctx.as_json)
					fmt::print("{}\n", json{{"name", r.name},
								{"event", r.event},
								{"store_used_bytes", r.store_used_bytes},
								{"store_room_bytes", r.store_room_bytes},
								{"step_bytes", r.step_bytes},
								{"store_size_bytes", r.store_size_bytes},
								{"reason", r.reason}}
								.dump());
				else
					fmt::print("{}\n", r.text);
				std::fflush(stdout);
			};
			options.log = ctx.logger();
			monitor(args->name, options);
			return exit_ok;
		};
	});
}

} // namespace snapmgr::cli
