#include "snapmgr/version.hpp"

namespace snapmgr {

std::string_view version() noexcept
{
	return SNAPMGR_VERSION;
}

} // namespace snapmgr
