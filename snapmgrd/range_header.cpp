// The Range header parser, replacing cpp-httplib's.
//
// Why: httplib 0.11 parses Range with a std::regex whose matcher recurses
// once per character, about half a KiB of stack each: an 8 KiB header (its
// line limit) takes some 5 MB, so a worker thread with a smaller stack
// (RLIMIT_STACK of 4 MiB or less) crashes the agent, before any of its
// handlers runs. The library cannot be told to parse it otherwise, but it
// calls its parser through the dynamic linker (its PLT), which binds the
// call to this definition, found first in the executable. The test
// agent.limits_on_the_host sends an 8 KiB Range to an agent with a 1 MiB
// stack limit and checks the answer.
//
// This parser is a loop with constant stack, and accepts and returns what
// httplib's does: "bytes=" then ranges "FIRST-LAST" (either may be empty)
// separated by "," and optional white space; FIRST > LAST, or a number
// that does not fit, makes the whole header invalid (httplib answers 416).

#include <cctype>
#include <charconv>
#include <string>

#include <httplib.h>

namespace httplib::detail {

bool parse_range_header(const std::string &s, Ranges &ranges)
{
	static const std::string unit = "bytes=";
	if (s.compare(0, unit.size(), unit) != 0)
		return false;
	const char *p = s.data() + unit.size();
	const char *const end = s.data() + s.size();
	// A number of one or more digits, or -1 when there is none.
	const auto number = [&p, end](ssize_t &out) {
		const char *start = p;
		while (p < end && std::isdigit(static_cast<unsigned char>(*p)))
			p++;
		if (p == start) {
			out = -1;
			return true;
		}
		long long value = 0;
		const auto [stop, error] = std::from_chars(start, p, value);
		out = ssize_t(value);
		return error == std::errc() && stop == p;
	};
	Ranges parsed;
	for (;;) {
		ssize_t first = -1, last = -1;
		if (!number(first) || p == end || *p++ != '-' || !number(last))
			return false;
		if (first != -1 && last != -1 && first > last)
			return false;
		parsed.emplace_back(first, last);
		if (p == end)
			break;
		if (*p++ != ',')
			return false;
		while (p < end && std::isspace(static_cast<unsigned char>(*p)))
			p++;
	}
	ranges.insert(ranges.end(), parsed.begin(), parsed.end());
	return true;
}

} // namespace httplib::detail
