#pragma once

// First-use certificates for the agent's mutual TLS: a CA, a server
// certificate for the names and addresses clients reach the agent by, and
// one client certificate, all signed by that CA.

#include <filesystem>
#include <string>
#include <vector>

namespace snapmgr::agent {

struct CertificateRequest {
	std::filesystem::path dir;           // written here: ca.crt, server and client .crt/.key
	// Where the CA's key goes; empty: nowhere (it signs these certificates
	// and is dropped). Never by default on the agent host, where anyone who
	// reads it can make client certificates the agent trusts.
	std::filesystem::path ca_key;
	std::vector<std::string> dns_names;  // the server's subjectAltName DNS entries
	std::vector<std::string> addresses;  // its subjectAltName IP entries
	std::string client_name = "snapmgr-client";
	unsigned days = 3650;
	bool overwrite = false;
};

// Writes ca.crt, server.crt, server.key, client.crt, client.key and, when
// asked, the CA's key (keys mode 0600, each created new: a file or symlink
// planted in its place is replaced, never written through) and returns
// their paths. Refuses, writing nothing, when one exists and overwrite is
// false.
std::vector<std::filesystem::path> make_certificates(const CertificateRequest &request);

} // namespace snapmgr::agent
