#include "certs.hpp"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include <fmt/core.h>

#include "snapmgr/error.hpp"

namespace snapmgr::agent {
namespace fs = std::filesystem;

namespace {

struct Free {
	void operator()(EVP_PKEY *p) const noexcept { EVP_PKEY_free(p); }
	void operator()(X509 *p) const noexcept { X509_free(p); }
	void operator()(X509_EXTENSION *p) const noexcept { X509_EXTENSION_free(p); }
	void operator()(BIGNUM *p) const noexcept { BN_free(p); }
	void operator()(BIO *p) const noexcept { BIO_free(p); }
};
using Key = std::unique_ptr<EVP_PKEY, Free>;
using Cert = std::unique_ptr<X509, Free>;

[[noreturn]] void fail(const std::string &what)
{
	char reason[256] = "unknown error";
	if (unsigned long e = ERR_get_error())
		ERR_error_string_n(e, reason, sizeof(reason));
	throw Error("openssl", 0, fmt::format("{}: {}", what, reason));
}

Key new_key()
{
	Key key(EVP_EC_gen("P-256"));
	if (!key)
		fail("generating a P-256 key");
	return key;
}

void add_extension(X509 *cert, X509 *issuer, int nid, const std::string &value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
	std::unique_ptr<X509_EXTENSION, Free> ext(
		X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
	if (!ext || !X509_add_ext(cert, ext.get(), -1))
		fail(fmt::format("adding {} = {}", OBJ_nid2sn(nid), value));
}

// A certificate for key, named common_name, to be signed by issuer (by
// itself when issuer is null: the CA).
Cert new_certificate(EVP_PKEY *key, const std::string &common_name, X509 *issuer, unsigned days)
{
	Cert cert(X509_new());
	std::unique_ptr<BIGNUM, Free> serial(BN_new());
	if (!cert || !serial || !X509_set_version(cert.get(), 2) ||
	    !BN_rand(serial.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
	    !BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) ||
	    !X509_gmtime_adj(X509_getm_notBefore(cert.get()), -300) ||
	    !X509_gmtime_adj(X509_getm_notAfter(cert.get()), long(days) * 86400) ||
	    !X509_set_pubkey(cert.get(), key) ||
	    !X509_NAME_add_entry_by_txt(X509_get_subject_name(cert.get()), "CN", MBSTRING_UTF8,
					reinterpret_cast<const unsigned char *>(common_name.c_str()),
					-1, -1, 0) ||
	    !X509_set_issuer_name(cert.get(), X509_get_subject_name(issuer ? issuer : cert.get())))
		fail(fmt::format("building the certificate of {}", common_name));
	X509 *signer = issuer ? issuer : cert.get();
	add_extension(cert.get(), signer, NID_subject_key_identifier, "hash");
	add_extension(cert.get(), signer, NID_authority_key_identifier, "keyid:always");
	return cert;
}

void sign(X509 *cert, EVP_PKEY *key)
{
	if (!X509_sign(cert, key, EVP_sha256()))
		fail("signing a certificate");
}

// PEM text of key or cert, in memory.
template <typename Write> std::string pem(Write write)
{
	std::unique_ptr<BIO, Free> bio(BIO_new(BIO_s_mem()));
	if (!bio || write(bio.get()) != 1)
		fail("encoding PEM");
	char *data = nullptr;
	long n = BIO_get_mem_data(bio.get(), &data);
	return std::string(data, std::size_t(n));
}

// Writes text to path as a new file: the temporary file is created with
// O_EXCL|O_NOFOLLOW (a stale one, or a symlink planted there, is removed
// first, never followed) and renamed over path, which replaces a symlink
// at path instead of writing through it.
void write_new_file(const fs::path &path, const std::string &text, mode_t mode)
{
	const fs::path temp = path.string() + ".tmp";
	if (::unlink(temp.c_str()) < 0 && errno != ENOENT)
		throw Error(temp, errno, fmt::format("cannot remove {}: {}", temp.string(), std::strerror(errno)));
	const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		throw Error(temp, errno, fmt::format("cannot create {}: {}", temp.string(), std::strerror(errno)));
	const bool written = ::fchmod(fd, mode) == 0 && ::write(fd, text.data(), text.size()) == ssize_t(text.size()) &&
			     ::fsync(fd) == 0;
	const int error = errno;
	::close(fd);
	if (!written || ::rename(temp.c_str(), path.c_str()) < 0) {
		const int e = written ? errno : error;
		::unlink(temp.c_str());
		throw Error(path, e, fmt::format("cannot write {}: {}", path.string(), std::strerror(e)));
	}
}

void write_key(const fs::path &path, EVP_PKEY *key)
{
	write_new_file(path, pem([key](BIO *b) {
			       return PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr);
		       }),
		       0600);
}

void write_cert(const fs::path &path, X509 *cert)
{
	write_new_file(path, pem([cert](BIO *b) { return PEM_write_bio_X509(b, cert); }), 0644);
}

void sync_directory(const fs::path &dir)
{
	const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		::fsync(fd);
		::close(fd);
	}
}

std::string subject_alt_names(const CertificateRequest &r)
{
	std::string san;
	for (const auto &name : r.dns_names)
		san += (san.empty() ? "DNS:" : ",DNS:") + name;
	for (const auto &address : r.addresses)
		san += (san.empty() ? "IP:" : ",IP:") + address;
	return san;
}

} // namespace

std::vector<fs::path> make_certificates(const CertificateRequest &r)
{
	if (r.dns_names.empty() && r.addresses.empty())
		throw UsageError("--host", EINVAL,
				 "name at least one host name or address the server is reached by");
	std::vector<fs::path> files = {r.dir / "ca.crt",     r.dir / "server.crt", r.dir / "server.key",
				       r.dir / "client.crt", r.dir / "client.key"};
	if (!r.ca_key.empty())
		files.push_back(r.ca_key);
	if (!r.overwrite)
		for (const auto &f : files)
			if (fs::symlink_status(f).type() != fs::file_type::not_found)
				throw UsageError(f, EEXIST,
						 fmt::format("{} exists; --force replaces it",
							     f.string()));
	fs::create_directories(r.dir);

	Key ca_key = new_key();
	Cert ca = new_certificate(ca_key.get(), "snapmgr agent CA", nullptr, r.days);
	add_extension(ca.get(), ca.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
	add_extension(ca.get(), ca.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
	sign(ca.get(), ca_key.get());

	const std::string server_name = r.dns_names.empty() ? r.addresses[0] : r.dns_names[0];
	Key server_key = new_key();
	Cert server = new_certificate(server_key.get(), server_name, ca.get(), r.days);
	add_extension(server.get(), ca.get(), NID_basic_constraints, "critical,CA:FALSE");
	add_extension(server.get(), ca.get(), NID_key_usage, "critical,digitalSignature");
	add_extension(server.get(), ca.get(), NID_ext_key_usage, "serverAuth");
	add_extension(server.get(), ca.get(), NID_subject_alt_name, subject_alt_names(r));
	sign(server.get(), ca_key.get());

	Key client_key = new_key();
	Cert client = new_certificate(client_key.get(), r.client_name, ca.get(), r.days);
	add_extension(client.get(), ca.get(), NID_basic_constraints, "critical,CA:FALSE");
	add_extension(client.get(), ca.get(), NID_key_usage, "critical,digitalSignature");
	add_extension(client.get(), ca.get(), NID_ext_key_usage, "clientAuth");
	sign(client.get(), ca_key.get());

	if (!r.ca_key.empty()) {
		const fs::path ca_dir = fs::absolute(r.ca_key).parent_path();
		fs::create_directories(ca_dir);
		write_key(r.ca_key, ca_key.get());
		sync_directory(ca_dir);
	}
	write_cert(files[0], ca.get());
	write_cert(files[1], server.get());
	write_key(files[2], server_key.get());
	write_cert(files[3], client.get());
	write_key(files[4], client_key.get());
	sync_directory(r.dir);
	return files;
}

} // namespace snapmgr::agent
