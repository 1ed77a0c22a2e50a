#pragma once

#include <string_view>

namespace snapmgr {

// The package version, as the build system set it.
std::string_view version() noexcept;

} // namespace snapmgr
