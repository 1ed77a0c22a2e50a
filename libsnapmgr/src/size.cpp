#include "snapmgr/size.hpp"

#include <cerrno>
#include <cctype>

#include <fmt/core.h>

#include "snapmgr/error.hpp"

namespace snapmgr {

std::uint64_t parse_size(const std::string &text, const std::string &option)
{
	std::size_t end = 0;
	std::uint64_t value = 0;
	try {
		value = std::stoull(text, &end);
	} catch (const std::exception &) {
		end = 0;
	}
	if (end == 0 || text[0] == '-')
		throw UsageError(option, EINVAL, fmt::format("{}: '{}' is not a size", option, text));
	std::string suffix = text.substr(end);
	for (char &c : suffix)
		c = char(std::tolower(static_cast<unsigned char>(c)));
	if (suffix.ends_with("ib"))
		suffix.resize(suffix.size() - 2);
	else if (suffix.size() > 1 && suffix.ends_with("b"))
		suffix.resize(suffix.size() - 1);
	static const std::string units = "bkmgt";
	auto unit = suffix.empty() ? 0 : units.find(suffix);
	if (suffix.size() > 1 || unit == std::string::npos)
		throw UsageError(option, EINVAL,
				 fmt::format("{}: unknown unit in '{}' (use K, M, G or T)", option, text));
	unsigned shift = unsigned(unit) * 10;
	if (shift && value > (UINT64_MAX >> shift))
		throw UsageError(option, ERANGE, fmt::format("{}: '{}' is too large", option, text));
	return value << shift;
}

} // namespace snapmgr
