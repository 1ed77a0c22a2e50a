#pragma once

// A tracked disk group (snapmgr(8) DISKS) as the Coriolis protocol sees one
// disk: one generation_id and one snapshot_number, where the library has a
// position per partition. The group's generation is a digest of each
// partition's generation and of its epoch relative to the first
// partition's; its number is the first partition's epoch. A group snapshot
// moves every partition's epoch by one, so the digest stays while the
// partitions are snapshotted together; a partition that starts a new
// generation or is snapshotted on its own changes it (the next backup is
// full). No state is kept: the earlier positions follow from the digest,
// the number and the positions now.

#include <cstdint>
#include <optional>
#include <string>

#include "snapmgr/disk.hpp"

namespace snapmgr::agent {

struct GroupPosition {
	std::string generation; // a UUID
	std::uint64_t number = 0;
};

GroupPosition group_position(const DiskPosition &members);
// Each partition's position at the group position `earlier`, given the
// positions now; nullopt when the digest differs (not the same generations
// and relative epochs).
std::optional<DiskPosition> members_at(const GroupPosition &earlier, const DiskPosition &now);

} // namespace snapmgr::agent
