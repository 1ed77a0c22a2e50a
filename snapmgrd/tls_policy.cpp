#include "tls_policy.hpp"

#include <algorithm>

#include "snapmgr/error.hpp"

namespace snapmgr::agent {

namespace {

// Forward secret and authenticated encryption only; ECDSA first (make-certs
// keys), RSA for certificates brought along.
constexpr const char *tls12_ciphers = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:"
				      "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:"
				      "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256";
constexpr const char *tls13_suites = "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256";

} // namespace

void apply_tls_policy(SSL_CTX *ctx)
{
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) || !SSL_CTX_set_cipher_list(ctx, tls12_ciphers) ||
	    !SSL_CTX_set_ciphersuites(ctx, tls13_suites))
		throw Error("tls", 0, "OpenSSL refused the agent's TLS versions or cipher suites");
	SSL_CTX_set_security_level(ctx, std::max(SSL_CTX_get_security_level(ctx), 2));
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
}

} // namespace snapmgr::agent
