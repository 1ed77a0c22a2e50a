// snapmgr snapshot, release, reset.
#include "command.hpp"

#include <memory>
#include <optional>

namespace snapmgr::cli {

namespace {

// Right after a snapshot its store is empty, so it cannot be nearly full
// yet; but if the volume writes as much while the snapshot is held as it
// did since the last one, the store fills and the snapshot is lost.
std::optional<std::string> store_too_small(const SnapshotResult &r)
{
	if (r.changed_bytes <= r.store_room_bytes)
		return std::nullopt;
	return fmt::format("{}: the store's room ({} bytes) is smaller than what the volume "
			   "wrote since its previous snapshot ({} bytes): as much written while this "
			   "snapshot is held would fill it and lose the snapshot; grow the store "
			   "(snapmgr grow {} SIZE) or keep snapmgr monitor {} running",
			   r.name, r.store_room_bytes, r.changed_bytes, r.name, r.name);
}

} // namespace

void add_snapshot(CLI::App &app, Context &ctx)
{
	auto names = std::make_shared<std::vector<std::string>>();
	auto cmd = app.add_subcommand(
		"snapshot", "Freeze an instant of one or several volumes (one instant for all)");
	cmd->add_option("VOLUME", *names, "Volume names, or one disk name")->required();
	cmd->callback([&ctx, names] {
		ctx.run = [&ctx, names] {
			if (names->size() == 1 && names_disk(names->front()))
				return report_disk_snapshot(snapshot_disk(names->front(), ctx.logger()),
							    ctx);
			auto results = snapshot(*names, ctx.logger());
			json out = json::array();
			for (const auto &r : results) {
				json warnings = json::array();
				if (auto w = store_too_small(r)) {
					ctx.report(Severity::warning, *w);
					warnings.push_back(*w);
				}
				if (ctx.as_json)
					out.push_back({{"name", r.name},
						       {"image", r.image},
						       {"generation", r.generation},
						       {"epoch", r.epoch},
						       {"position", fmt::format("{}:{}", r.generation,
										r.epoch)},
						       {"changed_bytes", r.changed_bytes},
						       {"store_room_bytes", r.store_room_bytes},
						       {"warnings", warnings}});
				else
					fmt::print("{}: snapshot of epoch {} at {}, position {}:{}\n",
						   r.name, r.epoch, r.image, r.generation, r.epoch);
			}
			if (ctx.as_json)
				ctx.print_json(out);
			return exit_ok;
		};
	});
}

void add_release(CLI::App &app, Context &ctx)
{
	auto name = std::make_shared<std::string>();
	auto cmd = app.add_subcommand("release", "Drop the held snapshot and its image device");
	cmd->add_option("VOLUME", *name, "Volume or disk name")->required();
	cmd->callback([&ctx, name] {
		ctx.run = [&ctx, name] {
			if (names_disk(*name))
				release_disk(*name, ctx.logger());
			else
				release(*name, ctx.logger());
			if (ctx.as_json)
				ctx.print_json({{"name", *name}, {"released", true}});
			else
				fmt::print("{}: snapshot released\n", *name);
			return exit_ok;
		};
	});
}

void add_reset(CLI::App &app, Context &ctx)
{
	auto name = std::make_shared<std::string>();
	auto cmd = app.add_subcommand(
		"reset", "Start a new generation: the next backup is full (after tracking was lost)");
	cmd->add_option("VOLUME", *name, "Volume name")->required();
	cmd->callback([&ctx, name] {
		ctx.run = [&ctx, name] {
			reset(*name, ctx.logger());
			VolumeStatus s = status(*name);
			std::string generation = s.kernel ? s.kernel->generation : "";
			if (ctx.as_json)
				ctx.print_json({{"name", *name}, {"generation", generation}});
			else
				fmt::print("{}: new generation {}\n", *name, generation);
			return exit_ok;
		};
	});
}

} // namespace snapmgr::cli
