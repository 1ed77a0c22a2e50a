#include "snapshot_records.hpp"

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <random>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "snapmgr/config.hpp"
#include "snapmgr/error.hpp"

namespace snapmgr::agent {
namespace fs = std::filesystem;
using json = nlohmann::json;

bool valid_snapshot_id(const std::string &id)
{
	return !id.empty() && id.size() <= 20 &&
	       std::all_of(id.begin(), id.end(), [](char c) { return c >= '0' && c <= '9'; });
}

SnapshotRecords::SnapshotRecords(fs::path dir) : dir_(std::move(dir))
{
	fs::create_directories(dir_);
}

fs::path SnapshotRecords::path_of(const std::string &id) const
{
	if (!valid_snapshot_id(id))
		throw UsageError(id, EINVAL, fmt::format("{} is not a snapshot id", id));
	return dir_ / (id + ".json");
}

std::string SnapshotRecords::new_id() const
{
	std::random_device random;
	std::uniform_int_distribution<std::uint64_t> number(1, UINT64_MAX);
	for (;;) {
		std::string id = std::to_string(number(random));
		if (!fs::exists(path_of(id)))
			return id;
	}
}

void SnapshotRecords::save(const SnapshotRecord &r) const
{
	json disks = json::array();
	for (const auto &d : r.disks)
		disks.push_back({{"disk", d.disk},
				 {"volume", d.volume},
				 {"generation", d.generation},
				 {"epoch", d.epoch}});
	write_file_durably(path_of(r.id), json{{"id", r.id}, {"disks", disks}}.dump(1) + "\n", 0600);
}

std::optional<SnapshotRecord> SnapshotRecords::load(const std::string &id) const
{
	std::ifstream in(path_of(id));
	if (!in)
		return std::nullopt;
	try {
		json j = json::parse(in);
		SnapshotRecord r{j.at("id").get<std::string>(), {}};
		for (const auto &d : j.at("disks"))
			r.disks.push_back({d.at("disk"), d.at("volume"), d.at("generation"),
					   d.at("epoch")});
		return r;
	} catch (const json::exception &e) {
		throw Error(path_of(id), EINVAL,
			    fmt::format("{}: not a snapshot record: {}", path_of(id).string(), e.what()));
	}
}

std::vector<SnapshotRecord> SnapshotRecords::all() const
{
	std::vector<std::string> ids;
	std::error_code ec;
	for (const auto &e : fs::directory_iterator(dir_, ec))
		if (e.path().extension() == ".json" && valid_snapshot_id(e.path().stem()))
			ids.push_back(e.path().stem());
	std::sort(ids.begin(), ids.end());
	std::vector<SnapshotRecord> records;
	for (const auto &id : ids)
		if (auto r = load(id))
			records.push_back(*r);
	return records;
}

void SnapshotRecords::remove(const std::string &id) const
{
	std::error_code ec;
	fs::remove(path_of(id), ec);
	if (ec)
		throw Error(path_of(id), ec.value(),
			    fmt::format("{}: {}", path_of(id).string(), ec.message()));
}

} // namespace snapmgr::agent
