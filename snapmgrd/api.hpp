#pragma once

// The agent: the reference agent's HTTP API under /api/v1/ on top of
// libsnapmgr, and a store growth watcher per mapped volume. It keeps no
// state of its own in memory: volumes, snapshots and stores come from the
// kernel, /etc/snapmgr and the stores; which volumes one snapshot id covers
// from its snapshot records (snapshot_records.hpp).

#include <mutex>
#include <set>
#include <string>

#include <httplib.h>

#include "agent_config.hpp"
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
	// Whether the volume's store is in one of the store locations.
	bool mapped(const VolumeStatus &v) const;
	void watch(const std::string &volume);
	// Releases the volume's snapshot once no download holds its image
	// open, waiting at most write_timeout; UsageError (409) after that.
	void release_when_closed(const std::string &volume);

	AgentConfig config_;
	SnapshotRecords records_;
	// Serialises what changes volumes (mappings, snapshots, deletions);
	// reads and downloads do not take it.
	std::mutex change_;
	std::mutex watchers_lock_;
	std::set<std::string> watchers_;
};

} // namespace snapmgr::agent
