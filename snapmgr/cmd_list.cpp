// snapmgr list and status: reports like lvs, from the kernel's status and
// the configuration.
#include "command.hpp"

#include <cmath>
#include <functional>
#include <memory>
#include <sstream>

namespace snapmgr::cli {

namespace {

// One report table (as lvm2's columns.h): each field is a column of list,
// a line of status and a JSON key (the name, with _bytes for a size), so
// the three cannot drift apart. man/check-against-help.py holds
// snapmgr(8)'s field list to it.
enum class Kind { text, size, count, percent, flag };

struct Field {
	const char *name;
	const char *heading;
	const char *help;
	Kind kind;
	// The JSON value; null (no kernel status, no store) shows as "-".
	std::function<json(const VolumeStatus &)> value;
	// What list and status show instead of value, when they differ.
	std::function<std::string(const VolumeStatus &)> text = nullptr;
};

json text_or_null(const std::string &s) { return s.empty() ? json() : json(s); }

double percent(std::uint64_t part, std::uint64_t whole)
{
	return std::round(10000.0 * double(part) / double(whole)) / 100;
}

// Takes the kernel's status of an attached volume; null otherwise.
template <typename F> std::function<json(const VolumeStatus &)> kernel(F get)
{
	return [get](const VolumeStatus &s) { return s.kernel ? json(get(*s.kernel)) : json(); };
}

const std::vector<Field> &fields()
{
	static const std::vector<Field> table = {
		{"name", "Volume", "volume name", Kind::text, [](auto &s) { return json(s.name); }},
		{"disk", "Disk", "the tracked disk it is a partition of, if any", Kind::text,
		 [](auto &s) { return text_or_null(s.disk); }},
		{"state", "State", "tracking, lost, next_boot, detached or given_back", Kind::text,
		 [](auto &s) { return json(std::string(to_string(s.state))); }},
		{"device", "Device", "the tracked device (the wrapper when attached)", Kind::text,
		 [](auto &s) { return text_or_null(s.device); }},
		{"origin", "Origin", "the device under the wrapper", Kind::text,
		 [](auto &s) { return text_or_null(s.origin); }},
		{"size", "Size", "volume size", Kind::size, [](auto &s) { return json(s.size_bytes); }},
		{"generation", "Generation", "generation UUID", Kind::text,
		 kernel([](auto &k) { return k.generation; })},
		{"generation_epoch", "GenEpoch", "the generation's first epoch", Kind::count,
		 kernel([](auto &k) { return k.generation_epoch; })},
		{"epoch", "Epoch", "open epoch", Kind::count, kernel([](auto &k) { return k.epoch; })},
		{"snapshot", "Snapshot", "held snapshot: none, active or invalid", Kind::text,
		 kernel([](auto &k) { return std::string(to_string(k.snap_state)); }),
		 [](auto &s) {
			 if (!s.kernel)
				 return std::string("-");
			 std::string state(to_string(s.kernel->snap_state));
			 if (s.kernel->snap_state == SnapState::invalid)
				 state += "(" + s.kernel->invalid_reason + ")";
			 return state;
		 }},
		{"snapshot_epoch", "SnapEpoch", "epoch the held snapshot closed", Kind::count,
		 [](auto &s) {
			 return s.kernel && s.kernel->snap_state != SnapState::none
					? json(s.kernel->snap_epoch)
					: json();
		 }},
		{"invalid_reason", "Invalid", "why the held snapshot became invalid", Kind::text,
		 kernel([](auto &k) { return text_or_null(k.invalid_reason); })},
		{"image", "Image", "snapshot image device", Kind::text,
		 [](auto &s) { return text_or_null(s.image); }},
		{"chunk", "Chunk", "tracking chunk size", Kind::size,
		 kernel([](auto &k) { return std::uint64_t(k.chunk_sectors) * 512; })},
		{"chunks", "Chunks", "chunks in the volume", Kind::count,
		 kernel([](auto &k) { return k.chunks; })},
		{"changed_chunks", "Changed", "chunks written in the open epoch", Kind::count,
		 kernel([](auto &k) { return k.marked; })},
		{"changed_percent", "Changed%", "the same as a share of the chunks", Kind::percent,
		 [](auto &s) {
			 return s.kernel && s.kernel->chunks
					? json(percent(s.kernel->marked, s.kernel->chunks))
					: json();
		 }},
		{"store", "Store", "store file", Kind::text,
		 [](auto &s) { return text_or_null(s.config.store.string()); }},
		{"store_size", "StoreSize", "the store file's size", Kind::size,
		 [](auto &s) { return json(s.store_size_bytes); }},
		{"store_room", "Room", "the store's room for copies", Kind::size,
		 [](auto &s) { return json(s.store_room_bytes); }},
		{"store_used", "Used", "room the held snapshot uses", Kind::size,
		 [](auto &s) { return json(s.store_used_bytes); }},
		{"store_used_percent", "Used%", "share of the room the held snapshot uses",
		 Kind::percent,
		 [](auto &s) {
			 return s.store_room_bytes ? json(percent(s.store_used_bytes, s.store_room_bytes))
						   : json();
		 }},
		{"store_nearly_full", "NearlyFull", "the held snapshot's store is past its low water mark",
		 Kind::flag, [](auto &s) { return json(s.store_nearly_full); }},
		{"kernel_memory", "KernelMem", "kernel memory the volume uses", Kind::size,
		 kernel([](auto &k) { return k.core_bytes; })},
		{"attach_error", "GivenBack", "why boot gave the volume back", Kind::text,
		 [](auto &s) { return text_or_null(s.attach_error); }},
	};
	return table;
}

const Field *find_field(const std::string &name)
{
	for (const Field &f : fields())
		if (name == f.name)
			return &f;
	return nullptr;
}

std::string field_names()
{
	std::string names;
	for (const Field &f : fields())
		names += (names.empty() ? "" : ",") + std::string(f.name);
	return names;
}

std::string json_key(const Field &f)
{
	return f.kind == Kind::size ? std::string(f.name) + "_bytes" : f.name;
}

struct ReportArgs {
	std::string fields; // empty: the default, all fields in JSON
	std::string units = "h";
	std::string separator;
	bool no_headings = false;
	bool no_suffix = false;
};

std::string cell(const Field &f, const VolumeStatus &s, const ReportArgs &a)
{
	if (f.text)
		return f.text(s);
	const json v = f.value(s);
	if (v.is_null())
		return "-";
	switch (f.kind) {
	case Kind::text:
		return v.get<std::string>();
	case Kind::size:
		return format_size(v.get<std::uint64_t>(), a.units[0], !a.no_suffix);
	case Kind::count:
		return std::to_string(v.get<std::uint64_t>());
	case Kind::percent:
		return fmt::format("{:.2f}", v.get<double>());
	case Kind::flag:
		return v.get<bool>() ? "yes" : "no";
	}
	return "-";
}

constexpr const char *default_fields =
	"name,state,origin,size,epoch,snapshot,image,store_used_percent";

// -o as lvs takes it: FIELDS replaces the default, +FIELDS adds to it.
std::vector<const Field *> selected(const std::string &spec)
{
	std::string list = spec.empty() ? default_fields : spec;
	if (list.starts_with('+'))
		list = std::string(default_fields) + "," + list.substr(1);
	std::vector<const Field *> out;
	std::istringstream in(list);
	for (std::string name; std::getline(in, name, ',');) {
		const Field *f = find_field(name);
		if (!f)
			throw UsageError("-o", EINVAL,
					 fmt::format("unknown field '{}' (fields: {})", name,
						     field_names()));
		out.push_back(f);
	}
	return out;
}

json report_json(const VolumeStatus &s, const std::vector<const Field *> &which)
{
	json j = json::object();
	for (const Field *f : which)
		j[json_key(*f)] = f->value(s);
	return j;
}

std::vector<const Field *> all_fields()
{
	std::vector<const Field *> out;
	for (const Field &f : fields())
		out.push_back(&f);
	return out;
}

// Aligned columns; with --separator, cells joined by it and not padded.
void print_table(const std::vector<VolumeStatus> &rows, const ReportArgs &a)
{
	const auto which = selected(a.fields);
	std::vector<std::vector<std::string>> cells;
	if (!a.no_headings) {
		cells.emplace_back();
		for (const Field *f : which)
			cells.back().push_back(f->heading);
	}
	for (const auto &row : rows) {
		cells.emplace_back();
		for (const Field *f : which)
			cells.back().push_back(cell(*f, row, a));
	}
	std::vector<std::size_t> width(which.size(), 0);
	if (a.separator.empty())
		for (const auto &line : cells)
			for (std::size_t i = 0; i < line.size(); i++)
				width[i] = std::max(width[i], line[i].size());
	const std::string separator = a.separator.empty() ? "  " : a.separator;
	for (const auto &line : cells) {
		std::string out;
		for (std::size_t i = 0; i < line.size(); i++)
			out += fmt::format("{}{:<{}}", i ? separator : "", line[i],
					   i + 1 < line.size() ? width[i] : 0);
		fmt::print("{}\n", out);
	}
}

void add_report_options(CLI::App *cmd, ReportArgs &a)
{
	cmd->add_option("-o,--options", a.fields,
			fmt::format("Fields to show, or +FIELDS to add them to the default "
				    "({}). Columns, comma separated: {}",
				    default_fields, field_names()));
	cmd->add_option("--units", a.units, "Sizes in h (human), b, k, m, g or t")
		->check(CLI::IsMember({"h", "b", "k", "m", "g", "t"}))
		->capture_default_str();
	cmd->add_flag("--noheadings", a.no_headings, "No heading line");
	cmd->add_option("--separator", a.separator, "Columns separated by this, not aligned");
	cmd->add_flag("--nosuffix", a.no_suffix, "Sizes without their unit");
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

json to_json(const VolumeStatus &s) { return report_json(s, all_fields()); }

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
				const auto which =
					args->fields.empty() ? all_fields() : selected(args->fields);
				json out = json::array();
				for (const auto &s : rows)
					out.push_back(report_json(s, which));
				ctx.print_json(out);
			} else {
				print_table(rows, *args);
			}
			return exit_ok;
		};
	});
}

void add_status(CLI::App &app, Context &ctx)
{
	auto name = std::make_shared<std::string>();
	auto cmd = app.add_subcommand("status", "Show one volume, or a disk, in detail");
	cmd->add_option("VOLUME", *name, "Volume or disk name")->required();
	cmd->callback([&ctx, name] {
		ctx.run = [&ctx, name] {
			if (names_disk(*name))
				return report_disk_status(disk_status(*name), ctx);
			VolumeStatus s = status(*name);
			warn_if_store_nearly_full(s);
			if (ctx.as_json) {
				ctx.print_json(to_json(s));
				return exit_ok;
			}
			const ReportArgs human;
			for (const Field &f : fields())
				fmt::print("{:<11} {}\n", std::string(f.heading) + ":", cell(f, s, human));
			return exit_ok;
		};
	});
}

} // namespace snapmgr::cli
