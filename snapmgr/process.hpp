#pragma once

// Running another program (systemctl, modinfo, lsinitrd) without a shell.

#include <filesystem>
#include <string>
#include <vector>

namespace snapmgr::cli {

// Runs ARGV[0] (searched in PATH) with ARGV; its exit status, or -1 when it
// could not be run or died by a signal. With OUTPUT, its standard output is
// read into it and its standard error discarded; without, both go where
// ours go. With DIR, it runs there.
int run_program(const std::vector<std::string> &argv, std::string *output = nullptr,
		const std::filesystem::path &dir = {});

} // namespace snapmgr::cli
