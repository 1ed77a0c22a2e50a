#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace snapmgr {

// Names of the loaded cowfile devices whose table uses the store whose
// superblock is at sb_sector on block device major:minor. Empty when the
// dm-cowfile module is not loaded (nothing can use a store then).
std::vector<std::string> cowfile_devices_using(unsigned major, unsigned minor,
					       std::uint64_t sb_sector);

} // namespace snapmgr
