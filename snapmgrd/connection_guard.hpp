#pragma once

// Limits on what a connection may cost the agent before a request reaches
// a handler: a deadline and a byte budget for the TLS handshake and each
// request, and a cap on the connections of one client address that have not
// sent a request yet (where a slow client holds a worker without a
// certificate; a client's downloads, each on its own connection, do not
// count).
//
// Why here and not in httplib: cpp-httplib 0.11 (Debian 12, a compiled
// library) runs the handshake and reads the request head in one of the
// agent's worker threads with a read timeout that every byte restarts, has
// no limit on request or header line length nor on the number of headers,
// and reads chunked bodies of any size. It offers no hook for any of that,
// but it does hand out its SSL_CTX, and every byte it reads goes through
// the connection's OpenSSL BIO: the guard watches that BIO and refuses to
// read (so the connection ends) once a deadline or budget is spent.

#include <openssl/ssl.h>

#include <chrono>
#include <cstddef>
#include <map>
#include <mutex>
#include <string>

#include <httplib.h>

namespace snapmgr::agent {

struct ConnectionLimits {
	// From a connection's start (or its previous answer) to its request
	// read whole: the handshake, request line, header and body.
	std::chrono::seconds request_timeout{10};
	// Connections of a client (IPv4 address, or IPv6 /64) from their start
	// to their first request's head read whole.
	unsigned pending_connections_per_client = 16;
	std::size_t head_bytes = 64 * 1024; // handshake and request head, as TLS records
	std::size_t body_bytes = 1024 * 1024; // a request body (Content-Length or chunked)
	std::size_t headers = 64;             // header fields in a request
};

class ConnectionGuard {
public:
	explicit ConnectionGuard(ConnectionLimits limits);
	ConnectionGuard(const ConnectionGuard &) = delete;
	ConnectionGuard &operator=(const ConnectionGuard &) = delete;

	// Watches every connection of ctx from its first handshake byte. The
	// guard must outlive ctx's connections.
	void attach(SSL_CTX *ctx);
	// Wires the guard into the server: it refuses requests whose head
	// announces too much (431, 413) before their body is read, and starts
	// each request's deadline and budget after the previous answer.
	void install(httplib::Server &server);

	struct Connection;

private:
	// Checks a complete request head: answers (and returns false) when it
	// is too large; otherwise lets its body in.
	bool admit(const httplib::Request &req, httplib::Response &res);
	void answered(const httplib::Request &req);
	// Counts a new connection of its client; false when the client has
	// its fill of pending connections (this one is then refused).
	bool open(const std::string &client);
	// A counted connection sent its first request, or ended.
	void close(const std::string &client);

	static void on_info(const SSL *ssl, int where, int ret);
	static void on_free(void *parent, void *data, CRYPTO_EX_DATA *, int, long, void *guard);
	static long on_io(BIO *bio, int operation, const char *, std::size_t, int, long, int ret,
			  std::size_t *done);
	static int connection_index();
	static Connection *connection_of(const SSL *ssl);

	ConnectionLimits limits_;
	std::mutex lock_;
	std::map<std::string, unsigned> per_client_; // open connections by client
};

} // namespace snapmgr::agent
