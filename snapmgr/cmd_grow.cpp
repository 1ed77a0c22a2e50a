// snapmgr grow: more room in a volume's store, while it runs.
#include "command.hpp"

#include <memory>

namespace snapmgr::cli {

void add_grow(CLI::App &app, Context &ctx)
{
	struct Args {
		std::string name;
		std::string size;
	};
	auto args = std::make_shared<Args>();
	auto cmd = app.add_subcommand("grow", "Add room to a volume's store, while it runs");
	cmd->add_option("VOLUME", args->name, "Volume name")->required();
	cmd->add_option("SIZE", args->size, "How much to add (K, M, G, T; a multiple of 4K)")
		->required();
	cmd->callback([&ctx, args] {
		ctx.run = [&ctx, args] {
			std::uint64_t add = parse_size(args->size, "SIZE");
			if (add == 0 || add % 4096)
				throw UsageError("SIZE", EINVAL,
						 fmt::format("SIZE {} is not a positive multiple of 4K",
							     args->size));
			std::uint64_t bytes = grow(args->name, add, ctx.logger());
			if (ctx.as_json)
				ctx.print_json({{"name", args->name}, {"store_size_bytes", bytes}});
			else
				fmt::print("{}: store is now {} bytes\n", args->name, bytes);
			return exit_ok;
		};
	});
}

} // namespace snapmgr::cli
