// Growing a store while it is in use: the file gets more preallocated
// extents, and the kernel is told to append them to its data area.
#include "snapmgr/volume.hpp"

#include <cerrno>

#include <fmt/core.h>

#include "snapmgr/dm.hpp"
#include "snapmgr/error.hpp"
#include "volume_devices.hpp"

namespace snapmgr {

namespace {

// The kernel takes a handful of extents per message.
constexpr std::size_t extents_per_message = 32;

} // namespace

std::uint64_t grow(const std::string &name, std::uint64_t add_bytes, const Logger &log)
{
	VolumeLock lock(name);
	auto table = attached_table(name);
	auto config = load_config(name);
	if (!table || !config)
		throw UsageError(name, ENODEV,
				 fmt::format("{} is not an attached, configured volume (snapmgr list)",
					     name));
	StoreReader store = open_attached_store(*table);
	const Superblock &sb = store.superblock();
	if (sb.store_uuid != config->store_uuid)
		throw StoreCorruptError(config->store.string(), EINVAL,
					fmt::format("the store {} is not the one volume {} uses",
						    config->store.string(), name));
	const std::uint64_t old_bytes = sb.store_blocks * store_block_size;
	std::error_code ec;
	const std::uint64_t file_bytes = std::filesystem::file_size(config->store, ec);
	if (ec || file_bytes != old_bytes)
		throw StoreError(config->store.string(), ec ? ec.value() : EINVAL,
				 fmt::format("{} is {} bytes, the store the kernel uses {}; refusing "
					     "to grow a file that is not what the kernel knows",
					     config->store.string(), ec ? 0 : file_bytes, old_bytes));

	if (log)
		log(fmt::format("preallocating {} more bytes for {}", add_bytes,
				config->store.string()));
	auto extents = StoreFile::extend(config->store, add_bytes);
	auto added = extents_from_block(extents, sb.store_blocks);
	std::uint64_t accepted = sb.store_blocks;
	try {
		std::vector<StoreExtent> old_part;
		for (const auto &e : extents) {
			std::uint64_t have = total_blocks(old_part);
			if (have >= sb.store_blocks)
				break;
			old_part.push_back({e.sector, std::min(e.blocks, sb.store_blocks - have)});
		}
		if (merged_extents(old_part) != merged_extents(store.extents()))
			throw StoreCorruptError(config->store.string(), EINVAL,
						fmt::format("the extents of {} are not where the kernel "
							    "writes the store; refusing to grow it",
							    config->store.string()));
		for (std::size_t i = 0; i < added.size(); i += extents_per_message) {
			std::string text = COWFILE_MSG_GROW;
			std::uint64_t blocks = 0;
			for (std::size_t j = i; j < std::min(added.size(), i + extents_per_message); j++) {
				text += fmt::format(" {}:{}", added[j].sector, added[j].blocks);
				blocks += added[j].blocks;
			}
			dm::message(name, text);
			accepted += blocks;
		}
	} catch (...) {
		try {
			StoreFile::shrink(config->store, accepted * store_block_size);
		} catch (const std::exception &e) {
			if (log)
				log(fmt::format("rollback: {}", e.what()));
		}
		throw;
	}
	return accepted * store_block_size;
}

} // namespace snapmgr
