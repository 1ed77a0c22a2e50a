#pragma once

// The agent's own TLS settings, whatever the system's OpenSSL configuration
// or httplib's defaults (which allow TLS 1.1 and CBC suites with SHA-1).

#include <openssl/ssl.h>

namespace snapmgr::agent {

// TLS 1.2 and 1.3 only; for TLS 1.2 only ECDHE with AEAD suites (AES-GCM,
// ChaCha20-Poly1305); no renegotiation; security level 2 at least. Throws
// snapmgr::Error when OpenSSL refuses a setting.
void apply_tls_policy(SSL_CTX *ctx);

} // namespace snapmgr::agent
