#pragma once

// Which volumes one snapshot id covers. The kernel knows each volume's held
// snapshot (generation and epoch) but not that several were taken together
// for one request, so the agent writes that down: one JSON file per
// snapshot in its state directory, written durably before the id is given
// out. A record whose volumes no longer hold its epoch is stale, and the
// agent says so instead of serving it.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace snapmgr::agent {

struct RecordedDisk {
	std::string disk;       // disk id
	std::string volume;     // snapmgr volume name
	std::string generation; // uuid
	std::uint64_t epoch = 0;
};

struct SnapshotRecord {
	std::string id; // decimal, as the reference agent's
	std::vector<RecordedDisk> disks;
};

// True when id can name a snapshot: 1-20 decimal digits.
bool valid_snapshot_id(const std::string &id);

class SnapshotRecords {
public:
	explicit SnapshotRecords(std::filesystem::path dir);
	std::string new_id() const;
	void save(const SnapshotRecord &record) const;
	std::optional<SnapshotRecord> load(const std::string &id) const;
	std::vector<SnapshotRecord> all() const;
	void remove(const std::string &id) const;

private:
	std::filesystem::path path_of(const std::string &id) const;
	std::filesystem::path dir_;
};

} // namespace snapmgr::agent
