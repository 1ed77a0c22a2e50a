#pragma once

// /etc/snapmgr/agent.conf: TOML with the reference agent's keys (see
// snapmgrd(8)), plus store_size and state_dir.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace snapmgr::agent {

struct StoreMapping {
	std::string device;             // a disk id: its kernel name, "vdb"
	std::filesystem::path location; // one of the store locations
};

struct AgentConfig {
	std::string bind = "0.0.0.0";
	unsigned port = 0;
	unsigned threads = 32; // requests served at once (downloads included)
	// Seconds a response may wait for the client to take more of it
	// before the connection is cut: a backup client on a slow network
	// pauses, and the reference never cuts it. Also how long a DELETE
	// waits for downloads of its snapshot to end.
	unsigned write_timeout = 300;
	// Seconds from a connection's start, or its previous answer, to its
	// request read whole (TLS handshake, header and body).
	unsigned request_timeout = 10;
	// Connections of one client (IPv4 address or IPv6 /64) that have not
	// sent their first request whole yet: in the TLS handshake or header.
	unsigned pending_connections_per_client = 16;
	std::filesystem::path certificate, key, ca_certificate;
	std::vector<std::filesystem::path> locations; // snapstore_destinations
	std::vector<StoreMapping> mappings;           // applied at start
	std::uint64_t store_bytes = 0;                // 0: snapmgr's default size
	std::uint64_t growth_step = std::uint64_t(1) << 30; // 0: no growth
	std::filesystem::path state_dir = "/var/lib/snapmgr/agent";
};

// Throws UsageError naming the file and what is wrong in it.
AgentConfig load_agent_config(const std::filesystem::path &path);

} // namespace snapmgr::agent
