// snapmgr list and status: reports like lvs, from the kernel's status and
// the configuration.
#include "command.hpp"

#include <cmath>
#include <map>
#include <memory>
#include <sstream>

namespace snapmgr::cli {

namespace {

struct Field {
	const char *heading;
	const char *help;
	std::function<std::string(const VolumeStatus &, char unit)> value;
};

std::string or_dash(const std::string &s) { return s.empty() ? "-" : s; }

double used_percent(const VolumeStatus &s)
{
	return 100.0 * double(s.store_used_bytes) / double(s.store_room_bytes);
}

const std::map<std::string, Field> &fields()
{
	static const std::map<std::string, Field> table = {
		{"name", {"Volume", "volume name", [](auto &s, char) { return s.name; }}},
		{"state", {"State", "tracking, lost, next_boot, detached or given_back",
			   [](auto &s, char) { return std::string(to_string(s.state)); }}},
		{"device", {"Device", "the tracked device", [](auto &s, char) { return or_dash(s.device); }}},
		{"origin", {"Origin", "the device under the wrapper",
			    [](auto &s, char) { return or_dash(s.origin); }}},
		{"size", {"Size", "volume size",
			  [](auto &s, char u) { return format_size(s.size_bytes, u); }}},
		{"generation", {"Generation", "generation UUID",
				[](auto &s, char) { return s.kernel ? s.kernel->generation : "-"; }}},
		{"epoch", {"Epoch", "open epoch",
			   [](auto &s, char) { return s.kernel ? std::to_string(s.kernel->epoch) : "-"; }}},
		{"snapshot", {"Snapshot", "held snapshot: none, active or invalid",
			      [](auto &s, char) {
				      if (!s.kernel)
					      return std::string("-");
				      std::string state(to_string(s.kernel->snap_state));
				      if (s.kernel->snap_state == SnapState::invalid)
					      state += "(" + s.kernel->invalid_reason + ")";
				      return state;
			      }}},
		{"snap_epoch", {"SnapEpoch", "epoch the held snapshot closed",
				[](auto &s, char) {
					return s.kernel && s.kernel->snap_state != SnapState::none
						       ? std::to_string(s.kernel->snap_epoch)
						       : "-";
				}}},
		{"image", {"Image", "snapshot image device", [](auto &s, char) { return or_dash(s.image); }}},
		{"changed", {"Changed%", "chunks written in the open epoch",
			     [](auto &s, char) {
				     return s.kernel && s.kernel->chunks
						    ? fmt::format("{:.2f}", 100.0 * double(s.kernel->marked) /
									    double(s.kernel->chunks))
						    : "-";
			     }}},
		{"store", {"Store", "store file", [](auto &s, char) { return or_dash(s.config.store.string()); }}},
		{"store_size", {"StoreSize", "the store file's size",
				[](auto &s, char u) { return format_size(s.store_size_bytes, u); }}},
		{"store_room", {"Room", "the store's room for copies",
				[](auto &s, char u) { return format_size(s.store_room_bytes, u); }}},
		{"store_used", {"Used", "room the held snapshot uses",
				[](auto &s, char u) { return format_size(s.store_used_bytes, u); }}},
		{"store_used_percent", {"Used%", "share of the room the held snapshot uses",
					[](auto &s, char) {
						return s.store_room_bytes
							       ? fmt::format("{:.2f}", used_percent(s))
							       : "-";
					}}},
	};
	return table;
}

constexpr const char *default_fields =
	"name,state,origin,size,epoch,snapshot,image,store_used_percent";

std::vector<std::string> split_fields(const std::string &spec)
{
	std::vector<std::string> names;
	std::istringstream in(spec);
	for (std::string f; std::getline(in, f, ',');) {
		if (!fields().count(f)) {
			std::string known;
			for (const auto &[name, _] : fields())
				known += (known.empty() ? "" : ", ") + name;
			throw UsageError("-o", EINVAL,
					 fmt::format("unknown field '{}' (fields: {})", f, known));
		}
		names.push_back(f);
	}
	return names;
}

void print_table(const std::vector<VolumeStatus> &rows, const std::string &spec, char unit,
		 bool headings)
{
	auto names = split_fields(spec);
	std::vector<std::vector<std::string>> cells;
	std::vector<std::size_t> width(names.size(), 0);
	if (headings) {
		cells.emplace_back();
		for (const auto &n : names)
			cells.back().push_back(fields().at(n).heading);
	}
	for (const auto &row : rows) {
		cells.emplace_back();
		for (const auto &n : names)
			cells.back().push_back(fields().at(n).value(row, unit));
	}
	for (const auto &line : cells)
		for (std::size_t i = 0; i < line.size(); i++)
			width[i] = std::max(width[i], line[i].size());
	for (const auto &line : cells) {
		std::string out;
		for (std::size_t i = 0; i < line.size(); i++)
			out += fmt::format("{}{:<{}}", i ? "  " : "", line[i],
					   i + 1 < line.size() ? width[i] : 0);
		fmt::print("{}\n", out);
	}
}

struct ReportArgs {
	std::string fields = default_fields;
	std::string units = "h";
	bool no_headings = false;
};

void add_report_options(CLI::App *cmd, ReportArgs &a)
{
	cmd->add_option("-o,--options", a.fields,
			"Columns, comma separated: name,state,device,origin,size,generation,"
			"epoch,snapshot,snap_epoch,image,changed,store,store_size,store_room,"
			"store_used,store_used_percent")
		->capture_default_str();
	cmd->add_option("--units", a.units, "Sizes in h (human), b, k, m, g or t")
		->check(CLI::IsMember({"h", "b", "k", "m", "g", "t"}))
		->capture_default_str();
	cmd->add_flag("--noheadings", a.no_headings, "No heading line");
}

// On stderr, whatever the output format: the snapshot is lost if the store
// fills before someone acts.
void warn_if_store_nearly_full(const VolumeStatus &s)
{
	if (!s.store_nearly_full)
		return;
	fmt::print(stderr,
		   "snapmgr: warning: {}: the held snapshot has used {}% of the store's room "
		   "({} of {} bytes) and is lost when it fills; grow the store (snapmgr grow {} "
		   "SIZE) or keep snapmgr monitor {} running\n",
		   s.name, s.store_used_bytes * 100 / s.store_room_bytes, s.store_used_bytes,
		   s.store_room_bytes, s.name, s.name);
}

} // namespace

json to_json(const VolumeStatus &s)
{
	json j = {{"name", s.name},
		  {"state", std::string(to_string(s.state))},
		  {"device", s.device},
		  {"origin", s.origin},
		  {"size_bytes", s.size_bytes},
		  {"image", s.image},
		  {"store", s.config.store.string()},
		  {"store_size_bytes", s.store_size_bytes},
		  {"store_room_bytes", s.store_room_bytes},
		  {"store_used_bytes", s.store_used_bytes},
		  {"store_used_percent",
		   s.store_room_bytes ? json(std::round(used_percent(s) * 100) / 100) : json()},
		  {"store_nearly_full", s.store_nearly_full},
		  {"attach_error", s.attach_error}};
	if (s.kernel) {
		const CowfileStatus &k = *s.kernel;
		j["generation"] = k.generation;
		j["generation_epoch"] = k.generation_epoch;
		j["epoch"] = k.epoch;
		j["chunk_bytes"] = std::uint64_t(k.chunk_sectors) * 512;
		j["changed_chunks"] = k.marked;
		j["chunks"] = k.chunks;
		j["snapshot"] = std::string(to_string(k.snap_state));
		j["snapshot_epoch"] = k.snap_epoch;
		j["invalid_reason"] = k.invalid_reason;
		j["kernel_memory_bytes"] = k.core_bytes;
	}
	return j;
}

void add_list(CLI::App &app, Context &ctx)
{
	auto args = std::make_shared<ReportArgs>();
	auto cmd = app.add_subcommand("list", "List tracked and configured volumes");
	add_report_options(cmd, *args);
	cmd->callback([&ctx, args] {
		ctx.run = [&ctx, args] {
			auto rows = list();
			for (const auto &s : rows)
				warn_if_store_nearly_full(s);
			if (ctx.as_json) {
				json out = json::array();
				for (const auto &s : rows)
					out.push_back(to_json(s));
				ctx.print_json(out);
			} else {
				print_table(rows, args->fields, args->units[0], !args->no_headings);
			}
			return exit_ok;
		};
	});
}

void add_status(CLI::App &app, Context &ctx)
{
	auto name = std::make_shared<std::string>();
	auto cmd = app.add_subcommand("status", "Show one volume in detail");
	cmd->add_option("VOLUME", *name, "Volume name")->required();
	cmd->callback([&ctx, name] {
		ctx.run = [&ctx, name] {
			VolumeStatus s = status(*name);
			warn_if_store_nearly_full(s);
			if (ctx.as_json) {
				ctx.print_json(to_json(s));
				return exit_ok;
			}
			for (const char *f : {"name", "state", "device", "origin", "size", "generation",
					      "epoch", "snapshot", "snap_epoch", "image", "changed",
					      "store", "store_size", "store_room", "store_used",
					      "store_used_percent"})
				fmt::print("{:<11} {}\n", std::string(fields().at(f).heading) + ":",
					   fields().at(f).value(s, 'h'));
			if (!s.attach_error.empty())
				fmt::print("{:<11} {}\n", "Given back:", s.attach_error);
			return exit_ok;
		};
	});
}

} // namespace snapmgr::cli
