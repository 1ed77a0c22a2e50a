#include "dm_tables.hpp"

#include <libdevmapper.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <sstream>

#include <fmt/core.h>

#include <linux/dm-cowfile.h>

#include "snapmgr/error.hpp"

namespace snapmgr {

namespace {

struct DmTaskDeleter {
	void operator()(dm_task *task) const noexcept { dm_task_destroy(task); }
};
using DmTask = std::unique_ptr<dm_task, DmTaskDeleter>;

// libdevmapper prints to stderr by default; the library stays silent and
// reports through its exceptions instead.
extern "C" void discard_dm_log(int, const char *, int, int, const char *, ...) {}

DmTask run_task(int type, const char *name)
{
	dm_log_with_errno_init(discard_dm_log);
	DmTask task(dm_task_create(type));
	if (!task)
		throw std::bad_alloc();
	if (name && !dm_task_set_name(task.get(), name))
		throw DeviceError(name, EINVAL, fmt::format("device-mapper: bad device name {}", name));
	if (!dm_task_run(task.get()))
		throw DeviceError(name ? name : "device-mapper", EIO,
				  "cannot query device-mapper to see whether a cowfile device "
				  "uses the store; is /dev/mapper/control accessible?");
	return task;
}

} // namespace

std::vector<std::string> cowfile_devices_using(unsigned major, unsigned minor,
					       std::uint64_t sb_sector)
{
	std::vector<std::string> users;
	if (!std::filesystem::exists("/sys/module/dm_cowfile"))
		return users;
	const std::string store = fmt::format("{}:{}", major, minor);
	DmTask list = run_task(DM_DEVICE_LIST, nullptr);
	dm_names *names = dm_task_get_names(list.get());
	if (!names || !names->dev)
		return users;
	for (;;) {
		DmTask table = run_task(DM_DEVICE_TABLE, names->name);
		void *next = nullptr;
		do {
			std::uint64_t start = 0, length = 0;
			char *type = nullptr, *params = nullptr;
			next = dm_get_next_target(table.get(), next, &start, &length, &type, &params);
			if (!type || !params || std::strcmp(type, COWFILE_TARGET_NAME) != 0)
				continue;
			std::istringstream fields(params);
			std::string origin, store_dev;
			std::uint64_t sector = 0;
			if (fields >> origin >> store_dev >> sector && store_dev == store &&
			    sector == sb_sector)
				users.emplace_back(names->name);
		} while (next);
		if (!names->next)
			break;
		names = reinterpret_cast<dm_names *>(reinterpret_cast<char *>(names) + names->next);
	}
	return users;
}

} // namespace snapmgr
