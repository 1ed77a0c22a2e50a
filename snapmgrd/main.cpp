// snapmgrd: the remote snapshot agent (snapmgrd(8)). Serves the API over
// HTTPS to clients holding a certificate of the configured CA, and grows
// mapped volumes' stores while their snapshots fill them.
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <httplib.h>

#include "agent_config.hpp"
#include "api.hpp"
#include "certs.hpp"
#include "connection_guard.hpp"
#include "snapmgr/error.hpp"
#include "snapmgr/version.hpp"
#include "tls_policy.hpp"

namespace {

using namespace snapmgr::agent;

int serve(const std::string &config_path)
{
	const AgentConfig config = load_agent_config(config_path);
	// SIGTERM and SIGINT stop the server; every thread inherits the mask,
	// and one waits for them.
	sigset_t stop_signals;
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
	std::signal(SIGPIPE, SIG_IGN);

	httplib::SSLServer server(config.certificate.c_str(), config.key.c_str(),
				  config.ca_certificate.c_str());
	if (!server.is_valid())
		throw snapmgr::Error(config.certificate, 0,
				     fmt::format("cannot use the TLS files {}, {} and {}",
						 config.certificate.string(), config.key.string(),
						 config.ca_certificate.string()));
	apply_tls_policy(server.ssl_context());
	// httplib's default sets SO_REUSEPORT, with which a second agent binds
	// the same port and silently takes half the connections. SO_REUSEADDR
	// alone lets a restarted agent bind at once and refuses a second one.
	server.set_socket_options([](socket_t sock) {
		const int on = 1;
		::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	});
	const unsigned threads = config.threads;
	server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
	server.set_write_timeout(time_t(config.write_timeout), 0);
	ConnectionLimits limits;
	limits.request_timeout = std::chrono::seconds(config.request_timeout);
	limits.pending_connections_per_client = config.pending_connections_per_client;
	ConnectionGuard guard(limits);
	guard.attach(server.ssl_context());
	guard.install(server);

	Agent agent(config);
	agent.start();
	agent.install(server);

	std::atomic<bool> stopping = false;
	std::thread([&server, &stopping, stop_signals] {
		int signal = 0;
		sigwait(&stop_signals, &signal);
		stopping = true;
		server.stop();
	}).detach();
	if (!server.bind_to_port(config.bind.c_str(), int(config.port)))
		throw snapmgr::Error(config.bind, 0,
				     fmt::format("cannot listen on {} port {}", config.bind, config.port));
	fmt::print(stderr, "snapmgrd: listening on {} port {}\n", config.bind, config.port);
	// httplib gives up listening on an accept() error it does not retry
	// (ENFILE, ENOMEM, ENOBUFS, a socket shut down under it): exit non-zero
	// so that systemd's Restart=on-failure starts the agent again.
	const bool listened = server.listen_after_bind();
	const int accept_error = errno;
	if (!listened && !stopping) {
		fmt::print(stderr, "snapmgrd: stopped listening on {} port {}: {}\n", config.bind, config.port,
			   std::strerror(accept_error));
		std::fflush(stderr);
		std::_Exit(1);
	}
	// The store growth watchers are detached threads that use the agent;
	// nothing is left to write (records are synced when made), so leave
	// without running destructors under them.
	fmt::print(stderr, "snapmgrd: stopped\n");
	std::fflush(stderr);
	std::_Exit(0);
}

} // namespace

int main(int argc, char **argv)
{
	CLI::App app{"snapmgrd: the snapmgr agent, a snapshot and changed-block API over "
		     "mutual TLS (see snapmgrd(8))"};
	app.set_version_flag("--version", std::string(snapmgr::version()));
	std::string config_path = "/etc/snapmgr/agent.conf";
	app.add_option("-c,--config", config_path, "The agent's configuration")->capture_default_str();

	CertificateRequest certs;
	certs.dir = "/etc/snapmgr/tls";
	auto make_certs = app.add_subcommand(
		"make-certs", "Generate a CA, a server and a client certificate for first use");
	make_certs->add_option("--dir", certs.dir, "Where to write them")->capture_default_str();
	make_certs->add_option("--host", certs.dns_names, "A name clients reach the server by (repeatable)");
	make_certs->add_option("--ip", certs.addresses, "An address clients reach the server by (repeatable)");
	make_certs->add_option("--client-name", certs.client_name, "The client certificate's common name")
		->capture_default_str();
	make_certs->add_option("--days", certs.days, "Validity")->capture_default_str();
	make_certs->add_option("--ca-key", certs.ca_key,
			       "Also write the CA's key to this file (on a medium to take off this host); "
			       "without it the key is dropped once the certificates are signed");
	make_certs->add_flag("--force", certs.overwrite, "Replace certificates that exist");

	CLI11_PARSE(app, argc, argv);
	try {
		if (*make_certs) {
			for (const auto &f : make_certificates(certs))
				fmt::print("{}\n", f.string());
			if (certs.ca_key.empty())
				fmt::print(stderr,
					   "snapmgrd: NOTE: the CA's key was NOT written anywhere: it signed these "
					   "certificates and is gone, so no one on this host can make more client "
					   "certificates the agent trusts. To sign more clients later, run make-certs "
					   "again with --ca-key PATH on a medium you then take off this host.\n");
			else
				fmt::print(stderr,
					   "snapmgrd: WARNING: the CA's key is in {}: whoever reads it can make client "
					   "certificates this agent trusts (full control of its disks). Move it off "
					   "this host now.\n",
					   certs.ca_key.string());
			return 0;
		}
		return serve(config_path);
	} catch (const snapmgr::UsageError &e) {
		fmt::print(stderr, "snapmgrd: {}\n", e.what());
		return 2;
	} catch (const std::exception &e) {
		fmt::print(stderr, "snapmgrd: {}\n", e.what());
		return 1;
	}
}
