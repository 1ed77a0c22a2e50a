// snapmgr snapshot, release, reset.
#include "command.hpp"

#include <memory>

namespace snapmgr::cli {

void add_snapshot(CLI::App &app, Context &ctx)
{
	auto names = std::make_shared<std::vector<std::string>>();
	auto cmd = app.add_subcommand(
		"snapshot", "Freeze an instant of one or several volumes (one instant for all)");
	cmd->add_option("VOLUME", *names, "Volume names")->required();
	cmd->callback([&ctx, names] {
		ctx.run = [&ctx, names] {
			auto results = snapshot(*names, ctx.logger());
			json out = json::array();
			for (const auto &r : results) {
				if (ctx.as_json)
					out.push_back({{"name", r.name},
						       {"image", r.image},
						       {"generation", r.generation},
						       {"epoch", r.epoch},
						       {"position", fmt::format("{}:{}", r.generation,
										r.epoch)}});
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
	cmd->add_option("VOLUME", *name, "Volume name")->required();
	cmd->callback([&ctx, name] {
		ctx.run = [&ctx, name] {
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
