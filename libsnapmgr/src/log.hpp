#pragma once
// The library's three ways to tell the caller's Logger something; each does
// nothing when the caller installed none.
#include <string_view>

#include "snapmgr/volume.hpp"

namespace snapmgr {

inline void log_step(const Logger &log, std::string_view text)
{
	if (log)
		log(Severity::step, text);
}

inline void log_warning(const Logger &log, std::string_view text)
{
	if (log)
		log(Severity::warning, text);
}

inline void log_error(const Logger &log, std::string_view text)
{
	if (log)
		log(Severity::error, text);
}

} // namespace snapmgr
