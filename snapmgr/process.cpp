#include "process.hpp"

#include <cerrno>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

namespace snapmgr::cli {

int run_program(const std::vector<std::string> &argv, std::string *output,
		const std::filesystem::path &dir)
{
	std::vector<char *> args;
	for (const auto &a : argv)
		args.push_back(const_cast<char *>(a.c_str()));
	args.push_back(nullptr);

	// The pipe's ends are close-on-exec: the child has only its stdout.
	int pipe_fds[2] = {-1, -1};
	if (output && ::pipe2(pipe_fds, O_CLOEXEC) != 0)
		return -1;
	posix_spawn_file_actions_t actions;
	posix_spawn_file_actions_init(&actions);
	if (output) {
		posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
		posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
	}
	if (!dir.empty())
		posix_spawn_file_actions_addchdir_np(&actions, dir.c_str());
	pid_t pid;
	int spawned = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
	posix_spawn_file_actions_destroy(&actions);
	if (output) {
		::close(pipe_fds[1]);
		output->clear();
		char buf[4096];
		for (ssize_t n; spawned == 0;) {
			n = ::read(pipe_fds[0], buf, sizeof(buf));
			if (n > 0)
				output->append(buf, std::size_t(n));
			else if (n == 0 || errno != EINTR)
				break;
		}
		::close(pipe_fds[0]);
	}
	if (spawned != 0)
		return -1;
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

} // namespace snapmgr::cli
