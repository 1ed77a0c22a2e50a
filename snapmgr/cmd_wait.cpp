// snapmgr wait: block until a volume's next dm event, for scripts that
// grow the store or start a backup when something changes.
#include "command.hpp"

#include <memory>

namespace snapmgr::cli {

void add_wait(CLI::App &app, Context &ctx)
{
	auto name = std::make_shared<std::string>();
	auto cmd = app.add_subcommand(
		"wait", "Wait for the volume's next event (snapshot state, store low water, "
			"tracking lost), then show its status");
	cmd->add_option("VOLUME", *name, "Volume name")->required();
	cmd->callback([&ctx, name] {
		ctx.run = [&ctx, name] {
			VolumeStatus s = wait_for_event(*name);
			if (ctx.as_json) {
				ctx.print_json(to_json(s));
			} else {
				std::string snap = s.kernel ? std::string(to_string(s.kernel->snap_state)) : "-";
				if (s.kernel && s.kernel->snap_state == SnapState::invalid)
					snap += " (" + s.kernel->invalid_reason + ")";
				fmt::print("{}: {}, snapshot {}, store {} of {} bytes used\n", s.name,
					   to_string(s.state), snap, s.store_used_bytes, s.store_room_bytes);
			}
			return exit_ok;
		};
	});
}

} // namespace snapmgr::cli
