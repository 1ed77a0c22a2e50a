#include "inventory.hpp"

#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <climits>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include <fmt/core.h>

#include "snapmgr/dm.hpp"
#include "snapmgr/error.hpp"

namespace snapmgr::agent {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string first_line(const fs::path &file)
{
	std::ifstream in(file);
	std::string line;
	std::getline(in, line);
	return line;
}

std::vector<std::string> names_in(const fs::path &dir)
{
	std::vector<std::string> names;
	std::error_code ec;
	for (const auto &e : fs::directory_iterator(dir, ec))
		names.push_back(e.path().filename().string());
	std::sort(names.begin(), names.end());
	return names;
}

fs::path sysfs_dir(const BlockDevice &d)
{
	return fs::canonical(fmt::format("/sys/dev/block/{}:{}", d.major, d.minor));
}

long alignment_offset(const fs::path &dir)
{
	std::string text = first_line(dir / "alignment_offset");
	return text.empty() ? 0 : std::stol(text);
}

void add_under(const fs::path &dir, std::set<std::string> &names)
{
	names.insert(dir.filename().string());
	if (fs::exists(dir / "partition"))
		names.insert(dir.parent_path().filename().string());
	for (const auto &slave : names_in(dir / "slaves"))
		add_under(fs::canonical(dir / "slaves" / slave), names);
}

json partition_json(const std::string &name)
{
	BlockDevice p = probe_device("/dev/" + name);
	const std::uint64_t sectors = p.size_bytes / 512;
	json j = {{"name", p.kernel_name},
		  {"path", p.path},
		  {"sectors", sectors},
		  {"start_sector", p.start_sector},
		  {"end_sector", p.start_sector + sectors - 1},
		  {"alignment_offset", alignment_offset(sysfs_dir(p))},
		  {"device_major", p.major},
		  {"device_minor", p.minor}};
	if (!p.fs_uuid.empty())
		j["filesystem_uuid"] = p.fs_uuid;
	if (!p.part_uuid.empty())
		j["partition_uuid"] = p.part_uuid;
	if (!p.fs_label.empty())
		j["label"] = p.fs_label;
	if (!p.fs_type.empty())
		j["filesystem_type"] = p.fs_type;
	if (!p.part_type.empty())
		j["partition_type"] = p.part_type;
	return j;
}

bool is_cdrom(const BlockDevice &d) { return first_line(sysfs_dir(d) / "device" / "type") == "5"; }

// The reference hides only a disk that is swap as a whole: a disk with a
// swap partition beside its others (the usual OS disk) is listed.
bool is_swap(const BlockDevice &d) { return d.is_swap || d.fs_type == "swap"; }

// ---- system information --------------------------------------------------

json memory_info()
{
	// /proc/meminfo's fields (kB) under the names the reference reports.
	static const std::map<std::string, std::string> names = {
		{"MemTotal", "total"},		 {"MemAvailable", "available"},
		{"MemFree", "free"},		 {"Active", "active"},
		{"Inactive", "inactive"},	 {"Buffers", "buffers"},
		{"Cached", "cached"},		 {"Writeback", "writeBack"},
		{"Dirty", "dirty"},		 {"WritebackTmp", "writeBackTmp"},
		{"Shmem", "shared"},		 {"Slab", "slab"},
		{"SReclaimable", "sreclaimable"}, {"SUnreclaim", "sunreclaim"},
		{"PageTables", "pageTables"},	 {"SwapCached", "swapCached"},
		{"CommitLimit", "commitLimit"},	 {"Committed_AS", "committedAS"},
		{"SwapTotal", "swapTotal"},	 {"SwapFree", "swapFree"},
		{"Mapped", "mapped"},		 {"VmallocTotal", "vmallocTotal"},
		{"VmallocUsed", "vmallocUsed"},	 {"VmallocChunk", "vmallocChunk"},
		{"HugePages_Total", "hugePagesTotal"}, {"HugePages_Free", "hugePagesFree"},
		{"Hugepagesize", "hugePageSize"}, {"HighTotal", "highTotal"},
		{"HighFree", "highFree"},	 {"LowTotal", "lowTotal"},
		{"LowFree", "lowFree"}};
	// The reference's keys are all there, 0 when Linux has no such field:
	// wired and laundry are BSD's, High/Low only on 32-bit kernels.
	json m = {{"wired", 0}, {"laundry", 0}, {"highTotal", 0},
		  {"highFree", 0}, {"lowTotal", 0}, {"lowFree", 0}};
	std::ifstream in("/proc/meminfo");
	std::string key, unit;
	std::uint64_t value = 0;
	std::string line;
	while (std::getline(in, line)) {
		std::istringstream fields(line);
		if (!(fields >> key >> value))
			continue;
		key.pop_back(); // the ':'
		unit.clear();
		fields >> unit;
		auto it = names.find(key);
		if (it != names.end())
			m[it->second] = unit == "kB" ? value * 1024 : value;
	}
	const auto get = [&m](const char *k) { return m.value(k, std::uint64_t(0)); };
	const std::uint64_t used = get("total") - get("free") - get("buffers") - get("cached") -
				   get("sreclaimable");
	m["used"] = used;
	m["usedPercent"] = get("total") ? 100.0 * double(used) / double(get("total")) : 0.0;
	return m;
}

json cpu_info()
{
	json cpus = json::array();
	std::set<std::pair<std::string, std::string>> cores;
	std::ifstream in("/proc/cpuinfo");
	std::string line;
	json cpu;
	const auto finish = [&] {
		if (cpu.empty())
			return;
		cores.insert({cpu.value("physicalId", ""), cpu.value("coreId", "")});
		cpus.push_back(cpu);
		cpu = json();
	};
	while (std::getline(in, line)) {
		auto colon = line.find(':');
		if (colon == std::string::npos) {
			finish();
			continue;
		}
		std::string key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
		std::string value = colon + 2 <= line.size() ? line.substr(colon + 2) : "";
		if (key == "processor")
			cpu["cpu"] = std::stol(value);
		else if (key == "vendor_id")
			cpu["vendorId"] = value;
		else if (key == "cpu family")
			cpu["family"] = value;
		else if (key == "model")
			cpu["model"] = value;
		else if (key == "stepping")
			cpu["stepping"] = std::atol(value.c_str());
		else if (key == "physical id")
			cpu["physicalId"] = value;
		else if (key == "core id")
			cpu["coreId"] = value;
		else if (key == "cpu cores")
			cpu["cores"] = std::atol(value.c_str());
		else if (key == "model name")
			cpu["modelName"] = value;
		else if (key == "cpu MHz")
			cpu["mhz"] = std::atof(value.c_str());
		else if (key == "cache size")
			cpu["cacheSize"] = std::atol(value.c_str());
		else if (key == "microcode")
			cpu["microcode"] = value;
		else if (key == "flags") {
			std::istringstream words(value);
			std::vector<std::string> flags;
			for (std::string w; words >> w;)
				flags.push_back(w);
			cpu["flags"] = flags;
		}
	}
	finish();
	return {{"physical_cores", cores.size()}, {"logical_cores", cpus.size()}, {"cpu_info", cpus}};
}

std::string interface_type(const std::string &name)
{
	const fs::path dir = fs::path("/sys/class/net") / name;
	if (first_line(dir / "type") == "65534")
		return "tunnel_interface";
	if (fs::exists(dir / "device"))
		return "physical_interface";
	if (fs::exists(dir / "bridge"))
		return "bridge_interface";
	if (fs::exists(dir / "bonding"))
		return "bond_interface";
	if (fs::exists(fs::path("/sys/devices/virtual/net") / name))
		return "virtual_interface";
	return "unsupported_interface";
}

int prefix_length(const sockaddr *mask)
{
	if (!mask)
		return 0;
	const auto *bytes = mask->sa_family == AF_INET
				    ? reinterpret_cast<const unsigned char *>(
					      &reinterpret_cast<const sockaddr_in *>(mask)->sin_addr)
				    : reinterpret_cast<const unsigned char *>(
					      &reinterpret_cast<const sockaddr_in6 *>(mask)->sin6_addr);
	const int n = mask->sa_family == AF_INET ? 4 : 16;
	int bits = 0;
	for (int i = 0; i < n; i++)
		bits += __builtin_popcount(bytes[i]);
	return bits;
}

std::map<std::string, std::vector<std::string>> addresses_by_interface()
{
	std::map<std::string, std::vector<std::string>> out;
	ifaddrs *list = nullptr;
	if (::getifaddrs(&list) != 0)
		return out;
	std::unique_ptr<ifaddrs, decltype(&::freeifaddrs)> guard(list, ::freeifaddrs);
	for (const ifaddrs *a = list; a; a = a->ifa_next) {
		if (!a->ifa_addr || (a->ifa_addr->sa_family != AF_INET && a->ifa_addr->sa_family != AF_INET6))
			continue;
		char text[INET6_ADDRSTRLEN] = "";
		const void *addr = a->ifa_addr->sa_family == AF_INET
					   ? static_cast<const void *>(&reinterpret_cast<const sockaddr_in *>(a->ifa_addr)->sin_addr)
					   : static_cast<const void *>(&reinterpret_cast<const sockaddr_in6 *>(a->ifa_addr)->sin6_addr);
		::inet_ntop(a->ifa_addr->sa_family, addr, text, sizeof(text));
		out[a->ifa_name].push_back(fmt::format("{}/{}", text, prefix_length(a->ifa_netmask)));
	}
	return out;
}

json interface_json(const std::string &name, const std::map<std::string, std::vector<std::string>> &ips)
{
	const std::string type = interface_type(name);
	auto it = ips.find(name);
	json j = {{"interface_type", type},
		  {"mac_address", first_line(fs::path("/sys/class/net") / name / "address")},
		  {"ip_addresses", it == ips.end() ? std::vector<std::string>{} : it->second},
		  {"nic_name", name}};
	if (type == "bridge_interface") {
		json slaves = json::array();
		for (const auto &port : names_in(fs::path("/sys/class/net") / name / "brif"))
			slaves.push_back(interface_json(port, ips));
		j["slaves"] = slaves;
	}
	return j;
}

json network_interfaces()
{
	const auto ips = addresses_by_interface();
	json list = json::array();
	for (const auto &name : names_in("/sys/class/net"))
		if (name != "lo")
			list.push_back(interface_json(name, ips));
	return list;
}

json os_info()
{
	std::ifstream in("/etc/os-release");
	std::string line, id, version;
	while (std::getline(in, line)) {
		if (line.rfind("ID=", 0) == 0)
			id = line.substr(3);
		else if (line.rfind("VERSION_ID=", 0) == 0)
			version = line.substr(11);
	}
	const auto unquote = [](std::string s) {
		if (s.size() >= 2 && s.front() == '"' && s.back() == '"')
			s = s.substr(1, s.size() - 2);
		return s;
	};
	return {{"platform", "linux"}, {"os_name", unquote(id)}, {"os_version", unquote(version)}};
}

} // namespace

std::set<std::string> devices_under(const std::string &path)
{
	MountedOn m = mount_of(path);
	std::set<std::string> names;
	add_under(fs::canonical(fmt::format("/sys/dev/block/{}:{}", m.major, m.minor)), names);
	return names;
}

bool is_virtual(const BlockDevice &disk)
{
	return fs::exists(fs::path("/sys/devices/virtual/block") / disk.kernel_name);
}

json disk_json(const BlockDevice &d, const std::string &id)
{
	json j;
	if (!id.empty())
		j["id"] = id;
	j["path"] = d.path;
	if (!d.part_table_type.empty())
		j["partition_table_type"] = d.part_table_type;
	if (!d.part_table_uuid.empty())
		j["partition_table_uuid"] = d.part_table_uuid;
	j["name"] = d.kernel_name;
	j["size"] = d.size_bytes;
	j["logical_sector_size"] = d.logical_sector_size;
	j["physical_sector_size"] = d.physical_sector_size;
	json parts = json::array();
	for (const auto &p : d.partitions)
		parts.push_back(partition_json(p));
	if (!parts.empty())
		j["partitions"] = parts;
	j["filesystem_type"] = d.fs_type;
	j["alignment_offset"] = alignment_offset(sysfs_dir(d));
	if (d.major)
		j["device_major"] = d.major;
	if (d.minor)
		j["device_minor"] = d.minor;
	auto slaves = names_in(sysfs_dir(d) / "slaves");
	if (!slaves.empty())
		j["device_slaves"] = slaves;
	j["is_virtual"] = is_virtual(d);
	return j;
}

json disks_json(const DiskFilter &filter)
{
	json list = json::array();
	for (const BlockDevice &d : list_disks()) {
		if (d.dm && d.dm->uuid.rfind(dm::uuid_prefix, 0) == 0)
			continue; // our own wrappers and images
		if (filter.store_devices.count(d.kernel_name) || is_cdrom(d))
			continue;
		bool holds_store = false;
		for (const auto &p : d.partitions)
			holds_store = holds_store || filter.store_devices.count(p);
		if (holds_store || (!filter.include_virtual && is_virtual(d)) ||
		    (!filter.include_swap && is_swap(d)))
			continue;
		list.push_back(disk_json(d, filter.tracked_id ? filter.tracked_id(d) : ""));
	}
	return list;
}

json system_info(const json &disks)
{
	char host[HOST_NAME_MAX + 1] = "";
	::gethostname(host, sizeof(host));
	return {{"memory", memory_info()},
		{"cpus", cpu_info()},
		{"network_interfaces", network_interfaces()},
		{"disks", disks},
		{"os_info", os_info()},
		{"hostname", host},
		{"firmware_type", fs::exists("/sys/firmware/efi") ? "efi" : "bios"}};
}

} // namespace snapmgr::agent
