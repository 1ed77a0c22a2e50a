#include "snapmgr/dm.hpp"

#include <fcntl.h>
#include <libdevmapper.h>
#include <linux/dm-ioctl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>

#include <fmt/core.h>

#include "snapmgr/error.hpp"

namespace snapmgr::dm {

namespace {

// libdevmapper prints to stderr by default; the library stays silent and
// keeps the last error message to put into its exception instead.
thread_local std::string last_dm_error;

extern "C" void keep_dm_error(int level, const char *, int, int, const char *format, ...)
{
	if (level > 3) // _LOG_ERR and worse only
		return;
	va_list ap;
	va_start(ap, format);
	char buffer[512];
	std::vsnprintf(buffer, sizeof(buffer), format, ap);
	va_end(ap);
	last_dm_error = buffer;
}

struct TaskDeleter {
	void operator()(dm_task *task) const noexcept { dm_task_destroy(task); }
};

class Task {
public:
	Task(int type, const std::string &name, std::string what)
		: name_(name), what_(std::move(what))
	{
		static std::once_flag once;
		std::call_once(once, [] { dm_log_with_errno_init(keep_dm_error); });
		last_dm_error.clear();
		task_.reset(dm_task_create(type));
		if (!task_) // the version check opens /dev/mapper/control first
			throw DeviceError("/dev/mapper/control", ENODEV,
					  fmt::format("device-mapper is not available: {}",
						      last_dm_error.empty() ? "out of memory"
									    : last_dm_error));
		if (!name.empty() && !dm_task_set_name(get(), name.c_str()))
			fail(EINVAL);
	}

	dm_task *get() const noexcept { return task_.get(); }

	// Runs the ioctl. With sync, waits for udev to finish the uevents it
	// causes (node creation/removal, rules), when udev runs.
	void run(bool sync = false)
	{
		last_dm_error.clear();
		std::uint32_t cookie = 0;
		if (sync && !dm_task_set_cookie(get(), &cookie, 0))
			fail(EIO);
		bool ok = dm_task_run(get());
		int e = ok ? 0 : dm_task_get_errno(get());
		if (sync)
			dm_udev_wait(cookie);
		if (!ok)
			fail(e ? e : EIO);
	}

	[[noreturn]] void fail(int error_number) const
	{
		std::string why = last_dm_error.empty() ? std::strerror(error_number) : last_dm_error;
		throw DeviceError(name_.empty() ? "device-mapper" : name_, error_number,
				  fmt::format("device-mapper {} of {}: {}", what_,
					      name_.empty() ? "devices" : name_, why));
	}

private:
	std::unique_ptr<dm_task, TaskDeleter> task_;
	std::string name_;
	std::string what_;
};

void add_targets(Task &task, const Table &table)
{
	for (const Target &t : table)
		if (!dm_task_add_target(task.get(), t.start, t.length, t.type.c_str(),
					t.params.c_str()))
			task.fail(EINVAL);
}

Table read_targets(const Task &task)
{
	Table table;
	void *next = nullptr;
	do {
		std::uint64_t start = 0, length = 0;
		char *type = nullptr, *params = nullptr;
		next = dm_get_next_target(task.get(), next, &start, &length, &type, &params);
		if (type)
			table.push_back({start, length, type, params ? params : ""});
	} while (next);
	return table;
}

Table query(const std::string &name, int type, const char *what)
{
	Task task(type, name, what);
	task.run();
	return read_targets(task);
}

} // namespace

std::string format_table(const Table &table)
{
	std::string out;
	for (const Target &t : table)
		out += fmt::format("{} {} {} {}\n", t.start, t.length, t.type, t.params);
	return out;
}

std::optional<Info> info(const std::string &name)
{
	Task task(DM_DEVICE_INFO, name, "info");
	task.run();
	dm_info i{};
	if (!dm_task_get_info(task.get(), &i))
		task.fail(EIO);
	if (!i.exists)
		return std::nullopt;
	Info out;
	out.major = i.major;
	out.minor = i.minor;
	out.suspended = i.suspended;
	out.read_only = i.read_only;
	out.live_table = i.live_table;
	out.inactive_table = i.inactive_table;
	out.open_count = i.open_count;
	out.event_nr = i.event_nr;
	if (const char *uuid = dm_task_get_uuid(task.get()))
		out.uuid = uuid;
	return out;
}

std::vector<std::string> list()
{
	std::vector<std::string> names;
	std::optional<Task> made;
	try {
		made.emplace(DM_DEVICE_LIST, "", "list");
	} catch (const DeviceError &e) {
		if (e.error_number() == ENODEV)
			return names; // no device-mapper driver: no dm devices
		throw;
	}
	Task &task = *made;
	task.run();
	dm_names *n = dm_task_get_names(task.get());
	if (!n || !n->dev)
		return names;
	for (;;) {
		names.emplace_back(n->name);
		if (!n->next)
			break;
		n = reinterpret_cast<dm_names *>(reinterpret_cast<char *>(n) + n->next);
	}
	return names;
}

bool has_target(const std::string &type)
{
	Task task(DM_DEVICE_LIST_VERSIONS, "", "target list");
	task.run();
	dm_versions *v = dm_task_get_versions(task.get());
	if (!v)
		return false;
	for (;;) {
		if (type == v->name)
			return true;
		if (!v->next)
			return false;
		v = reinterpret_cast<dm_versions *>(reinterpret_cast<char *>(v) + v->next);
	}
}

Table table(const std::string &name) { return query(name, DM_DEVICE_TABLE, "table"); }
Table status(const std::string &name) { return query(name, DM_DEVICE_STATUS, "status"); }

void create(const std::string &name, const std::string &uuid, const Table &table, bool read_only)
{
	Task task(DM_DEVICE_CREATE, name, "create");
	if (!uuid.empty() && !dm_task_set_uuid(task.get(), uuid.c_str()))
		task.fail(EINVAL);
	if (read_only && !dm_task_set_ro(task.get()))
		task.fail(EINVAL);
	add_targets(task, table);
	task.run(true);
}

void load(const std::string &name, const Table &table)
{
	Task task(DM_DEVICE_RELOAD, name, "table load");
	add_targets(task, table);
	task.run();
}

void clear(const std::string &name)
{
	Task task(DM_DEVICE_CLEAR, name, "clear of the inactive table");
	task.run();
}

void suspend(const std::string &name, SuspendMode mode)
{
	Task task(DM_DEVICE_SUSPEND, name, "suspend");
	if (!mode.flush && !dm_task_no_flush(task.get()))
		task.fail(EINVAL);
	if (!mode.lockfs && !dm_task_skip_lockfs(task.get()))
		task.fail(EINVAL);
	task.run();
}

void resume(const std::string &name)
{
	Task task(DM_DEVICE_RESUME, name, "resume");
	task.run(true);
}

void remove(const std::string &name)
{
	Task task(DM_DEVICE_REMOVE, name, "remove");
	// udev's blkid probe may hold the device for a moment after a change.
	dm_task_retry_remove(task.get());
	task.run(true);
}

EventPoll::EventPoll() : fd_(::open("/dev/mapper/control", O_RDWR | O_CLOEXEC))
{
	if (fd_ < 0)
		throw DeviceError("/dev/mapper/control", errno, "cannot open /dev/mapper/control");
}

EventPoll::~EventPoll() { ::close(fd_); }

void EventPoll::arm()
{
	struct dm_ioctl io {};
	io.version[0] = DM_VERSION_MAJOR;
	io.data_size = sizeof(io);
	if (::ioctl(fd_, DM_DEV_ARM_POLL, &io) < 0)
		throw DeviceError("/dev/mapper/control", errno, "cannot arm the dm event poll");
}

void EventPoll::wait()
{
	struct pollfd p = {fd_, POLLIN, 0};
	if (::poll(&p, 1, look_again_ms) < 0 && errno != EINTR)
		throw DeviceError("/dev/mapper/control", errno, "cannot poll for dm events");
}

std::string message(const std::string &name, const std::string &text)
{
	Task task(DM_DEVICE_TARGET_MSG, name, fmt::format("message \"{}\"", text));
	if (!dm_task_set_sector(task.get(), 0) || !dm_task_set_message(task.get(), text.c_str()))
		task.fail(EINVAL);
	task.run();
	const char *reply = dm_task_get_message_response(task.get());
	return reply ? reply : "";
}

std::string device_path(const std::string &name) { return "/dev/mapper/" + name; }

std::string device_number(const std::string &name)
{
	auto i = info(name);
	if (!i)
		throw DeviceError(name, ENODEV, fmt::format("no device-mapper device named {}", name));
	return fmt::format("{}:{}", i->major, i->minor);
}

} // namespace snapmgr::dm
