#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include "snapmgr/version.hpp"

int main(int argc, char **argv)
{
	CLI::App app{"snapmgr: live snapshots and changed-block tracking"};
	app.set_version_flag("--version", std::string(snapmgr::version()));
	app.require_subcommand(0);
	CLI11_PARSE(app, argc, argv);
	return 0;
}
