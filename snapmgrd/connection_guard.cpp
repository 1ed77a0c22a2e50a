#include "connection_guard.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

namespace snapmgr::agent {

using Clock = std::chrono::steady_clock;

// What the guard knows of one connection. Only the worker thread serving
// the connection touches it (OpenSSL's callbacks and httplib's handlers
// run there), so it needs no lock.
struct ConnectionGuard::Connection {
	ConnectionGuard *guard = nullptr;
	std::string client;     // while it counts as pending against its client
	bool refused = false;   // its client had its fill, or its request was refused
	bool answering = false; // an answer is on its way: the next read starts a request
	Clock::time_point deadline;
	std::ptrdiff_t budget = 0; // bytes it may still send in this request
};

namespace {

// Chunk sizes, trailers and TLS record framing around a body.
constexpr std::size_t framing_bytes = 64 * 1024;

// The SSL_CTX's slot for its guard.
int guard_index()
{
	static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
	return index;
}

// The client a connection counts against: its IPv4 address, or the /64 of
// its IPv6 address (what one host usually has to choose from).
std::string client_of(int fd)
{
	sockaddr_storage peer{};
	socklen_t length = sizeof(peer);
	if (::getpeername(fd, reinterpret_cast<sockaddr *>(&peer), &length) != 0)
		return "unknown";
	char text[INET6_ADDRSTRLEN] = "";
	if (peer.ss_family == AF_INET) {
		::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in &>(peer).sin_addr, text, sizeof(text));
		return text;
	}
	in6_addr address = reinterpret_cast<sockaddr_in6 &>(peer).sin6_addr;
	if (IN6_IS_ADDR_V4MAPPED(&address)) {
		::inet_ntop(AF_INET, &address.s6_addr[12], text, sizeof(text));
		return text;
	}
	std::memset(&address.s6_addr[8], 0, 8);
	::inet_ntop(AF_INET6, &address, text, sizeof(text));
	return std::string(text) + "/64";
}

void refuse(httplib::Response &res, int status, const char *error, const std::string &details)
{
	res.status = status;
	res.set_content(nlohmann::json{{"error", error}, {"details", details}}.dump() + "\n",
			"application/json");
}

} // namespace

ConnectionGuard::ConnectionGuard(ConnectionLimits limits) : limits_(limits) {}

// The SSL's slot for its Connection, freed with the SSL (on_free).
int ConnectionGuard::connection_index()
{
	static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, &ConnectionGuard::on_free);
	return index;
}

ConnectionGuard::Connection *ConnectionGuard::connection_of(const SSL *ssl)
{
	return ssl ? static_cast<Connection *>(SSL_get_ex_data(ssl, connection_index())) : nullptr;
}

void ConnectionGuard::attach(SSL_CTX *ctx)
{
	connection_index(); // made before any connection, not in a worker thread
	SSL_CTX_set_ex_data(ctx, guard_index(), this);
	SSL_CTX_set_info_callback(ctx, &ConnectionGuard::on_info);
}

void ConnectionGuard::install(httplib::Server &server)
{
	using Handled = httplib::Server::HandlerResponse;
	server.set_pre_routing_handler([this](const httplib::Request &req, httplib::Response &res) {
		return admit(req, res) ? Handled::Unhandled : Handled::Handled;
	});
	// A client that waits for "100 Continue" hears the refusal instead.
	server.set_expect_100_continue_handler([this](const httplib::Request &req, httplib::Response &res) {
		return admit(req, res) ? 100 : res.status;
	});
	server.set_post_routing_handler([](const httplib::Request &req, httplib::Response &) {
		if (Connection *c = connection_of(req.ssl))
			c->answering = true;
	});
	server.set_payload_max_length(limits_.body_bytes);
}

bool ConnectionGuard::admit(const httplib::Request &req, httplib::Response &res)
{
	Connection *c = connection_of(req.ssl);
	// httplib adds REMOTE_ADDR and REMOTE_PORT to the client's fields.
	const std::size_t fields = req.headers.size() - std::min<std::size_t>(req.headers.size(), 2);
	const bool too_many = fields > limits_.headers;
	const bool too_long = req.has_header("Content-Length") &&
			      req.get_header_value<std::uint64_t>("Content-Length") > limits_.body_bytes;
	if (too_many)
		refuse(res, 431, "Request Header Fields Too Large",
		       fmt::format("{} header fields; at most {}", fields, limits_.headers));
	else if (too_long)
		refuse(res, 413, "Payload Too Large",
		       fmt::format("a body of {} bytes; at most {}", req.get_header_value("Content-Length"),
				   limits_.body_bytes));
	if (!c)
		return !too_many && !too_long;
	if (!c->client.empty()) { // no longer pending: its handshake and head are done
		close(c->client);
		c->client.clear();
	}
	// A refused request's body is never read: the connection ends after
	// the answer rather than read that body as the next request.
	c->refused = c->refused || too_many || too_long;
	// (httplib still waits its keep-alive time, 5 s, for a next request:
	// shutting the socket's reading down sooner would make it think the
	// client gone and not send the answer.)
	c->budget = std::ptrdiff_t(limits_.body_bytes + framing_bytes);
	return !c->refused;
}

bool ConnectionGuard::open(const std::string &client)
{
	std::lock_guard<std::mutex> lock(lock_);
	unsigned &n = per_client_[client];
	if (n >= limits_.pending_connections_per_client) {
		if (n == 0)
			per_client_.erase(client);
		return false;
	}
	n++;
	return true;
}

void ConnectionGuard::close(const std::string &client)
{
	std::lock_guard<std::mutex> lock(lock_);
	auto it = per_client_.find(client);
	if (it != per_client_.end() && --it->second == 0)
		per_client_.erase(it);
}

// At the start of a connection's first handshake, before it has read a
// byte: count it against its client and watch its reads.
void ConnectionGuard::on_info(const SSL *ssl, int where, int)
{
	if (!(where & SSL_CB_HANDSHAKE_START) || connection_of(ssl))
		return;
	auto *guard = static_cast<ConnectionGuard *>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), guard_index()));
	auto c = std::make_unique<Connection>();
	c->guard = guard;
	const std::string client = client_of(SSL_get_fd(ssl));
	if (guard->open(client))
		c->client = client;
	else
		c->refused = true;
	c->deadline = Clock::now() + guard->limits_.request_timeout;
	c->budget = std::ptrdiff_t(guard->limits_.head_bytes);
	// OpenSSL hands the callback a const SSL, but the connection is ours to
	// annotate; its Connection is freed with it (on_free).
	SSL *annotated = const_cast<SSL *>(ssl);
	BIO *in = SSL_get_rbio(annotated);
	BIO_set_callback_arg(in, reinterpret_cast<char *>(c.get()));
	BIO_set_callback_ex(in, &ConnectionGuard::on_io);
	SSL_set_ex_data(annotated, connection_index(), c.release());
}

void ConnectionGuard::on_free(void *, void *data, CRYPTO_EX_DATA *, int, long, void *)
{
	std::unique_ptr<Connection> c(static_cast<Connection *>(data));
	if (c && !c->client.empty())
		c->guard->close(c->client);
}

// Around every read and write of a watched connection's socket. A read is
// refused (an end of stream without "retry", so OpenSSL and then httplib
// give up on the connection) once the request's deadline or budget is
// spent. The deadline holds however the bytes trickle in: httplib waits at
// most its read timeout for each, and then reads here.
long ConnectionGuard::on_io(BIO *bio, int operation, const char *, std::size_t, int, long, int ret,
			    std::size_t *done)
{
	auto *c = reinterpret_cast<Connection *>(BIO_get_callback_arg(bio));
	if (operation == BIO_CB_READ) {
		const auto now = Clock::now();
		if (c->answering) { // the first read after an answer: a new request
			c->answering = false;
			c->deadline = now + c->guard->limits_.request_timeout;
			c->budget = std::ptrdiff_t(c->guard->limits_.head_bytes);
		}
		if (c->refused || c->budget <= 0 || now > c->deadline) {
			BIO_clear_retry_flags(bio);
			return 0;
		}
	} else if (operation == (BIO_CB_READ | BIO_CB_RETURN) && ret > 0 && done) {
		c->budget -= std::ptrdiff_t(*done);
	}
	return ret;
}

} // namespace snapmgr::agent
