// snapmgr backup: copy the held snapshot into an image file, only the
// changed chunks when the image holds an earlier position of the volume.
#include "command.hpp"

#include <unistd.h>

#include <memory>

#include "snapmgr/backup.hpp"

namespace snapmgr::cli {

void add_backup(CLI::App &app, Context &ctx)
{
	struct Args {
		std::string name;
		std::string image;
		bool full = false;
		bool progress = false;
	};
	auto args = std::make_shared<Args>();
	auto cmd = app.add_subcommand(
		"backup", "Copy the held snapshot into an image file (incremental when it can be)");
	cmd->add_option("VOLUME", args->name, "Volume or disk name")->required();
	cmd->add_option("IMAGE", args->image, "Raw image file (IMAGE.snapmgr.json beside it)")
		->required();
	cmd->add_flag("--full", args->full, "Copy everything, whatever the image holds");
	cmd->add_flag("--progress", args->progress,
		      "Print 'progress DONE TOTAL' lines on stderr (default: a percentage "
		      "when stderr is a terminal)");
	cmd->callback([&ctx, args] {
		ctx.run = [&ctx, args] {
			BackupOptions o;
			o.force_full = args->full;
			o.log = ctx.logger();
			const bool tty = ::isatty(STDERR_FILENO);
			if (args->progress)
				o.progress = [](std::uint64_t done, std::uint64_t total) {
					fmt::print(stderr, "progress {} {}\n", done, total);
				};
			else if (tty && !ctx.as_json)
				o.progress = [](std::uint64_t done, std::uint64_t total) {
					fmt::print(stderr, "\r{:5.1f}%",
						   total ? 100.0 * double(done) / double(total) : 100.0);
				};
			if (names_disk(args->name)) {
				DiskBackupResult r = backup_disk(args->name, args->image, o);
				if (tty && !ctx.as_json && !args->progress)
					fmt::print(stderr, "\n");
				return report_disk_backup(r, ctx);
			}
			BackupResult r = backup(args->name, args->image, o);
			if (tty && !ctx.as_json && !args->progress)
				fmt::print(stderr, "\n");
			if (ctx.as_json) {
				ctx.print_json({{"name", r.name},
						{"image", r.image.string()},
						{"backup_type", r.full ? "full" : "incremental"},
						{"full_reason", r.full_reason},
						{"since", r.since ? r.since->to_string() : ""},
						{"position", r.position.to_string()},
						{"size_bytes", r.size_bytes},
						{"copied_bytes", r.copied_bytes},
						{"ranges", r.ranges}});
				return exit_ok;
			}
			if (r.full)
				fmt::print("{}: full backup into {} ({}), {} bytes, position {}\n", r.name,
					   r.image.string(), r.full_reason, r.copied_bytes,
					   r.position.to_string());
			else
				fmt::print("{}: incremental backup into {} since {}: {} bytes in {} "
					   "ranges, position {}\n",
					   r.name, r.image.string(), r.since->to_string(), r.copied_bytes,
					   r.ranges, r.position.to_string());
			return exit_ok;
		};
	});
}

} // namespace snapmgr::cli
