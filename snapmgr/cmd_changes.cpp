// snapmgr changes: the byte ranges written since a backup's position.
#include "command.hpp"

#include <memory>

namespace snapmgr::cli {

void add_changes(CLI::App &app, Context &ctx)
{
	struct Args {
		std::string name;
		std::string since;
	};
	auto args = std::make_shared<Args>();
	auto cmd = app.add_subcommand("changes",
				      "Byte ranges written since a position (or \"full\")");
	cmd->add_option("VOLUME", args->name, "Volume name (or a tracked disk's)")->required();
	cmd->add_option("--since", args->since,
			"GENERATION:EPOCH, as snapshot and backup print it (none: full); "
			"for a disk VOLUME=GENERATION:EPOCH,...");
	cmd->callback([&ctx, args] {
		ctx.run = [&ctx, args] {
			if (names_disk(args->name))
				return report_disk_changes(
					disk_changes(args->name, parse_disk_position(args->since)), ctx);
			std::optional<Position> since;
			if (!args->since.empty())
				since = Position::parse(args->since);
			Changes c = changes(args->name, since);
			std::uint64_t total = 0;
			for (const auto &r : c.set.ranges)
				total += r.length;
			if (ctx.as_json) {
				json ranges = json::array();
				for (const auto &r : c.set.ranges)
					ranges.push_back({{"start", r.start}, {"length", r.length}});
				ctx.print_json({{"name", c.name},
						{"backup_type", c.set.full ? "full" : "incremental"},
						{"full_reason", c.set.full_reason},
						{"position", c.now.to_string()},
						{"chunk_bytes", c.chunk_bytes},
						{"size_bytes", c.size_bytes},
						{"changed_bytes", total},
						{"ranges", ranges}});
				return exit_ok;
			}
			if (c.set.full)
				fmt::print("full: {}\n", c.set.full_reason);
			else
				fmt::print("incremental: {} bytes in {} ranges\n", total,
					   c.set.ranges.size());
			for (const auto &r : c.set.ranges)
				fmt::print("{} {}\n", r.start, r.length);
			return exit_ok;
		};
	});
}

} // namespace snapmgr::cli
