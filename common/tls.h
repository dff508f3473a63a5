// TLS for the public API: the coordinator's certificate and key (--tls-cert-file, --tls-key-file) and
// the roots a client verifies it with (--tls-ca-file). The PEM files are read and checked here, so a
// wrong file fails at start or in --check-config with its name, not at a client's first handshake.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace freekv {

struct TlsServerPem {
  std::string cert_chain;   // PEM: the server's certificate first, then any intermediates
  std::string private_key;  // PEM
};

// Reads a server's certificate chain and private key: both PEM, the key the certificate's own, the key
// file a secret (check_secret_file_mode). INVALID_ARGUMENT / PERMISSION_DENIED / NOT_FOUND naming the
// file and the fix.
absl::StatusOr<TlsServerPem> read_tls_server_files(const std::string& cert_file, const std::string& key_file);

// Both flags or neither: INVALID_ARGUMENT naming the missing one; OK with both empty (no TLS).
absl::Status check_tls_flag_pair(const std::string& cert_file, const std::string& key_file);

// TLS server credentials of `pem` (clients are not asked for certificates: the API keys and the admin
// token say who may call).
std::shared_ptr<grpc::ServerCredentials> tls_server_credentials(const TlsServerPem& pem);

// Credentials of a channel to a server: TLS verifying it against the PEM certificates in ca_file, or
// plaintext when ca_file is empty. INVALID_ARGUMENT when the file holds no certificate.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> channel_credentials(const std::string& ca_file);

}  // namespace freekv
