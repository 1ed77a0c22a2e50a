#pragma once

#include <cerrno>
#include <cstring>
#include <string>

#include <fmt/core.h>

#include "snapmgr/error.hpp"

namespace snapmgr {

// Throws DeviceError for the system call that just failed: "<object>:
// <what>: <strerror(errno)>", carrying errno.
[[noreturn]] inline void throw_errno(const std::string &object, const std::string &what)
{
	int e = errno;
	throw DeviceError(object, e, fmt::format("{}: {}: {}", object, what, std::strerror(e)));
}

} // namespace snapmgr
