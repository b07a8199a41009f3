// factory.hpp: a C++11 interface to libfactory (header-only, over factory.h).
//
//   factory::Server server(factory::ServerConfig(0, 1).bind("127.0.0.1"));
//   factory::Client client("127.0.0.1", server.port());
//   factory::RobotInfo info = client.order(7, 42);
//
//   std::vector<std::string> servers;
//   servers.push_back("127.0.0.1:5000");
//   servers.push_back("127.0.0.1:5001");
//   factory::Cluster cluster(servers);   // finds the primary, rides failovers
//   cluster.order(7, 43);
//
//   factory::Kv kv("127.0.0.1", server.port());   // string keys and values
//   kv.put("greeting", "hello");
//
// Servers and clients own their C handles (RAII, move-only): a Server is
// stopped, and a Client closed, when it goes out of scope. Every failure
// throws factory::Error, which carries the factory_status. Threading is
// the C API's: a Client is used by one thread at a time; a Server may be
// stopped from any thread. Client calls block until the server answers or
// the timeout (30 s by default) expires.
#ifndef FACTORY_HPP
#define FACTORY_HPP

#include <chrono>
#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "factory.h"

namespace factory {

// The reply to an order, and a customer's record: the C structs.
typedef factory_robot_info RobotInfo;
typedef factory_customer_record CustomerRecord;

// A failed libfactory call: what was attempted, and the status it returned.
class Error : public std::runtime_error {
  factory_status status_;

 public:
  Error(factory_status status, const std::string &what)
      : std::runtime_error(what + ": " + factory_status_str(status)),
        status_(status) {}

  factory_status status() const noexcept { return status_; }
};

namespace detail {
// Throws Error unless `status` is FACTORY_OK.
inline void check(factory_status status, const std::string &what) {
  if (status != FACTORY_OK) {
    throw Error(status, what);
  }
}

inline std::string address(const std::string &host, uint16_t port) {
  return host + ":" + std::to_string(port);
}
}  // namespace detail

// The library version, e.g. "0.1.0".
inline std::string version() { return factory_version(); }

// The settings of a server: its port (0: any free port), id, address and
// peers. Copying is not allowed; moving is.
class ServerConfig {
  factory_server_config *config_;

 public:
  // Listens on every IPv4 interface at `port` (0: a free port).
  ServerConfig(uint16_t port, int32_t factory_id)
      : config_(factory_server_config_new(port, factory_id)) {
    if (config_ == NULL) {
      throw std::bad_alloc();
    }
  }
  ServerConfig(ServerConfig &&other) noexcept : config_(other.config_) {
    other.config_ = NULL;
  }
  ServerConfig &operator=(ServerConfig &&other) noexcept {
    std::swap(config_, other.config_);
    return *this;
  }
  ServerConfig(const ServerConfig &) = delete;
  ServerConfig &operator=(const ServerConfig &) = delete;
  ~ServerConfig() { factory_server_config_free(config_); }

  // Listens on the IP address `ip` only (e.g. "127.0.0.1").
  ServerConfig &bind(const std::string &ip) {
    detail::check(factory_server_config_set_bind(config_, ip.c_str()),
                  "cannot bind to " + ip);
    return *this;
  }

  // Adds a backup to replicate to once this server is primary.
  ServerConfig &add_peer(int32_t id, const std::string &host, uint16_t port) {
    detail::check(
        factory_server_config_add_peer(config_, id, host.c_str(), port),
        "cannot add peer " + detail::address(host, port));
    return *this;
  }

  const factory_server_config *get() const noexcept { return config_; }
};

// A running server; stopped (threads joined) by stop() or the destructor.
class Server {
  factory_server *server_;

 public:
  // Starts a server; throws Error (FACTORY_ERR_ADDRESS_IN_USE, ...).
  explicit Server(const ServerConfig &config) : server_(NULL) {
    detail::check(factory_server_start(config.get(), &server_),
                  "cannot start a server");
  }
  Server(Server &&other) noexcept : server_(other.server_) {
    other.server_ = NULL;
  }
  Server &operator=(Server &&other) noexcept {
    std::swap(server_, other.server_);
    return *this;
  }
  Server(const Server &) = delete;
  Server &operator=(const Server &) = delete;
  ~Server() { stop(); }

  // The port it listens on (the one picked, for port 0).
  uint16_t port() const { return factory_server_port(server_); }

  // Adds a backup while running (for ports known only after start).
  void add_peer(int32_t id, const std::string &host, uint16_t port) {
    detail::check(factory_server_add_peer(server_, id, host.c_str(), port),
                  "cannot add peer " + detail::address(host, port));
  }

  // The last committed order of `customer_id` on this server (-1: none).
  int32_t last_order(int32_t customer_id) const {
    int32_t last = -1;
    detail::check(factory_server_last_order(server_, customer_id, &last),
                  "cannot read the server's record");
    return last;
  }

  // Stops the server and waits for its threads; a no-op once stopped.
  void stop() noexcept {
    if (server_ != NULL) {
      factory_server_stop(server_);
      server_ = NULL;
    }
  }
};

// One client session with a server; closed by close() or the destructor.
class Client {
  factory_client *client_;
  std::string server_;

 public:
  // Connects to host:port; throws Error (FACTORY_ERR_CONNECT, ...).
  Client(const std::string &host, uint16_t port)
      : client_(NULL), server_(detail::address(host, port)) {
    detail::check(factory_client_connect(host.c_str(), port, &client_),
                  "cannot connect to " + server_);
  }
  // As above, with a timeout for connecting and every call (0: none).
  Client(const std::string &host, uint16_t port,
         std::chrono::milliseconds timeout)
      : client_(NULL), server_(detail::address(host, port)) {
    detail::check(
        factory_client_connect_timeout(host.c_str(), port,
                                       static_cast<uint32_t>(timeout.count()),
                                       &client_),
        "cannot connect to " + server_);
  }
  Client(Client &&other) noexcept
      : client_(other.client_), server_(std::move(other.server_)) {
    other.client_ = NULL;
  }
  Client &operator=(Client &&other) noexcept {
    std::swap(client_, other.client_);
    std::swap(server_, other.server_);
    return *this;
  }
  Client(const Client &) = delete;
  Client &operator=(const Client &) = delete;
  ~Client() { close(); }

  // Places an order and waits until it is committed.
  RobotInfo order(int32_t customer_id, int32_t order_number) {
    RobotInfo info;
    detail::check(factory_client_order(client_, customer_id, order_number, &info),
                  "order to " + server_ + " failed");
    return info;
  }

  // Reads a customer's committed record (last_order -1: none).
  CustomerRecord read(int32_t customer_id) {
    CustomerRecord record;
    detail::check(factory_client_read(client_, customer_id, &record),
                  "read from " + server_ + " failed");
    return record;
  }

  // Ends the session; a no-op once closed.
  void close() noexcept {
    factory_client_close(client_);
    client_ = NULL;
  }
};

// A client of a cluster, given "host:port" addresses: it finds the primary
// and, when a server fails, resends the request to the next one (with
// backoff) until the deadline. Unlike a Client it stays usable after an
// error. Closed by close() or the destructor.
class Cluster {
  factory_cluster *cluster_;

 public:
  // Connects within `deadline` (0: the library's default, 30 s), which also
  // bounds every later call; throws Error (FACTORY_ERR_UNAVAILABLE, ...).
  explicit Cluster(const std::vector<std::string> &servers,
                   std::chrono::milliseconds deadline =
                       std::chrono::milliseconds(0))
      : cluster_(NULL) {
    std::vector<const char *> list;
    for (size_t i = 0; i < servers.size(); i++) {
      list.push_back(servers[i].c_str());
    }
    detail::check(
        factory_cluster_connect(list.empty() ? NULL : &list[0], list.size(),
                                static_cast<uint32_t>(deadline.count()),
                                &cluster_),
        "cannot connect to the cluster");
  }
  Cluster(Cluster &&other) noexcept : cluster_(other.cluster_) {
    other.cluster_ = NULL;
  }
  Cluster &operator=(Cluster &&other) noexcept {
    std::swap(cluster_, other.cluster_);
    return *this;
  }
  Cluster(const Cluster &) = delete;
  Cluster &operator=(const Cluster &) = delete;
  ~Cluster() { close(); }

  // Places an order and waits until a server has committed it.
  RobotInfo order(int32_t customer_id, int32_t order_number) {
    RobotInfo info;
    detail::check(
        factory_cluster_order(cluster_, customer_id, order_number, &info),
        "order to the cluster failed");
    return info;
  }

  // Reads a customer's committed record (last_order -1: none).
  CustomerRecord read(int32_t customer_id) {
    CustomerRecord record;
    detail::check(factory_cluster_read(cluster_, customer_id, &record),
                  "read from the cluster failed");
    return record;
  }

  // Ends the session; a no-op once closed.
  void close() noexcept {
    factory_cluster_close(cluster_);
    cluster_ = NULL;
  }
};

// --- Protocol v2: string keys and values -----------------------------------
//
//   factory::Kv kv("127.0.0.1", 5000);          // one server
//   factory::Kv kv(servers);                    // a cluster: follows the primary
//   uint64_t v = kv.put("key", std::string("a\0b", 3));
//   factory::KvValue got;
//   if (kv.get("key", &got)) { ... got.value, got.version ... }
//   factory::KvWrite w = kv.cas("key", v, "new");   // w.ok(), or w.status
//
// Keys and values are std::string, binary-safe (NUL bytes are data).
// Conditions that may not hold are results, not exceptions: get returns
// false for an absent key; create, update, erase and cas return a KvWrite
// whose status is FACTORY_OK or the condition that failed
// (FACTORY_KV_EXISTS, FACTORY_KV_NOT_FOUND, FACTORY_KV_VERSION_MISMATCH).
// Everything else (FACTORY_ERR_TOO_LARGE, _NO_MEMORY, _UNAVAILABLE, a lost
// connection, ...) throws factory::Error. A Kv made for one server is
// unusable after a connection error (make a new one); one made for a
// cluster connects again on its next call.

// A value and its version (the log index that wrote it).
struct KvValue {
  uint64_t version;
  std::string value;
};

// One key of a scan.
struct KvItem {
  std::string key;
  uint64_t version;
  std::string value;
};

// A page of a scan: its keys in order, and whether more follow (scan again
// from the last key + '\0').
struct KvScan {
  std::vector<KvItem> items;
  bool more;
};

// The outcome of a conditional write: FACTORY_OK and the new version, or
// the condition that failed and the version it reports (the key's current
// one for FACTORY_KV_EXISTS and FACTORY_KV_VERSION_MISMATCH, where
// FACTORY_KV_NO_VERSION means absent; 0 for FACTORY_KV_NOT_FOUND).
struct KvWrite {
  factory_status status;
  uint64_t version;
  bool ok() const noexcept { return status == FACTORY_OK; }
};

// A protocol v2 client; closed by close() or the destructor (RAII,
// move-only). Used by one thread at a time.
class Kv {
  factory_kv *kv_;

  static const uint8_t *bytes(const std::string &s) {
    return reinterpret_cast<const uint8_t *>(s.data());
  }

  KvWrite conditional(factory_status status, uint64_t version,
                      factory_status allowed, const std::string &what) {
    if (status != FACTORY_OK && status != allowed) {
      throw Error(status, what);
    }
    KvWrite w;
    w.status = status;
    w.version = status == FACTORY_KV_NOT_FOUND ? 0 : version;
    return w;
  }

 public:
  // Connects to one server; `timeout` bounds connecting and every call
  // (0: 30 s). Throws Error (FACTORY_ERR_CONNECT, ...).
  Kv(const std::string &host, uint16_t port,
     std::chrono::milliseconds timeout = std::chrono::milliseconds(0))
      : kv_(NULL) {
    detail::check(factory_kv_connect(host.c_str(), port,
                                     static_cast<uint32_t>(timeout.count()),
                                     &kv_),
                  "cannot connect to " + detail::address(host, port));
  }
  // Connects to a cluster ("host:port" each) and follows its primary;
  // `deadline` bounds connecting and every call, retries included (0: 30 s).
  explicit Kv(const std::vector<std::string> &servers,
              std::chrono::milliseconds deadline =
                  std::chrono::milliseconds(0))
      : kv_(NULL) {
    std::vector<const char *> list;
    for (size_t i = 0; i < servers.size(); i++) {
      list.push_back(servers[i].c_str());
    }
    detail::check(
        factory_kv_connect_cluster(list.empty() ? NULL : &list[0], list.size(),
                                   static_cast<uint32_t>(deadline.count()),
                                   &kv_),
        "cannot connect to the cluster");
  }
  Kv(Kv &&other) noexcept : kv_(other.kv_) { other.kv_ = NULL; }
  Kv &operator=(Kv &&other) noexcept {
    std::swap(kv_, other.kv_);
    return *this;
  }
  Kv(const Kv &) = delete;
  Kv &operator=(const Kv &) = delete;
  ~Kv() { close(); }

  // Reads `key`: true and `*out` set if present, false if absent.
  bool get(const std::string &key, KvValue *out) {
    uint8_t *value = NULL;
    size_t len = 0;
    uint64_t version = 0;
    factory_status st =
        factory_kv_get_alloc(kv_, bytes(key), key.size(), &value, &len, &version);
    if (st == FACTORY_KV_NOT_FOUND) {
      return false;
    }
    detail::check(st, "kv get failed");
    try {
      out->value.assign(reinterpret_cast<const char *>(value), len);
    } catch (...) {
      factory_kv_free(value);
      throw;
    }
    factory_kv_free(value);
    out->version = version;
    return true;
  }

  // Sets `key` to `value`; returns the new version.
  uint64_t put(const std::string &key, const std::string &value) {
    uint64_t version = 0;
    detail::check(factory_kv_put(kv_, bytes(key), key.size(), bytes(value),
                                 value.size(), &version),
                  "kv put failed");
    return version;
  }

  // Sets `key` only if absent (else FACTORY_KV_EXISTS).
  KvWrite create(const std::string &key, const std::string &value) {
    uint64_t version = 0;
    factory_status st = factory_kv_create(kv_, bytes(key), key.size(),
                                          bytes(value), value.size(), &version);
    return conditional(st, version, FACTORY_KV_EXISTS, "kv create failed");
  }

  // Sets `key` only if present (else FACTORY_KV_NOT_FOUND).
  KvWrite update(const std::string &key, const std::string &value) {
    uint64_t version = 0;
    factory_status st = factory_kv_update(kv_, bytes(key), key.size(),
                                          bytes(value), value.size(), &version);
    return conditional(st, version, FACTORY_KV_NOT_FOUND, "kv update failed");
  }

  // Removes `key` (else FACTORY_KV_NOT_FOUND); the version is the delete's
  // log index. (`delete` is a C++ keyword.)
  KvWrite erase(const std::string &key) {
    uint64_t version = 0;
    factory_status st =
        factory_kv_delete(kv_, bytes(key), key.size(), &version);
    return conditional(st, version, FACTORY_KV_NOT_FOUND, "kv delete failed");
  }

  // Sets `key` only if its version is `expected` (FACTORY_KV_NO_VERSION:
  // only if absent), else FACTORY_KV_VERSION_MISMATCH.
  KvWrite cas(const std::string &key, uint64_t expected,
              const std::string &value) {
    uint64_t version = 0;
    factory_status st =
        factory_kv_cas(kv_, bytes(key), key.size(), expected, bytes(value),
                       value.size(), &version);
    return conditional(st, version, FACTORY_KV_VERSION_MISMATCH,
                       "kv cas failed");
  }

  // Up to `limit` (1-1000) keys from `start`, in byte order.
  KvScan scan(const std::string &start, uint32_t limit) {
    factory_kv_scan_result *result = NULL;
    detail::check(
        factory_kv_scan(kv_, bytes(start), start.size(), limit, &result),
        "kv scan failed");
    KvScan page;
    try {
      size_t count = factory_kv_scan_count(result);
      page.items.reserve(count);
      for (size_t i = 0; i < count; i++) {
        factory_kv_item item;
        detail::check(factory_kv_scan_item(result, i, &item), "kv scan item");
        KvItem copy;
        copy.key.assign(reinterpret_cast<const char *>(item.key), item.key_len);
        copy.value.assign(reinterpret_cast<const char *>(item.value),
                          item.value_len);
        copy.version = item.version;
        page.items.push_back(copy);
      }
      page.more = factory_kv_scan_more(result) != 0;
    } catch (...) {
      factory_kv_scan_free(result);
      throw;
    }
    factory_kv_scan_free(result);
    return page;
  }

  // Closes the connection; a no-op once closed.
  void close() noexcept {
    factory_kv_close(kv_);
    kv_ = NULL;
  }
};

}  // namespace factory

#endif  // FACTORY_HPP
