// snapmgr: live snapshots and changed-block tracking. A thin layer over
// libsnapmgr: parse, call, print.
#include <cerrno>
#include <cstdio>
#include <iostream>

#include "command.hpp"
#include "snapmgr/error.hpp"
#include "snapmgr/version.hpp"

namespace snapmgr::cli {

// Steps only with -v; warnings and errors always, a failed rollback above
// all: that is when the user has something to put right.
void Context::report(Severity severity, std::string_view text) const
{
	switch (severity) {
	case Severity::step:
		if (verbose)
			fmt::print(stderr, "snapmgr: {}\n", text);
		break;
	case Severity::warning:
		fmt::print(stderr, "snapmgr: warning: {}\n", text);
		break;
	case Severity::error:
		fmt::print(stderr, "snapmgr: error: {}\n", text);
		break;
	}
}

Logger Context::logger() const
{
	return [this](Severity severity, std::string_view text) { report(severity, text); };
}

// Labels and names come from the system as bytes, not always UTF-8: such
// bytes are printed as U+FFFD rather than failing the command.
void Context::print_json(const json &value) const
{
	fmt::print("{}\n", value.dump(2, ' ', false, json::error_handler_t::replace));
}

std::string format_size(std::uint64_t bytes, char unit, bool suffix)
{
	static const std::string units = "bkmgt";
	auto u = units.find(unit);
	if (u != std::string::npos)
		return fmt::format("{}{}", bytes >> (10 * u), u && suffix ? std::string(1, unit) : "");
	double v = double(bytes);
	std::size_t i = 0;
	while (v >= 1024 && i + 1 < units.size()) {
		v /= 1024;
		i++;
	}
	const std::string unit_text = suffix ? std::string(1, units[i]) : "";
	return i ? fmt::format("{:.2f}{}", v, unit_text) : fmt::format("{}{}", bytes, unit_text);
}

} // namespace snapmgr::cli

int main(int argc, char **argv)
{
	using namespace snapmgr::cli;
	CLI::App app{"snapmgr: live snapshots and changed-block tracking (see snapmgr(8))"};
	app.set_version_flag("--version", std::string(snapmgr::version()));
	app.require_subcommand(1);
	Context ctx;
	app.add_flag("--json", ctx.as_json, "Report as JSON (stable snake_case keys, sizes in bytes)");
	app.add_flag("-v,--verbose", ctx.verbose, "Say each step on stderr");

	add_track(app, ctx);
	add_create(app, ctx);
	add_untrack(app, ctx);
	add_reattach(app, ctx);
	add_udev_claim(app, ctx);
	add_snapshot(app, ctx);
	add_release(app, ctx);
	add_reset(app, ctx);
	add_list(app, ctx);
	add_status(app, ctx);
	add_changes(app, ctx);
	add_backup(app, ctx);
	add_grow(app, ctx);
	add_wait(app, ctx);
	add_monitor(app, ctx);
	add_doctor(app, ctx);

	try {
		app.parse(argc, argv);
	} catch (const CLI::ParseError &e) {
		int rc = app.exit(e);
		return rc == 0 ? exit_ok : exit_usage;
	}
	try {
		return ctx.run ? ctx.run() : exit_ok;
	} catch (const snapmgr::UsageError &e) {
		fmt::print(stderr, "snapmgr: {}\n", e.what());
		return exit_usage;
	} catch (const std::exception &e) {
		fmt::print(stderr, "snapmgr: {}\n", e.what());
		return exit_failed;
	}
}
