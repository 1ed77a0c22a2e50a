#include "agent_config.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cerrno>

#include <fmt/core.h>
#include <toml.hpp>

#include "snapmgr/error.hpp"
#include "snapmgr/size.hpp"

namespace snapmgr::agent {
namespace fs = std::filesystem;

namespace {

// A size as bytes (2147483648) or text ("2G").
std::uint64_t size_value(const toml::value &table, const std::string &key, std::uint64_t fallback)
{
	if (!table.contains(key))
		return fallback;
	const toml::value &v = table.at(key);
	if (v.is_integer()) {
		if (v.as_integer() < 0)
			throw toml::type_error(toml::format_error("a size cannot be negative", v, "here"),
					       v.location());
		return std::uint64_t(v.as_integer());
	}
	return parse_size(toml::get<std::string>(v), key);
}

template <typename T> T value_or(const toml::value &table, const std::string &key, const T &fallback)
{
	return table.contains(key) ? toml::find<T>(table, key) : fallback;
}

// A whole number from 1 to most; read signed, as toml11 would turn -1
// into a huge unsigned.
unsigned count_value(const toml::value &table, const std::string &key, unsigned fallback,
		     unsigned most)
{
	const auto v = value_or<std::int64_t>(table, key, fallback);
	if (v < 1 || v > std::int64_t(most))
		throw UsageError(key, EINVAL, fmt::format("[api] {} = {} is not 1 to {}", key, v, most));
	return unsigned(v);
}

bool is_ip_address(const std::string &text)
{
	unsigned char buf[16];
	return ::inet_pton(AF_INET, text.c_str(), buf) == 1 ||
	       ::inet_pton(AF_INET6, text.c_str(), buf) == 1;
}

AgentConfig parse(const toml::value &root)
{
	AgentConfig c;
	const auto &api = toml::find(root, "api");
	c.bind = value_or<std::string>(api, "bind", c.bind);
	c.port = toml::find<unsigned>(api, "port");
	c.threads = value_or<unsigned>(api, "threads", c.threads);
	c.write_timeout = count_value(api, "write_timeout", c.write_timeout, 86400);
	c.request_timeout = count_value(api, "request_timeout", c.request_timeout, 3600);
	c.pending_connections_per_client =
		count_value(api, "pending_connections_per_client", c.pending_connections_per_client, 65536);
	const auto &tls = toml::find(api, "tls");
	c.certificate = toml::find<std::string>(tls, "certificate");
	c.key = toml::find<std::string>(tls, "key");
	c.ca_certificate = toml::find<std::string>(tls, "ca_certificate");
	for (const auto &p : toml::find<std::vector<std::string>>(root, "snapstore_destinations"))
		c.locations.emplace_back(p);
	if (root.contains("snapstore_mapping"))
		for (const auto &m : toml::find<toml::array>(root, "snapstore_mapping"))
			c.mappings.push_back({toml::find<std::string>(m, "device"),
					      toml::find<std::string>(m, "location")});
	c.store_bytes = size_value(root, "store_size", 0);
	c.growth_step = size_value(root, "snap_store_file_size", c.growth_step);
	c.state_dir = value_or<std::string>(root, "state_dir", c.state_dir.string());
	return c;
}

void check(const AgentConfig &c)
{
	if (!is_ip_address(c.bind))
		throw UsageError("bind", EINVAL, fmt::format("[api] bind = \"{}\" is not an IP address", c.bind));
	if (c.port == 0 || c.port > 65535)
		throw UsageError("port", EINVAL, fmt::format("[api] port = {} is not a TCP port", c.port));
	if (c.threads < 2)
		throw UsageError("threads", EINVAL, "[api] threads must be at least 2");
	if (c.request_timeout < 1 || c.request_timeout > 3600)
		throw UsageError("request_timeout", EINVAL, "[api] request_timeout must be 1 to 3600 seconds");
	if (c.pending_connections_per_client < 1)
		throw UsageError("pending_connections_per_client", EINVAL, "[api] pending_connections_per_client must be at least 1");
	if (c.locations.empty())
		throw UsageError("snapstore_destinations", EINVAL,
				 "snapstore_destinations names no store location");
	for (const auto &l : c.locations)
		if (!l.is_absolute() || !fs::is_directory(l))
			throw UsageError(l, ENOENT,
					 fmt::format("store location {} is not an existing directory "
						     "(an absolute path)",
						     l.string()));
	for (const auto &m : c.mappings)
		if (std::find(c.locations.begin(), c.locations.end(), m.location) == c.locations.end())
			throw UsageError(m.location, EINVAL,
					 fmt::format("snapstore_mapping of {}: location {} is not one of "
						     "snapstore_destinations",
						     m.device, m.location.string()));
	if (c.growth_step % 4096)
		throw UsageError("snap_store_file_size", EINVAL,
				 "snap_store_file_size must be a multiple of 4096");
}

} // namespace

AgentConfig load_agent_config(const fs::path &path)
{
	AgentConfig c;
	try {
		c = parse(toml::parse(path.string()));
	} catch (const std::exception &e) {
		// toml11 names the file, line and column in what().
		throw UsageError(path, EINVAL, fmt::format("{}: {}", path.string(), e.what()));
	}
	try {
		check(c);
	} catch (const UsageError &e) {
		throw UsageError(path, EINVAL, fmt::format("{}: {}", path.string(), e.what()));
	}
	return c;
}

} // namespace snapmgr::agent
