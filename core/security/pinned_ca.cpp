#include "core/security/pinned_ca.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "core/tensor/hash.h"

namespace zk0 {

namespace {

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

std::pair<std::string, std::string> split_endpoint(const std::string& endpoint) {
  const size_t colon = endpoint.rfind(':');
  if (colon == std::string::npos || colon + 1 == endpoint.size())
    throw std::runtime_error("endpoint '" + endpoint + "' is not HOST:PORT");
  std::string host = endpoint.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return {host, endpoint.substr(colon + 1)};
}

// A TCP connection within the timeout (non-blocking connect, then poll).
int connect_within(const std::string& endpoint, std::chrono::milliseconds timeout) {
  const auto [host, port] = split_endpoint(endpoint);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0)
    throw std::runtime_error("endpoint " + endpoint + ": cannot resolve " + host + " (" + gai_strerror(rc) + ")");
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> addresses(found, freeaddrinfo);
  std::string last_error = "no address";
  for (addrinfo* a = addresses.get(); a; a = a->ai_next) {
    Fd s{socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol)};
    if (s.fd < 0) continue;
    if (connect(s.fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
      last_error = std::strerror(errno);
      continue;
    }
    pollfd p{s.fd, POLLOUT, 0};
    const int ready = poll(&p, 1, static_cast<int>(timeout.count()));
    int error = 0;
    socklen_t len = sizeof error;
    if (ready == 1) getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &error, &len);
    if (ready != 1 || error != 0) {
      last_error = ready == 0 ? "no answer within " + std::to_string(timeout.count()) + " ms" : std::strerror(error ? error : errno);
      continue;
    }
    fcntl(s.fd, F_SETFL, fcntl(s.fd, F_GETFL) & ~O_NONBLOCK);
    timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
    setsockopt(s.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(s.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    const int fd = s.fd;
    s.fd = -1;
    return fd;
  }
  throw std::runtime_error("endpoint " + endpoint + " does not answer: " + last_error);
}

std::string sha256_of_der(X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  X509_digest(cert, EVP_sha256(), md, &n);
  return to_hex(md, n);
}

}  // namespace

std::string fetch_pinned_ca(const std::string& endpoint, const std::string& ca_sha256, const std::string& server_name,
                            std::chrono::milliseconds timeout) {
  Fd socket_fd{connect_within(endpoint, timeout)};
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
  if (!ctx) throw std::runtime_error("TLS: cannot make a client context");
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  // Nothing is trusted yet: the chain is read, then judged against the token's hash below.
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  static const unsigned char kAlpn[] = {2, 'h', '2'};
  SSL_CTX_set_alpn_protos(ctx.get(), kAlpn, sizeof kAlpn);
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx.get()), SSL_free);
  SSL_set_fd(ssl.get(), socket_fd.fd);
  SSL_set_tlsext_host_name(ssl.get(), server_name.c_str());
  if (SSL_connect(ssl.get()) != 1) {
    char err[256] = "";
    ERR_error_string_n(ERR_get_error(), err, sizeof err);
    throw std::runtime_error("endpoint " + endpoint + " answers but completes no TLS handshake (" + (err[0] ? err : "timed out") +
                             "): is it the aggregator's port?");
  }
  STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl.get());
  X509* leaf = SSL_get0_peer_certificate(ssl.get());
  X509* ca = nullptr;
  for (int i = 0; chain && i < sk_X509_num(chain); ++i)
    if (sha256_of_der(sk_X509_value(chain, i)) == ca_sha256) ca = sk_X509_value(chain, i);
  SSL_shutdown(ssl.get());
  if (!leaf || !ca)
    throw std::runtime_error("endpoint " + endpoint + " presents no CA with the SHA-256 the join token pins (" + ca_sha256.substr(0, 16) +
                             "...): a wrong endpoint, another run, or something in between");
  std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(), X509_STORE_free);
  X509_STORE_add_cert(store.get(), ca);
  std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> verify(X509_STORE_CTX_new(), X509_STORE_CTX_free);
  X509_STORE_CTX_init(verify.get(), store.get(), leaf, chain);
  if (X509_verify_cert(verify.get()) != 1)
    throw std::runtime_error("endpoint " + endpoint + ": its certificate does not chain to the pinned CA (" +
                             X509_verify_cert_error_string(X509_STORE_CTX_get_error(verify.get())) + ")");
  const bool named = X509_check_host(leaf, server_name.data(), server_name.size(), 0, nullptr) == 1 ||
                     X509_check_ip_asc(leaf, server_name.c_str(), 0) == 1;
  if (!named) throw std::runtime_error("endpoint " + endpoint + ": its certificate does not name '" + server_name + "'");
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  PEM_write_bio_X509(bio.get(), ca);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

}  // namespace zk0
