#pragma once

// Device-mapper through libdevmapper: one RAII task per ioctl, udev cookie
// synchronisation when udev runs (libdevmapper makes the /dev/mapper nodes
// itself when it does not, as in the test VM). Every failure throws
// DeviceError naming the dm device and the operation.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace snapmgr::dm {

// Our devices' dm UUIDs start with this, so that udev rules and
// `dmsetup ls` can tell them apart from LVM's ("LVM-") and others.
inline constexpr std::string_view uuid_prefix = "SNAPMGR-";

struct Target {
	std::uint64_t start = 0;
	std::uint64_t length = 0;
	std::string type;
	std::string params;
	bool operator==(const Target &) const = default;
};
using Table = std::vector<Target>;

// "start length type params" lines, as dmsetup table prints them.
std::string format_table(const Table &table);

struct Info {
	unsigned major = 0;
	unsigned minor = 0;
	bool suspended = false;
	bool read_only = false;
	bool live_table = false;
	bool inactive_table = false;
	int open_count = 0;
	std::uint32_t event_nr = 0; // dm events the device has raised
	std::string uuid;
};

// nullopt when no dm device has this name.
std::optional<Info> info(const std::string &name);
std::vector<std::string> list();
// Whether the kernel has this target type loaded (dmsetup targets).
bool has_target(const std::string &type);
// The live table (status=false) or its status lines (status=true).
Table table(const std::string &name);
Table status(const std::string &name);

void create(const std::string &name, const std::string &uuid, const Table &table,
	    bool read_only = false);
// Loads an inactive table; resume() makes it live.
void load(const std::string &name, const Table &table);
// Drops an inactive table that will not be resumed.
void clear(const std::string &name);

struct SuspendMode {
	bool flush = true;  // wait for in-flight I/O
	bool lockfs = true; // freeze the filesystem on it
};
void suspend(const std::string &name, SuspendMode mode = {});
void resume(const std::string &name);
void remove(const std::string &name);
// Wakes on any dm device's event without holding a device (a DM_DEV_WAIT
// waiter holds its device, and the kernel's removal of a device waits for
// its holders): arm(), look at the state, then wait(), which returns at once
// if an event came since arm(), and at the latest after look_again_ms, so
// that the caller notices a device that went away.
class EventPoll {
public:
	static constexpr int look_again_ms = 5000;

	EventPoll();
	~EventPoll();
	EventPoll(const EventPoll &) = delete;
	EventPoll &operator=(const EventPoll &) = delete;
	void arm();
	void wait();

private:
	int fd_ = -1;
};
// Sends a target message to sector 0; returns the target's reply, if any.
std::string message(const std::string &name, const std::string &text);

// /dev/mapper/<name>
std::string device_path(const std::string &name);
// "major:minor" of a dm device, as tables refer to devices.
std::string device_number(const std::string &name);

} // namespace snapmgr::dm
