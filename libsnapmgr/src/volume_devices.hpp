#pragma once

// Names and lookups of the dm devices that make up a tracked volume:
//   <name>       the cowfile wrapper (a dm volume keeps its own name and uuid)
//   <name>-real  under an inserted wrapper: the volume's original table
//   <name>-snap  the read-only image of the held snapshot

#include <functional>
#include <optional>
#include <vector>
#include <string>

#include "snapmgr/config.hpp"
#include "snapmgr/cowfile.hpp"
#include "store.hpp"
#include "snapmgr/volume.hpp"

namespace snapmgr {

std::string real_name(const std::string &name);
std::string image_name(const std::string &name);
// dm UUIDs: "SNAPMGR-<store uuid>[-real|-snap]".
std::string dm_uuid(const Uuid &store, std::string_view suffix = {});

// The cowfile table of dm device `name`, or nullopt when there is no such
// device or it is not a cowfile device.
std::optional<CowfileTable> attached_table(const std::string &name);
CowfileStatus kernel_status(const std::string &name);
bool dm_exists(const std::string &name);

// Creates the read-only image device <name>-snap of the held snapshot.
void create_image(const std::string &name, const CowfileTable &table, const Uuid &store_uuid);

// Opens the store the kernel uses, from the table's store device.
StoreReader open_attached_store(const CowfileTable &table);

// untrack() for a caller that holds the volume's lock already.
void untrack_locked(const std::string &name, const UntrackOptions &options);

// snapshot() that calls while_suspended once every volume is suspended and
// snapshotted, before any is resumed (a disk's gaps are read there); when
// it throws, nothing is left snapshotted.
std::vector<SnapshotResult> snapshot_with(const std::vector<std::string> &names,
					  const Logger &log,
					  const std::function<void()> &while_suspended);

// changes() for a caller that holds the volume's lock already.
Changes changes_locked(const std::string &name, const std::optional<Position> &since);

} // namespace snapmgr
