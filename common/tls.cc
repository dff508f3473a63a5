#include "common/tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"

namespace freekv {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

std::unique_ptr<BIO, BioFree> memory_bio(const std::string& pem) {
  return std::unique_ptr<BIO, BioFree>(BIO_new_mem_buf(pem.data(), int(pem.size())));
}

// The first PEM certificate of `pem`, or null.
std::unique_ptr<X509, X509Free> first_certificate(const std::string& pem) {
  auto bio = memory_bio(pem);
  std::unique_ptr<X509, X509Free> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  return cert;
}

}  // namespace

absl::Status check_tls_flag_pair(const std::string& cert_file, const std::string& key_file) {
  if (cert_file.empty() == key_file.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(cert_file.empty() ? "--tls-key-file needs --tls-cert-file (the certificate of that key)"
                                                      : "--tls-cert-file needs --tls-key-file (the certificate's private key)");
}

absl::StatusOr<TlsServerPem> read_tls_server_files(const std::string& cert_file, const std::string& key_file) {
  FREEKV_RETURN_IF_ERROR(check_tls_flag_pair(cert_file, key_file));
  TlsServerPem pem;
  FREEKV_ASSIGN_OR_RETURN(pem.cert_chain, read_file(cert_file));
  FREEKV_RETURN_IF_ERROR(check_secret_file_mode(key_file, "TLS key file"));
  FREEKV_ASSIGN_OR_RETURN(pem.private_key, read_file(key_file));
  auto cert = first_certificate(pem.cert_chain);
  if (cert == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("--tls-cert-file ", cert_file,
                                                   " holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
  }
  auto bio = memory_bio(pem.private_key);
  std::unique_ptr<EVP_PKEY, KeyFree> key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("--tls-key-file ", key_file,
                                                   " holds no unencrypted PEM private key (-----BEGIN PRIVATE KEY-----)"));
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat("--tls-key-file ", key_file, " is not the key of the certificate in ",
                                                   cert_file, "; give the pair that belongs together"));
  }
  return pem;
}

std::shared_ptr<grpc::ServerCredentials> tls_server_credentials(const TlsServerPem& pem) {
  grpc::SslServerCredentialsOptions options;
  options.pem_key_cert_pairs.push_back({pem.private_key, pem.cert_chain});
  return grpc::SslServerCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> channel_credentials(const std::string& ca_file) {
  if (ca_file.empty()) return grpc::InsecureChannelCredentials();
  FREEKV_ASSIGN_OR_RETURN(std::string roots, read_file(ca_file));
  if (first_certificate(roots) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("TLS CA file ", ca_file,
                                                   " holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
  }
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = roots;
  return grpc::SslCredentials(options);
}

}  // namespace freekv
