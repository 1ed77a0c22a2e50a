#pragma once

// The agent: the reference agent's HTTP API under /api/v1/ on top of
// libsnapmgr, and a store growth watcher per mapped volume. It keeps no
// state of its own in memory: volumes, snapshots and stores come from the
// kernel, /etc/snapmgr and the stores; which volumes one snapshot id covers
// from its snapshot records (snapshot_records.hpp).

#include <functional>
#include <mutex>
#include <set>
#include <string>

#include <httplib.h>

#include "agent_config.hpp"
#include "snapmgr/disk.hpp"
#include "snapmgr/volume.hpp"
#include "snapshot_records.hpp"

namespace snapmgr::agent {

class Agent {
public:
	explicit Agent(AgentConfig config);
	// Tracks the configuration's mappings that are not tracked yet and
	// starts a store growth watcher for every mapped volume.
	void start();
	void install(httplib::Server &server);

private:
	// Tracks disk with its store in location, and watches it.
	TrackResult map(const std::string &disk, const std::filesystem::path &location);
	// Tracks a partitioned disk's partitions as a group (track_disk), the
	// stores of its unmounted ones in location, and watches them.
	DiskConfig map_disk(const std::string &disk, const std::filesystem::path &location);
	// Whether the volume's store is in one of the store locations.
	bool mapped(const VolumeStatus &v) const;
	void watch(const std::string &volume);
	// Runs release (of a volume's or a disk group's snapshot) once no
	// download holds an image open, waiting at most write_timeout; UsageError (409) after that.
	void release_when_closed(const std::function<void()> &release);

	AgentConfig config_;
	SnapshotRecords records_;
	// Serialises what changes volumes (mappings, snapshots, deletions);
	// reads and downloads do not take it.
	std::mutex change_;
	std::mutex watchers_lock_;
	std::set<std::string> watchers_;
};

} // namespace snapmgr::agent
