#pragma once

// Before a table points the kernel at a store, and before anything writes to
// one: is the store file still there, pinned, on the blocks the store
// records? Its blocks alone cannot say (a store deleted while its volume was
// not attached leaves them intact until the filesystem reuses them), so this
// asks the filesystem, mounting it read-only for a moment when it is not
// mounted.

#include <optional>
#include <span>
#include <string>

#include "snapmgr/config.hpp"
#include "store.hpp"

namespace snapmgr {

// Why the store of `config` cannot be trusted to own the blocks `recorded`
// (the extents in its superblock's table) on store_device, or nullopt when
// it can, or when it cannot be checked: a configuration without
// store_in_fs, a filesystem other than ext4 and xfs.
std::optional<std::string> store_file_problem(const VolumeConfig &config,
					      const std::string &store_device,
					      std::span<const StoreExtent> recorded);

} // namespace snapmgr
