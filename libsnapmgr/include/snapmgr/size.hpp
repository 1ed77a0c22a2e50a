#pragma once

#include <cstdint>
#include <string>

namespace snapmgr {

// "8M", "1G", "4096", "64KiB", "2g": bytes, binary multiples (K, M, G, T,
// with or without "B"/"iB"). Throws UsageError naming `option`.
std::uint64_t parse_size(const std::string &text, const std::string &option);

} // namespace snapmgr
