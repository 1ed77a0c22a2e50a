// Whole disks in the commands that take a volume: track of a partitioned
// disk, and snapshot, release, backup and untrack of a tracked disk's name.
#include "command.hpp"

#include <numeric>

namespace snapmgr::cli {

namespace {

json to_json(const DiskPartition &p)
{
	return {{"number", p.number},     {"device", "/dev/" + p.kernel_name},
		{"start_bytes", p.start_bytes}, {"size_bytes", p.size_bytes},
		{"type", p.type},         {"fs_type", p.fs_type},
		{"role", std::string(to_string(p.role))},
		{"volume", p.volume},     {"reason", p.reason}};
}

json ranges_json(const std::vector<ByteRange> &ranges)
{
	json out = json::array();
	for (const auto &r : ranges)
		out.push_back({{"start", r.start}, {"length", r.length}});
	return out;
}

} // namespace

bool names_disk(const std::string &name)
{
	return !load_config(name) && load_disk_config(name).has_value();
}

int report_disk_tracked(const DiskTrackResult &r, bool no_monitor, const Context &ctx)
{
	json volumes = json::array();
	for (const auto &v : r.volumes) {
		json j = to_json(v);
		j["monitor"] = no_monitor ? json(nullptr)
					  : enable_monitor(v.name, v.outcome == TrackOutcome::tracking,
							   ctx);
		volumes.push_back(j);
	}
	if (ctx.as_json) {
		json parts = json::array();
		for (const auto &p : r.disk.partitions)
			parts.push_back(to_json(p));
		ctx.print_json({{"disk", r.disk.name},
				{"device", r.disk.device},
				{"table_type", r.disk.table_type},
				{"partitions", parts},
				{"volumes", volumes}});
		return exit_ok;
	}
	fmt::print("{}: a {} disk of {} partitions, tracked as a group\n", r.disk.name,
		   r.disk.table_type, r.disk.partitions.size());
	for (const auto &p : r.disk.partitions) {
		if (p.role == PartitionRole::tracked) {
			auto v = std::find_if(r.volumes.begin(), r.volumes.end(),
					      [&](const auto &t) { return t.name == p.volume; });
			fmt::print("{}: partition {} ({}): {}\n", r.disk.name, p.number, p.fs_type,
				   v != r.volumes.end() && v->outcome == TrackOutcome::next_boot
					   ? "tracked from the next boot (it is mounted)"
					   : "tracked, volume " + p.volume);
		} else {
			fmt::print("{}: partition {}: {} in backups: {}\n", r.disk.name, p.number,
				   p.role == PartitionRole::zeros ? "zeros" : "copied live", p.reason);
		}
	}
	return exit_ok;
}

int report_disk_snapshot(const DiskSnapshotResult &r, const Context &ctx)
{
	std::string position;
	for (const auto &v : r.volumes)
		position += fmt::format("{}{}={}:{}", position.empty() ? "" : ",", v.name,
					v.generation, v.epoch);
	if (ctx.as_json) {
		json volumes = json::array();
		for (const auto &v : r.volumes)
			volumes.push_back({{"name", v.name},
					   {"image", v.image},
					   {"position", fmt::format("{}:{}", v.generation, v.epoch)}});
		ctx.print_json({{"disk", r.name},
				{"position", position},
				{"volumes", volumes},
				{"captured_bytes", r.captured_bytes},
				{"live", ranges_json(r.live)}});
		return exit_ok;
	}
	for (const auto &v : r.volumes)
		fmt::print("{}: {}: snapshot of epoch {} at {}\n", r.name, v.name, v.epoch, v.image);
	fmt::print("{}: {} bytes outside the partitions read at the instant\n", r.name,
		   r.captured_bytes);
	fmt::print("{}: position {}\n", r.name, position);
	for (const auto &l : r.live)
		fmt::print("{}: bytes {}+{} are not frozen: a backup reads them live\n", r.name,
			   l.start, l.length);
	return exit_ok;
}

int report_disk_backup(const DiskBackupResult &r, const Context &ctx)
{
	DiskPosition position;
	for (const auto &v : r.volumes)
		position[v.name] = v.position;
	if (ctx.as_json) {
		json volumes = json::array();
		for (const auto &v : r.volumes)
			volumes.push_back({{"name", v.name},
					   {"backup_type", v.full ? "full" : "incremental"},
					   {"full_reason", v.full_reason},
					   {"since", v.since ? v.since->to_string() : ""},
					   {"position", v.position.to_string()},
					   {"copied_bytes", v.copied_bytes},
					   {"ranges", v.ranges}});
		ctx.print_json({{"disk", r.name},
				{"position", to_string(position)},
				{"image", r.image.string()},
				{"size_bytes", r.size_bytes},
				{"copied_bytes", r.copied_bytes},
				{"volumes", volumes},
				{"live", ranges_json(r.live)},
				{"zeros", ranges_json(r.zeros)}});
		return exit_ok;
	}
	for (const auto &v : r.volumes)
		fmt::print("{}: {}: {} ({}), {} bytes in {} ranges\n", r.name, v.name,
			   v.full ? "full" : "incremental since " + v.since->to_string(),
			   v.full ? v.full_reason : "changes only", v.copied_bytes, v.ranges);
	for (const auto &l : r.live)
		fmt::print("{}: bytes {}+{} copied from the live disk, not from the instant\n",
			   r.name, l.start, l.length);
	fmt::print("{}: disk image {} ({} bytes), {} bytes copied, position {}\n", r.name,
		   r.image.string(), r.size_bytes, r.copied_bytes, to_string(position));
	return exit_ok;
}

int report_disk_changes(const DiskChanges &c, const Context &ctx)
{
	std::uint64_t total = 0;
	for (const auto &r : c.ranges)
		total += r.length;
	if (ctx.as_json) {
		json volumes = json::array();
		for (const auto &v : c.volumes)
			volumes.push_back({{"name", v.name},
					   {"backup_type", v.set.full ? "full" : "incremental"},
					   {"full_reason", v.set.full_reason},
					   {"position", v.now.to_string()},
					   {"chunk_bytes", v.chunk_bytes}});
		ctx.print_json({{"disk", c.name},
				{"position", to_string(c.now)},
				{"size_bytes", c.size_bytes},
				{"changed_bytes", total},
				{"volumes", volumes},
				{"untracked", ranges_json(c.untracked)},
				{"ranges", ranges_json(c.ranges)}});
		return exit_ok;
	}
	for (const auto &v : c.volumes)
		fmt::print("{}: {}: {}\n", c.name, v.name,
			   v.set.full ? "full: " + v.set.full_reason : std::string("incremental"));
	fmt::print("{}: {} bytes in {} ranges, of which {} bytes outside the tracked partitions\n",
		   c.name, total, c.ranges.size(),
		   std::accumulate(c.untracked.begin(), c.untracked.end(), std::uint64_t(0),
				   [](std::uint64_t n, const ByteRange &r) { return n + r.length; }));
	for (const auto &r : c.ranges)
		fmt::print("{} {}\n", r.start, r.length);
	return exit_ok;
}

int report_disk_status(const DiskStatus &s, const Context &ctx)
{
	auto state_of = [&](const std::string &volume) -> const VolumeStatus * {
		for (const auto &v : s.volumes)
			if (v.name == volume)
				return &v;
		return nullptr;
	};
	if (ctx.as_json) {
		json parts = json::array();
		for (const auto &p : s.disk.partitions) {
			json j = to_json(p);
			const VolumeStatus *v = state_of(p.volume);
			j["state"] = v ? json(std::string(to_string(v->state))) : json();
			j["snapshot"] = v && v->kernel ? json(std::string(to_string(v->kernel->snap_state)))
						       : json();
			parts.push_back(j);
		}
		ctx.print_json({{"disk", s.disk.name},
				{"device", s.disk.device},
				{"table_type", s.disk.table_type},
				{"table_uuid", s.disk.table_uuid},
				{"size_bytes", s.disk.size_bytes},
				{"table_changed", s.table_changed ? json(*s.table_changed) : json()},
				{"snapshot_held", s.snapshot_held},
				{"partitions", parts}});
		return exit_ok;
	}
	fmt::print("Disk:       {} ({}, {} table {}, {} bytes)\n", s.disk.name, s.disk.device,
		   s.disk.table_type, s.disk.table_uuid, s.disk.size_bytes);
	fmt::print("Table:      {}\n", s.table_changed ? "CHANGED: " + *s.table_changed
						     : std::string("as tracked"));
	fmt::print("Snapshot:   {}\n", s.snapshot_held ? "held" : "none");
	for (const auto &p : s.disk.partitions) {
		const VolumeStatus *v = state_of(p.volume);
		if (v)
			fmt::print("Partition {}: {} volume {}, {}, snapshot {}\n", p.number, p.fs_type,
				   p.volume, to_string(v->state),
				   v->kernel ? to_string(v->kernel->snap_state) : "-");
		else
			fmt::print("Partition {}: {}: {}\n", p.number, to_string(p.role), p.reason);
	}
	return exit_ok;
}

} // namespace snapmgr::cli
