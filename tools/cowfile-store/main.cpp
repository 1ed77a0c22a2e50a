// cowfile-store: the low-level store tool (in the spirit of thin_dump):
// create a store file, dump a store as the kernel sees it on its device,
// list changed ranges, destroy a store. Exit codes: 0 ok, 1 failed, 2 usage.
#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdint>
#include <iostream>
#include <optional>
#include <string>

#include "snapmgr/error.hpp"
#include "snapmgr/size.hpp"
#include "snapmgr/version.hpp"
#include "store.hpp" // the library's own, private

namespace {

using nlohmann::json;
using namespace snapmgr;

constexpr int exit_ok = 0;
constexpr int exit_failed = 1;
constexpr int exit_usage = 2;

json extents_json(const std::vector<StoreExtent> &extents)
{
	json list = json::array();
	std::uint64_t logical = 0;
	for (const StoreExtent &e : extents) {
		list.push_back({{"logical", logical}, {"sector", e.sector}, {"blocks", e.blocks}});
		logical += e.blocks;
	}
	return list;
}

void print_extents(const std::vector<StoreExtent> &extents)
{
	fmt::print("{:>12} {:>14} {:>12}\n", "logical", "sector", "blocks");
	std::uint64_t logical = 0;
	for (const StoreExtent &e : extents) {
		fmt::print("{:>12} {:>14} {:>12}\n", logical, e.sector, e.blocks);
		logical += e.blocks;
	}
}

std::string_view snap_state_name(std::uint32_t state)
{
	switch (state) {
	case COWFILE_SNAP_NONE:
		return "none";
	case COWFILE_SNAP_ACTIVE:
		return "active";
	case COWFILE_SNAP_INVALID:
		return "invalid";
	}
	return "unknown";
}

// The same words as the kernel's status line.
std::string_view invalid_reason_name(std::uint32_t reason)
{
	switch (reason) {
	case COWFILE_INVALID_NONE:
		return "-";
	case COWFILE_INVALID_STORE_FULL:
		return "store_full";
	case COWFILE_INVALID_STORE_IO:
		return "store_io_error";
	case COWFILE_INVALID_METADATA:
		return "metadata_error";
	case COWFILE_INVALID_ORIGIN_IO:
		return "origin_io_error";
	case COWFILE_INVALID_ORIGIN_CHANGED:
		return "origin_changed";
	}
	return "unknown";
}

struct StoreAddress {
	std::string device;
	std::uint64_t sb_sector = 0;
	bool through_file = false;

	void add_to(CLI::App *cmd)
	{
		cmd->add_option("DEVICE", device,
				"Store device (the store filesystem's block device), or with "
				"--through-file the store file")
			->required();
		cmd->add_option("SB_SECTOR", sb_sector, "Superblock sector on DEVICE (as in the table)");
		cmd->add_flag("--through-file", through_file,
			      "Read through the store file (O_DIRECT) instead of the device, when the "
			      "device cannot be opened");
	}
	StoreReader open() const
	{
		if (through_file)
			return StoreReader::open_through_file(device);
		return StoreReader::open_device(device, sb_sector);
	}
};

int run_create(const std::string &path, const std::string &size, std::uint64_t origin_sectors,
	       std::uint32_t chunk_sectors, bool as_json)
{
	StoreCreateOptions options;
	options.path = path;
	options.size_bytes = parse_size(size, "--size");
	options.origin_sectors = origin_sectors;
	options.chunk_sectors = chunk_sectors;
	CreatedStore store = StoreFile::create(options);
	if (as_json) {
		json out = {
			{"path", store.path.string()},
			{"store_device", store.store_device.path},
			{"store_devno", fmt::format("{}:{}", store.store_device.major,
						    store.store_device.minor)},
			{"sb_sector", store.sb_sector},
			{"store_uuid", format_uuid(store.store_uuid)},
			{"generation_uuid", format_uuid(store.generation_uuid)},
			{"chunk_sectors", store.chunk_sectors},
			{"origin_sectors", store.origin_sectors},
			{"size_bytes", options.size_bytes},
			{"data_slots", store.data_slots},
			{"layout",
			 {{"store_blocks", store.layout.store_blocks},
			  {"extent_table_blocks", store.layout.extent_table_blocks},
			  {"map_start", store.layout.map_start},
			  {"map_blocks", store.layout.map_blocks},
			  {"data_start", store.layout.data_start}}},
			{"extents", extents_json(store.extents)},
		};
		std::cout << out.dump(2) << '\n';
	} else {
		// Exactly the table arguments "<store_dev> <sb_sector>", one line,
		// so scripts can read them.
		fmt::print("{} {}\n", store.store_device.path, store.sb_sector);
	}
	return exit_ok;
}

int run_dump(const StoreAddress &address, bool as_json)
{
	StoreReader reader = address.open();
	const Superblock &sb = reader.superblock();
	if (as_json) {
		json out = {
			{"store_uuid", format_uuid(sb.store_uuid)},
			{"version", sb.version},
			{"flags", sb.flags},
			{"clean", sb.clean()},
			{"tracking_lost", sb.tracking_lost()},
			{"block_size", sb.block_size},
			{"chunk_sectors", sb.chunk_sectors},
			{"origin_sectors", sb.origin_sectors},
			{"sb_sector", sb.sb_sector},
			{"generation_uuid", format_uuid(sb.generation_uuid)},
			{"generation_epoch", sb.generation_epoch},
			{"epoch", sb.epoch},
			{"store_blocks", sb.store_blocks},
			{"nr_extents", sb.nr_extents},
			{"extent_table_blocks", sb.extent_table_blocks},
			{"extent_table_sectors", sb.extent_table_sectors},
			{"map_start", sb.map_start},
			{"map_blocks", sb.map_blocks},
			{"data_start", sb.data_start},
			{"snap_state", snap_state_name(sb.snap_state)},
			{"snap_invalid_reason", invalid_reason_name(sb.snap_invalid_reason)},
			{"snap_epoch", sb.snap_epoch},
			{"log_checkpoint", sb.log_checkpoint},
			{"data_slots_total", reader.data_slots()},
			{"origin_sum", sb.flags & COWFILE_SB_ORIGIN_SUM ? json(sb.origin_sum) : json()},
			{"extents", extents_json(reader.extents())},
		};
		std::cout << out.dump(2) << '\n';
		return exit_ok;
	}
	fmt::print("store            {} sector {}\n", address.device, sb.sb_sector);
	fmt::print("store_uuid       {}\n", format_uuid(sb.store_uuid));
	fmt::print("state            {}{}\n", sb.clean() ? "clean" : "in use or not unloaded cleanly",
		   sb.tracking_lost() ? ", tracking lost" : "");
	fmt::print("generation       {} (from epoch {})\n", format_uuid(sb.generation_uuid),
		   sb.generation_epoch);
	fmt::print("epoch            {}\n", sb.epoch);
	fmt::print("origin           {} sectors, chunk {} sectors\n", sb.origin_sectors,
		   sb.chunk_sectors);
	fmt::print("layout           {} blocks: extent table 1..{}, map {}..{}, data {}..{}\n",
		   sb.store_blocks, sb.extent_table_blocks, sb.map_start,
		   sb.map_start + sb.map_blocks - 1, sb.data_start, sb.store_blocks - 1);
	if (sb.snap_state == COWFILE_SNAP_NONE)
		fmt::print("snapshot         none\n");
	else
		fmt::print("snapshot         {} (epoch {}, {})\n", snap_state_name(sb.snap_state),
			   sb.snap_epoch, invalid_reason_name(sb.snap_invalid_reason));
	fmt::print("log              {} of {} slots durable at the last superblock write\n",
		   sb.log_checkpoint, reader.data_slots());
	if (sb.flags & COWFILE_SB_ORIGIN_SUM)
		fmt::print("origin sum       {:#010x} (crc32c of its first chunk at the clean unload)\n",
			   sb.origin_sum);
	fmt::print("extents          {}\n", sb.nr_extents);
	print_extents(reader.extents());
	return exit_ok;
}

int run_changes(const StoreAddress &address, std::uint64_t since,
		const std::string &generation_text, bool as_json)
{
	std::optional<Uuid> generation;
	if (!generation_text.empty()) {
		generation = parse_uuid(generation_text);
		if (!generation)
			throw UsageError("--generation", EINVAL,
					 fmt::format("'{}' is not a UUID", generation_text));
	}
	StoreReader reader = address.open();
	const Superblock &sb = reader.superblock();
	ChangeSet changes = reader.changes_since(since, generation);
	if (as_json) {
		// The keys of `snapmgr changes --json`, and what only the store
		// tells.
		json ranges = json::array();
		std::uint64_t total = 0;
		for (const ByteRange &r : changes.ranges) {
			ranges.push_back({{"start", r.start}, {"length", r.length}});
			total += r.length;
		}
		json out = {
			{"backup_type", changes.full ? "full" : "incremental"},
			{"full_reason", changes.full_reason},
			{"since", since},
			{"generation_uuid", format_uuid(sb.generation_uuid)},
			{"generation_epoch", sb.generation_epoch},
			{"epoch", sb.epoch},
			{"chunk_bytes", std::uint64_t(sb.chunk_sectors) * 512},
			{"size_bytes", sb.origin_sectors * 512},
			{"changed_bytes", total},
			{"ranges", ranges},
		};
		std::cout << out.dump(2) << '\n';
	} else if (changes.full) {
		fmt::print("full {}\n", changes.full_reason);
	} else {
		for (const ByteRange &r : changes.ranges)
			fmt::print("{} {}\n", r.start, r.length);
	}
	return exit_ok;
}

std::string hint_for(const Error &e)
{
	if (e.error_number() == EACCES || e.error_number() == EPERM)
		return " (this needs root)";
	return "";
}

} // namespace

int main(int argc, char **argv)
{
	CLI::App app{"cowfile-store: create, inspect and remove dm-cowfile store files"};
	app.set_version_flag("--version", std::string(snapmgr::version()));
	app.require_subcommand(1);
	app.footer("Exit codes: 0 ok, 1 failed, 2 usage error.");

	std::string path, size, generation;
	std::uint64_t origin_sectors = 0, since = 0;
	std::uint32_t chunk_sectors = COWFILE_DEFAULT_CHUNK_SECTORS;
	bool as_json = false;
	StoreAddress address;

	auto *create = app.add_subcommand("create", "Create, fill and pin a store file; prints "
						    "'<store_dev> <sb_sector>' for the cowfile table");
	create->add_option("PATH", path, "New store file (on ext4 or xfs)")->required();
	create->add_option("--size", size, "Store size in bytes; K, M, G, T suffixes")->required();
	create->add_option("--origin-sectors", origin_sectors,
			   "Size of the origin the store will track, in 512-byte sectors")
		->required();
	create->add_option("--chunk-sectors", chunk_sectors,
			   "Chunk size in sectors, power of two from 8 to 2048")
		->capture_default_str();
	create->add_flag("--json", as_json, "Print a JSON object");

	auto *dump = app.add_subcommand("dump", "Show a store's superblock and extent table as "
						"read from its device");
	address.add_to(dump);
	dump->add_flag("--json", as_json, "Print a JSON object");

	auto *changes = app.add_subcommand("changes", "Byte ranges of the origin written after an "
						      "epoch, or 'full'");
	address.add_to(changes);
	changes->add_option("--since", since, "Epoch of the last backup")->required();
	changes->add_option("--generation", generation,
			    "Generation UUID of the last backup; another generation means full");
	changes->add_flag("--json", as_json, "Print a JSON object");

	auto *destroy = app.add_subcommand("destroy", "Unpin (clear immutable) and remove a store "
						      "file no cowfile device uses");
	destroy->add_option("PATH", path, "Store file")->required();

	try {
		app.parse(argc, argv);
	} catch (const CLI::CallForHelp &e) {
		return app.exit(e);
	} catch (const CLI::CallForAllHelp &e) {
		return app.exit(e);
	} catch (const CLI::CallForVersion &e) {
		return app.exit(e);
	} catch (const CLI::ParseError &e) {
		app.exit(e);
		return exit_usage;
	}

	try {
		if (*create)
			return run_create(path, size, origin_sectors, chunk_sectors, as_json);
		if ((*dump || *changes) && !address.through_file &&
		    (*dump ? dump : changes)->count("SB_SECTOR") == 0)
			throw UsageError("SB_SECTOR", EINVAL,
					 "SB_SECTOR is required unless --through-file is given");
		if (*dump)
			return run_dump(address, as_json);
		if (*changes)
			return run_changes(address, since, generation, as_json);
		if (*destroy) {
			StoreFile::destroy(path);
			return exit_ok;
		}
	} catch (const UsageError &e) {
		fmt::print(stderr, "cowfile-store: {}\nRun with --help for usage.\n", e.what());
		return exit_usage;
	} catch (const Error &e) {
		fmt::print(stderr, "cowfile-store: {}{}\n", e.what(), hint_for(e));
		return exit_failed;
	} catch (const std::exception &e) {
		fmt::print(stderr, "cowfile-store: {}\n", e.what());
		return exit_failed;
	}
	return exit_usage;
}
