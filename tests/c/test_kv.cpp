// test_kv.cpp: factory::Kv (bindings/cpp/factory.hpp) against servers
// started in this process: binary strings round trip, the conditions that
// fail come back as KvWrite statuses (exists, not found, a stale cas),
// errors throw factory::Error with their status (a value over the limit),
// scan pages over 25 keys, a Kv moved and closed twice, and a cluster Kv
// given the backup first follows the primary. Exits 0 when all pass; run
// under valgrind in `make c-valgrind`.
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "factory.hpp"

static int failures = 0;

#define EXPECT(cond)                                                     \
  do {                                                                   \
    if (!(cond)) {                                                       \
      std::fprintf(stderr, "test_kv_cpp: %s:%d: expected %s\n", __FILE__, \
                   __LINE__, #cond);                                     \
      failures++;                                                        \
    }                                                                    \
  } while (0)

static std::string port_of(const factory::Server &s) {
  return "127.0.0.1:" + std::to_string(s.port());
}

static void test_one_server(factory::Kv &kv) {
  const std::string key("b\0in", 4), value("\0v\0al\0", 6);
  factory::KvValue got;
  EXPECT(!kv.get(key, &got));
  uint64_t v1 = kv.put(key, value);
  EXPECT(kv.get(key, &got));
  EXPECT(got.value == value && got.value.size() == 6 && got.version == v1);

  factory::KvWrite w = kv.create(key, "other");
  EXPECT(w.status == FACTORY_KV_EXISTS && w.version == v1 && !w.ok());
  w = kv.update("absent", "x");
  EXPECT(w.status == FACTORY_KV_NOT_FOUND);
  w = kv.update(key, "two");
  EXPECT(w.ok() && w.version > v1);
  uint64_t v2 = w.version;
  w = kv.cas(key, v1, "stale");
  EXPECT(w.status == FACTORY_KV_VERSION_MISMATCH && w.version == v2);
  w = kv.cas(key, v2, "three");
  EXPECT(w.ok() && w.version > v2);
  w = kv.cas("fresh", FACTORY_KV_NO_VERSION, "f");
  EXPECT(w.ok());
  w = kv.erase(key);
  EXPECT(w.ok());
  EXPECT(kv.erase(key).status == FACTORY_KV_NOT_FOUND);
  EXPECT(!kv.get(key, &got));

  // Over the default 1 MiB limit: thrown, with its status; the connection
  // goes on.
  bool thrown = false;
  try {
    kv.put("big", std::string((1u << 20) + 1, 'x'));
  } catch (const factory::Error &e) {
    thrown = e.status() == FACTORY_ERR_TOO_LARGE;
  }
  EXPECT(thrown);
  EXPECT(kv.put("after", "") > 0);
  EXPECT(kv.get("after", &got) && got.value.empty());
}

static void test_scan(factory::Kv &kv) {
  for (int i = 0; i < 25; i++) {
    char key[16];
    std::snprintf(key, sizeof key, "scan/%02d", i);
    kv.put(key, "v" + std::to_string(i));
  }
  std::string start = "scan/";
  int seen = 0, pages = 0;
  while (pages < 10) {
    factory::KvScan page = kv.scan(start, 10);
    pages++;
    for (size_t i = 0; i < page.items.size(); i++) {
      char want[16];
      std::snprintf(want, sizeof want, "scan/%02d", seen);
      EXPECT(page.items[i].key == want);
      EXPECT(page.items[i].value == "v" + std::to_string(seen));
      seen++;
    }
    if (!page.more || page.items.empty()) break;
    start = page.items.back().key + std::string(1, '\0');
  }
  EXPECT(seen == 25);
  EXPECT(pages == 3);
  bool thrown = false;
  try {
    kv.scan("", 0);
  } catch (const factory::Error &e) {
    thrown = e.status() == FACTORY_ERR_INVALID_ARGUMENT;
  }
  EXPECT(thrown);
}

static void test_cluster() {
  factory::Server primary(factory::ServerConfig(0, 0).bind("127.0.0.1"));
  factory::Server backup(factory::ServerConfig(0, 1).bind("127.0.0.1"));
  primary.add_peer(1, "127.0.0.1", backup.port());
  backup.add_peer(0, "127.0.0.1", primary.port());
  factory::Kv("127.0.0.1", primary.port()).put("first", "1");
  std::vector<std::string> servers;
  servers.push_back(port_of(backup));
  servers.push_back(port_of(primary));
  factory::Kv cluster(servers, std::chrono::milliseconds(20000));
  uint64_t v = cluster.put("c", "1");
  factory::KvValue got;
  EXPECT(cluster.get("c", &got) && got.version == v && got.value == "1");
  bool thrown = false;
  try {
    factory::Kv("127.0.0.1", backup.port()).put("c", "2");
  } catch (const factory::Error &e) {
    thrown = e.status() == FACTORY_ERR_NOT_PRIMARY;
  }
  EXPECT(thrown);
}

int main() {
  try {
    factory::Server server(factory::ServerConfig(0, 0).bind("127.0.0.1"));
    factory::Kv first("127.0.0.1", server.port(), std::chrono::milliseconds(20000));
    factory::Kv kv(std::move(first));
    first.close();
    test_one_server(kv);
    test_scan(kv);
    kv.close();
    kv.close();
    test_cluster();
  } catch (const std::exception &e) {
    std::fprintf(stderr, "test_kv_cpp: unexpected exception: %s\n", e.what());
    return 1;
  }
  if (failures > 0) {
    std::fprintf(stderr, "test_kv_cpp: %d failure(s)\n", failures);
    return 1;
  }
  std::printf("test_kv_cpp: all passed\n");
  return 0;
}
