#include "disk_group.hpp"

#include <fmt/core.h>

namespace snapmgr::agent {

namespace {

// FNV-1a, 64 bits, from a given basis: two bases make a 128-bit digest.
std::uint64_t fnv1a(const std::string &text, std::uint64_t hash)
{
	for (const unsigned char c : text) {
		hash ^= c;
		hash *= 0x100000001b3ull;
	}
	return hash;
}

} // namespace

GroupPosition group_position(const DiskPosition &members)
{
	GroupPosition out;
	if (members.empty())
		return out;
	out.number = members.begin()->second.epoch;
	std::string text;
	for (const auto &[volume, at] : members)
		text += fmt::format("{}={}:{};", volume, format_uuid(at.generation),
				    static_cast<std::int64_t>(at.epoch - out.number));
	const std::uint64_t halves[2] = {fnv1a(text, 0xcbf29ce484222325ull),
					 fnv1a(text, 0x84222325cbf29ce4ull)};
	Uuid digest{};
	for (std::size_t i = 0; i < 16; i++)
		digest[i] = std::uint8_t(halves[i / 8] >> (8 * (i % 8)));
	digest[6] = std::uint8_t((digest[6] & 0x0f) | 0x80); // version 8: custom
	digest[8] = std::uint8_t((digest[8] & 0x3f) | 0x80); // RFC 9562 variant
	out.generation = format_uuid(digest);
	return out;
}

std::optional<DiskPosition> members_at(const GroupPosition &earlier, const DiskPosition &now)
{
	const GroupPosition current = group_position(now);
	if (now.empty() || current.generation != earlier.generation || earlier.number > current.number)
		return std::nullopt;
	DiskPosition out;
	for (const auto &[volume, at] : now)
		out[volume] = Position{at.generation, earlier.number + (at.epoch - current.number)};
	return out;
}

} // namespace snapmgr::agent
