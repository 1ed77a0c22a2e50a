#include "snapmgr/cowfile.hpp"

#include <linux/dm-cowfile.h>

#include <cerrno>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include <fmt/core.h>

#include "snapmgr/error.hpp"

namespace snapmgr {

namespace {

std::vector<std::string> split_words(std::string_view text)
{
	std::istringstream in{std::string(text)};
	std::vector<std::string> words;
	for (std::string w; in >> w;)
		words.push_back(w);
	return words;
}

template <typename T> T parse_number(const std::string &word, const char *field, std::string_view line)
{
	T value{};
	auto [end, ec] = std::from_chars(word.data(), word.data() + word.size(), value);
	if (ec != std::errc() || end != word.data() + word.size())
		throw UsageError(field, EINVAL,
				 fmt::format("cannot parse {} \"{}\" in \"{}\"", field, word, line));
	return value;
}

} // namespace

dm::Target CowfileTable::target() const
{
	std::string params = fmt::format("{} {} {}", origin, store, sb_sector);
	if (low_water)
		params += fmt::format(" 2 low_water {}", *low_water);
	return {0, length, COWFILE_TARGET_NAME, params};
}

CowfileTable CowfileTable::parse(const dm::Target &target)
{
	if (target.type != COWFILE_TARGET_NAME || target.start != 0)
		throw UsageError("table", EINVAL,
				 fmt::format("not a cowfile table: {} {} {} {}", target.start,
					     target.length, target.type, target.params));
	auto words = split_words(target.params);
	if (words.size() < 3)
		throw UsageError("table", EINVAL,
				 fmt::format("cowfile table \"{}\" lacks arguments", target.params));
	CowfileTable t;
	t.length = target.length;
	t.origin = words[0];
	t.store = words[1];
	t.sb_sector = parse_number<std::uint64_t>(words[2], "superblock sector", target.params);
	for (std::size_t i = 4; i + 1 < words.size(); i++)
		if (words[i] == "low_water")
			t.low_water = parse_number<unsigned>(words[i + 1], "low_water", target.params);
	return t;
}

dm::Target snap_target(std::uint64_t length, const std::string &origin)
{
	return {0, length, COWFILE_SNAP_TARGET_NAME, origin};
}

std::string_view to_string(SnapState state) noexcept
{
	switch (state) {
	case SnapState::active:
		return "active";
	case SnapState::invalid:
		return "invalid";
	case SnapState::none:
		break;
	}
	return "none";
}

CowfileStatus CowfileStatus::parse(std::string_view params)
{
	auto w = split_words(params);
	if (w.size() != 12)
		throw UsageError("status", EINVAL,
				 fmt::format("cowfile status \"{}\" has {} fields, not 12", params,
					     w.size()));
	auto pair = [&](const std::string &word, const char *field) {
		auto slash = word.find('/');
		if (slash == std::string::npos)
			throw UsageError(field, EINVAL,
					 fmt::format("cannot parse {} \"{}\" in \"{}\"", field, word,
						     params));
		return std::pair{parse_number<std::uint64_t>(word.substr(0, slash), field, params),
				 parse_number<std::uint64_t>(word.substr(slash + 1), field, params)};
	};
	CowfileStatus s;
	if (w[0] != "tracking" && w[0] != "lost")
		throw UsageError("mode", EINVAL, fmt::format("unknown mode \"{}\" in \"{}\"", w[0], params));
	s.tracking = w[0] == "tracking";
	s.generation = w[1];
	s.generation_epoch = parse_number<std::uint64_t>(w[2], "generation epoch", params);
	s.epoch = parse_number<std::uint64_t>(w[3], "epoch", params);
	s.chunk_sectors = parse_number<std::uint32_t>(w[4], "chunk sectors", params);
	std::tie(s.marked, s.chunks) = pair(w[5], "marked/chunks");
	std::tie(s.slots_used, s.slots) = pair(w[6], "slots used/total");
	if (w[7] == "none")
		s.snap_state = SnapState::none;
	else if (w[7] == "active")
		s.snap_state = SnapState::active;
	else if (w[7] == "invalid")
		s.snap_state = SnapState::invalid;
	else
		throw UsageError("snap_state", EINVAL,
				 fmt::format("unknown snapshot state \"{}\" in \"{}\"", w[7], params));
	if (s.snap_state != SnapState::none)
		s.snap_epoch = parse_number<std::uint64_t>(w[8], "snapshot epoch", params);
	if (s.snap_state == SnapState::invalid)
		s.invalid_reason = w[9];
	s.core_bytes = parse_number<std::uint64_t>(w[10], "core bytes", params);
	s.copied_blocks = parse_number<std::uint64_t>(w[11], "copied blocks", params);
	return s;
}

std::vector<std::string> cowfile_devices_using_store(unsigned major, unsigned minor,
						     std::uint64_t sb_sector)
{
	std::vector<std::string> users;
	if (!std::filesystem::exists("/sys/module/dm_cowfile"))
		return users;
	const std::string device = fmt::format("{}:{}", major, minor);
	for (const std::string &name : dm::list()) {
		for (const dm::Target &target : dm::table(name)) {
			if (target.type != COWFILE_TARGET_NAME)
				continue;
			CowfileTable t = CowfileTable::parse(target);
			if (t.sb_sector == sb_sector &&
			    (t.store == device || dm::device_number(name) == device))
				users.push_back(name);
		}
	}
	return users;
}

std::string device_node(const std::string &number)
{
	std::ifstream dm_name(fmt::format("/sys/dev/block/{}/dm/name", number));
	if (std::string name; std::getline(dm_name, name) && !name.empty())
		return "/dev/mapper/" + name;
	std::ifstream in(fmt::format("/sys/dev/block/{}/uevent", number));
	for (std::string line; std::getline(in, line);)
		if (line.rfind("DEVNAME=", 0) == 0)
			return "/dev/" + line.substr(8);
	throw DeviceError(number, ENODEV, fmt::format("no block device {}", number));
}

} // namespace snapmgr
