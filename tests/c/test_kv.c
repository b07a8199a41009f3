/*
 * test_kv.c: libfactory's protocol v2 calls (factory_kv_*) against servers
 * started in this process.
 *
 * Each call once the right way and once the wrong way: a binary key and
 * value with NUL bytes read back exactly, into a buffer that fits, one
 * that does not (FACTORY_ERR_BUFFER_TOO_SMALL, the buffer untouched, the
 * length reported) and a library-owned one; not found, exists, version
 * mismatch on a stale version, a value over the server's limit (answered,
 * the connection goes on) and a key over the protocol's ceiling (refused
 * before sending); scan paging over 25 keys, 10 at a time; NULL pointers;
 * and a cluster handle given the backup first, which follows the primary
 * while a single-server handle on the backup gets FACTORY_ERR_NOT_PRIMARY.
 * Out-params that must stay untouched are checked against sentinels.
 * Exits 0 when all pass; runs under valgrind in `make c-valgrind`.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "factory.h"

static int failures = 0;

#define EXPECT(cond)                                                       \
  do {                                                                     \
    if (!(cond)) {                                                         \
      fprintf(stderr, "test_kv: %s:%d: expected %s\n", __FILE__, __LINE__, \
              #cond);                                                      \
      failures++;                                                          \
    }                                                                      \
  } while (0)

#define EXPECT_STATUS(call, want)                                          \
  do {                                                                     \
    factory_status got_ = (call);                                          \
    if (got_ != (want)) {                                                  \
      fprintf(stderr, "test_kv: %s:%d: %s gave \"%s\", expected \"%s\"\n", \
              __FILE__, __LINE__, #call, factory_status_str(got_),         \
              factory_status_str(want));                                   \
      failures++;                                                          \
    }                                                                      \
  } while (0)

#define SENTINEL_LEN ((size_t)0x5eed)
#define SENTINEL_VERSION ((uint64_t)0x5eed5eed)

static factory_server *start_server(int32_t id) {
  factory_server *server = NULL;
  factory_server_config *config = factory_server_config_new(0, id);
  EXPECT_STATUS(factory_server_config_set_bind(config, "127.0.0.1"),
                FACTORY_OK);
  EXPECT_STATUS(factory_server_start(config, &server), FACTORY_OK);
  factory_server_config_free(config);
  if (server == NULL) {
    fprintf(stderr, "test_kv: cannot start a server, giving up\n");
    exit(1);
  }
  return server;
}

static factory_kv *connect_to(factory_server *server) {
  factory_kv *kv = NULL;
  EXPECT_STATUS(factory_kv_connect("127.0.0.1", factory_server_port(server),
                                   20000, &kv),
                FACTORY_OK);
  if (kv == NULL) {
    fprintf(stderr, "test_kv: cannot connect, giving up\n");
    exit(1);
  }
  return kv;
}

/* Key and value with NUL bytes inside and at the end. */
static const uint8_t KEY[] = {'b', 0, 'i', 'n', 0};
static const uint8_t VALUE[] = {0, 'v', 0, 0, 'a', 'l', 0};

static void test_binary_get_put(factory_kv *kv) {
  uint8_t buf[16], small[3];
  uint8_t *owned = NULL;
  size_t len = SENTINEL_LEN;
  uint64_t version = SENTINEL_VERSION, v1 = 0;

  EXPECT_STATUS(factory_kv_get(kv, KEY, sizeof KEY, buf, sizeof buf, &len,
                               &version),
                FACTORY_KV_NOT_FOUND);
  EXPECT(len == SENTINEL_LEN && version == SENTINEL_VERSION);

  EXPECT_STATUS(factory_kv_put(kv, KEY, sizeof KEY, VALUE, sizeof VALUE, &v1),
                FACTORY_OK);
  EXPECT(v1 > 0 && v1 != FACTORY_KV_NO_VERSION);

  memset(buf, 0xAA, sizeof buf);
  EXPECT_STATUS(factory_kv_get(kv, KEY, sizeof KEY, buf, sizeof buf, &len,
                               &version),
                FACTORY_OK);
  EXPECT(len == sizeof VALUE && version == v1);
  EXPECT(memcmp(buf, VALUE, sizeof VALUE) == 0);
  EXPECT(buf[sizeof VALUE] == 0xAA);

  /* Exactly the value's size fits. */
  EXPECT_STATUS(factory_kv_get(kv, KEY, sizeof KEY, buf, sizeof VALUE, &len,
                               &version),
                FACTORY_OK);

  /* Too small: the size is reported, the buffer untouched. */
  memset(small, 0xAA, sizeof small);
  len = SENTINEL_LEN;
  EXPECT_STATUS(factory_kv_get(kv, KEY, sizeof KEY, small, sizeof small, &len,
                               &version),
                FACTORY_ERR_BUFFER_TOO_SMALL);
  EXPECT(len == sizeof VALUE && version == v1);
  EXPECT(small[0] == 0xAA && small[1] == 0xAA && small[2] == 0xAA);
  len = SENTINEL_LEN;
  EXPECT_STATUS(factory_kv_get(kv, KEY, sizeof KEY, NULL, 0, &len, &version),
                FACTORY_ERR_BUFFER_TOO_SMALL);
  EXPECT(len == sizeof VALUE);

  /* Library-owned buffer. */
  EXPECT_STATUS(factory_kv_get_alloc(kv, KEY, sizeof KEY, &owned, &len,
                                     &version),
                FACTORY_OK);
  EXPECT(owned != NULL && len == sizeof VALUE && version == v1);
  if (owned != NULL) EXPECT(memcmp(owned, VALUE, sizeof VALUE) == 0);
  factory_kv_free(owned);
  owned = (uint8_t *)&failures;
  EXPECT_STATUS(factory_kv_get_alloc(kv, (const uint8_t *)"absent", 6, &owned,
                                     &len, &version),
                FACTORY_KV_NOT_FOUND);
  EXPECT(owned == (uint8_t *)&failures);

  /* An empty value is a value; its buffer is still a buffer to free. */
  EXPECT_STATUS(factory_kv_put(kv, (const uint8_t *)"empty", 5, NULL, 0, &v1),
                FACTORY_OK);
  owned = NULL;
  EXPECT_STATUS(factory_kv_get_alloc(kv, (const uint8_t *)"empty", 5, &owned,
                                     &len, &version),
                FACTORY_OK);
  EXPECT(owned != NULL && len == 0 && version == v1);
  factory_kv_free(owned);
  factory_kv_free(NULL);
}

static void test_conditional_writes(factory_kv *kv) {
  const uint8_t *key = (const uint8_t *)"cond";
  uint64_t v1 = 0, v2 = 0, v3 = 0, got = SENTINEL_VERSION;
  uint8_t buf[8];
  size_t len = 0;

  EXPECT_STATUS(factory_kv_update(kv, key, 4, (const uint8_t *)"x", 1, &got),
                FACTORY_KV_NOT_FOUND);
  EXPECT(got == SENTINEL_VERSION);
  EXPECT_STATUS(factory_kv_delete(kv, key, 4, &got), FACTORY_KV_NOT_FOUND);
  EXPECT(got == SENTINEL_VERSION);

  EXPECT_STATUS(factory_kv_create(kv, key, 4, (const uint8_t *)"one", 3, &v1),
                FACTORY_OK);
  EXPECT_STATUS(factory_kv_create(kv, key, 4, (const uint8_t *)"two", 3, &got),
                FACTORY_KV_EXISTS);
  EXPECT(got == v1);

  EXPECT_STATUS(factory_kv_update(kv, key, 4, (const uint8_t *)"two", 3, &v2),
                FACTORY_OK);
  EXPECT(v2 > v1);

  /* A stale version is refused and the current one reported. */
  got = SENTINEL_VERSION;
  EXPECT_STATUS(factory_kv_cas(kv, key, 4, v1, (const uint8_t *)"three", 5,
                               &got),
                FACTORY_KV_VERSION_MISMATCH);
  EXPECT(got == v2);
  EXPECT_STATUS(factory_kv_get(kv, key, 4, buf, sizeof buf, &len, &got),
                FACTORY_OK);
  EXPECT(len == 3 && memcmp(buf, "two", 3) == 0 && got == v2);
  EXPECT_STATUS(factory_kv_cas(kv, key, 4, v2, (const uint8_t *)"three", 5,
                               &v3),
                FACTORY_OK);
  EXPECT(v3 > v2);

  /* cas on an absent key: only with FACTORY_KV_NO_VERSION. */
  got = SENTINEL_VERSION;
  EXPECT_STATUS(factory_kv_cas(kv, (const uint8_t *)"fresh", 5, v3,
                               (const uint8_t *)"f", 1, &got),
                FACTORY_KV_VERSION_MISMATCH);
  EXPECT(got == FACTORY_KV_NO_VERSION);
  EXPECT_STATUS(factory_kv_cas(kv, (const uint8_t *)"fresh", 5,
                               FACTORY_KV_NO_VERSION, (const uint8_t *)"f", 1,
                               &got),
                FACTORY_OK);

  EXPECT_STATUS(factory_kv_delete(kv, key, 4, &got), FACTORY_OK);
  EXPECT(got > v3);
  EXPECT_STATUS(factory_kv_get(kv, key, 4, buf, sizeof buf, &len, &got),
                FACTORY_KV_NOT_FOUND);
}

static void test_too_large(factory_kv *kv) {
  /* One byte over the server's default 1 MiB value limit: answered, and
   * the connection goes on. */
  size_t over = (1u << 20) + 1;
  uint8_t *big = calloc(over, 1);
  uint8_t *huge_key = calloc(FACTORY_KV_KEY_CEILING + 1, 1);
  uint64_t got = SENTINEL_VERSION;
  size_t len = 0;
  uint8_t buf[4];
  EXPECT(big != NULL && huge_key != NULL);
  if (big == NULL || huge_key == NULL) return;

  EXPECT_STATUS(factory_kv_put(kv, (const uint8_t *)"big", 3, big, over, &got),
                FACTORY_ERR_TOO_LARGE);
  EXPECT(got == SENTINEL_VERSION);
  EXPECT_STATUS(factory_kv_get(kv, (const uint8_t *)"big", 3, buf, sizeof buf,
                               &len, &got),
                FACTORY_KV_NOT_FOUND);
  /* Exactly the limit is taken. */
  EXPECT_STATUS(factory_kv_put(kv, (const uint8_t *)"big", 3, big, over - 1,
                               &got),
                FACTORY_OK);
  EXPECT_STATUS(factory_kv_get(kv, (const uint8_t *)"big", 3, buf, sizeof buf,
                               &len, &got),
                FACTORY_ERR_BUFFER_TOO_SMALL);
  EXPECT(len == over - 1);

  /* A key over the server's 1 KiB limit, and one over what v2 carries
   * (refused before anything is sent). */
  EXPECT_STATUS(factory_kv_put(kv, huge_key, 1025, (const uint8_t *)"v", 1,
                               &got),
                FACTORY_ERR_TOO_LARGE);
  EXPECT_STATUS(factory_kv_get(kv, huge_key, FACTORY_KV_KEY_CEILING + 1, buf,
                               sizeof buf, &len, &got),
                FACTORY_ERR_TOO_LARGE);
  EXPECT_STATUS(factory_kv_put(kv, (const uint8_t *)"after", 5,
                               (const uint8_t *)"ok", 2, &got),
                FACTORY_OK);
  free(big);
  free(huge_key);
}

#define SCAN_KEYS 25
#define PAGE 10

static void test_scan_paging(factory_kv *kv) {
  char key[32];
  uint8_t start[64];
  size_t start_len = 5, seen = 0, pages = 0;
  uint64_t versions[SCAN_KEYS];
  factory_kv_scan_result *result = NULL;
  factory_kv_item item;
  int i;

  for (i = 0; i < SCAN_KEYS; i++) {
    char value[32];
    int n = snprintf(key, sizeof key, "scan/%02d", i);
    int m = snprintf(value, sizeof value, "value %d", i);
    EXPECT_STATUS(factory_kv_put(kv, (const uint8_t *)key, (size_t)n,
                                 (const uint8_t *)value, (size_t)m,
                                 &versions[i]),
                  FACTORY_OK);
  }
  memcpy(start, "scan/", 5);
  /* Bounded: three pages are expected, and "scan/" sorts after every
   * other key this test writes; "zz" is put last so a page after the
   * scan keys would show it. */
  EXPECT_STATUS(factory_kv_put(kv, (const uint8_t *)"zz", 2,
                               (const uint8_t *)"end", 3, &versions[0]),
                FACTORY_OK);
  while (pages < 10) {
    size_t count, j;
    int done = 0;
    EXPECT_STATUS(factory_kv_scan(kv, start, start_len, PAGE, &result),
                  FACTORY_OK);
    if (result == NULL) return;
    pages++;
    count = factory_kv_scan_count(result);
    EXPECT(count <= PAGE);
    for (j = 0; j < count; j++) {
      char want[32];
      EXPECT_STATUS(factory_kv_scan_item(result, j, &item), FACTORY_OK);
      if (item.key_len == 2 && memcmp(item.key, "zz", 2) == 0) {
        done = 1;
        break;
      }
      snprintf(want, sizeof want, "scan/%02d", (int)seen);
      EXPECT(item.key_len == strlen(want) &&
             memcmp(item.key, want, item.key_len) == 0);
      snprintf(want, sizeof want, "value %d", (int)seen);
      EXPECT(item.value_len == strlen(want) &&
             memcmp(item.value, want, item.value_len) == 0);
      seen++;
      /* Next page: the last key with one zero byte after it. */
      if (item.key_len + 1 <= sizeof start) {
        memcpy(start, item.key, item.key_len);
        start[item.key_len] = 0;
        start_len = item.key_len + 1;
      }
    }
    EXPECT_STATUS(factory_kv_scan_item(result, count, &item),
                  FACTORY_ERR_INVALID_ARGUMENT);
    if (done || !factory_kv_scan_more(result)) {
      factory_kv_scan_free(result);
      break;
    }
    factory_kv_scan_free(result);
    result = NULL;
  }
  EXPECT(seen == SCAN_KEYS);
  EXPECT(pages == 3);

  result = (factory_kv_scan_result *)&failures;
  EXPECT_STATUS(factory_kv_scan(kv, start, start_len, 0, &result),
                FACTORY_ERR_INVALID_ARGUMENT);
  EXPECT_STATUS(factory_kv_scan(kv, start, start_len, 1001, &result),
                FACTORY_ERR_INVALID_ARGUMENT);
  EXPECT(result == (factory_kv_scan_result *)&failures);
  /* Past the last key: an empty page with nothing more. */
  result = NULL;
  EXPECT_STATUS(factory_kv_scan(kv, (const uint8_t *)"zzz", 3, 5, &result),
                FACTORY_OK);
  EXPECT(factory_kv_scan_count(result) == 0);
  EXPECT(factory_kv_scan_more(result) == 0);
  factory_kv_scan_free(result);
  factory_kv_scan_free(NULL);
  EXPECT(factory_kv_scan_count(NULL) == 0);
}

static void test_null_pointers(factory_kv *kv) {
  uint8_t buf[4];
  size_t len = SENTINEL_LEN;
  uint64_t version = SENTINEL_VERSION;
  factory_kv *none = (factory_kv *)&failures;
  const char *servers[1] = {NULL};

  EXPECT_STATUS(factory_kv_get(NULL, KEY, 1, buf, 4, &len, &version),
                FACTORY_ERR_NULL_POINTER);
  EXPECT_STATUS(factory_kv_get(kv, NULL, 1, buf, 4, &len, &version),
                FACTORY_ERR_NULL_POINTER);
  EXPECT_STATUS(factory_kv_get(kv, KEY, 1, NULL, 4, &len, &version),
                FACTORY_ERR_NULL_POINTER);
  EXPECT_STATUS(factory_kv_get(kv, KEY, 1, buf, 4, NULL, &version),
                FACTORY_ERR_NULL_POINTER);
  EXPECT_STATUS(factory_kv_put(kv, KEY, 1, NULL, 1, &version),
                FACTORY_ERR_NULL_POINTER);
  EXPECT_STATUS(factory_kv_put(kv, KEY, 1, VALUE, 1, NULL),
                FACTORY_ERR_NULL_POINTER);
  EXPECT_STATUS(factory_kv_delete(kv, KEY, 1, NULL), FACTORY_ERR_NULL_POINTER);
  EXPECT_STATUS(factory_kv_scan(kv, NULL, 0, 1, NULL),
                FACTORY_ERR_NULL_POINTER);
  EXPECT_STATUS(factory_kv_scan_item(NULL, 0, NULL), FACTORY_ERR_NULL_POINTER);
  EXPECT(len == SENTINEL_LEN && version == SENTINEL_VERSION);
  /* NULL with a zero length is the empty key. */
  EXPECT_STATUS(factory_kv_get(kv, NULL, 0, buf, 4, &len, &version),
                FACTORY_KV_NOT_FOUND);

  EXPECT_STATUS(factory_kv_connect(NULL, 1, 0, &none),
                FACTORY_ERR_NULL_POINTER);
  EXPECT_STATUS(factory_kv_connect("", 1, 0, &none),
                FACTORY_ERR_INVALID_ARGUMENT);
  EXPECT_STATUS(factory_kv_connect_cluster(NULL, 0, 0, &none),
                FACTORY_ERR_INVALID_ARGUMENT);
  EXPECT_STATUS(factory_kv_connect_cluster(servers, 1, 0, &none),
                FACTORY_ERR_NULL_POINTER);
  servers[0] = "no-port";
  EXPECT_STATUS(factory_kv_connect_cluster(servers, 1, 0, &none),
                FACTORY_ERR_INVALID_ARGUMENT);
  EXPECT(none == (factory_kv *)&failures);
  factory_kv_close(NULL);
}

/* Two servers, the second a backup of the first. */
static void test_cluster_follows_the_primary(void) {
  factory_server *primary = start_server(0);
  factory_server *backup = start_server(1);
  uint16_t pp = factory_server_port(primary), bp = factory_server_port(backup);
  char primary_addr[32], backup_addr[32];
  const char *servers[2];
  factory_kv *cluster = NULL, *on_backup;
  uint64_t version = 0, got = SENTINEL_VERSION;
  uint8_t buf[8];
  size_t len = 0;

  EXPECT_STATUS(factory_server_add_peer(primary, 1, "127.0.0.1", bp),
                FACTORY_OK);
  EXPECT_STATUS(factory_server_add_peer(backup, 0, "127.0.0.1", pp),
                FACTORY_OK);
  snprintf(primary_addr, sizeof primary_addr, "127.0.0.1:%u", (unsigned)pp);
  snprintf(backup_addr, sizeof backup_addr, "127.0.0.1:%u", (unsigned)bp);

  /* The first write makes its server the primary (as in the original);
   * once the backup has replicated it, the backup refuses writes. */
  on_backup = connect_to(primary);
  EXPECT_STATUS(factory_kv_put(on_backup, (const uint8_t *)"first", 5,
                               (const uint8_t *)"1", 1, &version),
                FACTORY_OK);
  factory_kv_close(on_backup);
  on_backup = connect_to(backup);
  EXPECT_STATUS(factory_kv_put(on_backup, (const uint8_t *)"c", 1,
                               (const uint8_t *)"1", 1, &got),
                FACTORY_ERR_NOT_PRIMARY);
  EXPECT(got == SENTINEL_VERSION);
  factory_kv_close(on_backup);

  servers[0] = backup_addr;
  servers[1] = primary_addr;
  EXPECT_STATUS(factory_kv_connect_cluster(servers, 2, 20000, &cluster),
                FACTORY_OK);
  if (cluster != NULL) {
    EXPECT_STATUS(factory_kv_put(cluster, (const uint8_t *)"c", 1,
                                 (const uint8_t *)"1", 1, &version),
                  FACTORY_OK);
    EXPECT_STATUS(factory_kv_get(cluster, (const uint8_t *)"c", 1, buf,
                                 sizeof buf, &len, &got),
                  FACTORY_OK);
    EXPECT(len == 1 && buf[0] == '1' && got == version);
    EXPECT_STATUS(factory_kv_create(cluster, (const uint8_t *)"c", 1,
                                    (const uint8_t *)"2", 1, &got),
                  FACTORY_KV_EXISTS);
    EXPECT(got == version);
  }
  factory_kv_close(cluster);
  EXPECT_STATUS(factory_server_stop(backup), FACTORY_OK);
  EXPECT_STATUS(factory_server_stop(primary), FACTORY_OK);
}

int main(void) {
  factory_server *server = start_server(0);
  factory_kv *kv = connect_to(server);
  test_binary_get_put(kv);
  test_conditional_writes(kv);
  test_too_large(kv);
  test_scan_paging(kv);
  test_null_pointers(kv);
  factory_kv_close(kv);
  EXPECT_STATUS(factory_server_stop(server), FACTORY_OK);
  test_cluster_follows_the_primary();
  if (failures > 0) {
    fprintf(stderr, "test_kv: %d failure(s)\n", failures);
    return 1;
  }
  printf("test_kv: all passed\n");
  return 0;
}
