#include "volume_devices.hpp"

#include <cerrno>

#include <fmt/core.h>

#include "snapmgr/dm.hpp"
#include "snapmgr/error.hpp"

namespace snapmgr {

std::string real_name(const std::string &name) { return name + "-real"; }
std::string image_name(const std::string &name) { return name + "-snap"; }

std::string dm_uuid(const Uuid &store, std::string_view suffix)
{
	return fmt::format("{}{}{}", dm::uuid_prefix, format_uuid(store), suffix);
}

bool dm_exists(const std::string &name) { return dm::info(name).has_value(); }

std::optional<CowfileTable> attached_table(const std::string &name)
{
	if (!dm_exists(name))
		return std::nullopt;
	dm::Table table = dm::table(name);
	if (table.size() != 1 || table.front().type != COWFILE_TARGET_NAME)
		return std::nullopt;
	return CowfileTable::parse(table.front());
}

CowfileStatus kernel_status(const std::string &name)
{
	dm::Table status = dm::status(name);
	if (status.size() != 1 || status.front().type != COWFILE_TARGET_NAME)
		throw DeviceError(name, EINVAL, fmt::format("{} is not a cowfile device", name));
	return CowfileStatus::parse(status.front().params);
}

void create_image(const std::string &name, const CowfileTable &table, const Uuid &store_uuid)
{
	dm::create(image_name(name), dm_uuid(store_uuid, "-snap"),
		   {snap_target(table.length, table.origin)}, true);
}

StoreReader open_attached_store(const CowfileTable &table)
{
	return StoreReader::open_device(device_node(table.store), table.sb_sector);
}

} // namespace snapmgr
