/*
 * cluster.c: a three-server factory cluster embedded in one C program.
 *
 * Starts three servers on free loopback ports (port 0), tells each about
 * the other two once their ports are known, writes through a client of
 * server 0 (which the first write makes the primary), reads every record
 * back from the primary and from both backups, and stops the cluster.
 * Exits 0 when every value is as expected.
 *
 *   cc cluster.c $(pkg-config --cflags --libs libfactory) -o cluster
 */
#include <stdio.h>
#include <stdlib.h>

#include "factory.h"

#define SERVERS 3
#define CUSTOMERS 5
#define ORDERS 10

/* Stops the program with the failing call and its status. */
#define CHECK(call)                                                         \
  do {                                                                      \
    factory_status status_ = (call);                                        \
    if (status_ != FACTORY_OK) {                                            \
      fprintf(stderr, "cluster: %s:%d: %s: %s\n", __FILE__, __LINE__,       \
              #call, factory_status_str(status_));                          \
      exit(1);                                                              \
    }                                                                       \
  } while (0)

#define EXPECT(cond)                                                        \
  do {                                                                      \
    if (!(cond)) {                                                          \
      fprintf(stderr, "cluster: %s:%d: expected %s\n", __FILE__, __LINE__,  \
              #cond);                                                       \
      exit(1);                                                              \
    }                                                                       \
  } while (0)

/* Starts server `id` on 127.0.0.1 and a port the system picks. */
static factory_server *start_server(int32_t id) {
  factory_server *server = NULL;
  factory_server_config *config = factory_server_config_new(0, id);
  EXPECT(config != NULL);
  CHECK(factory_server_config_set_bind(config, "127.0.0.1"));
  CHECK(factory_server_start(config, &server));
  /* The server holds a copy: the configuration can go right away. */
  factory_server_config_free(config);
  return server;
}

/* Places ORDERS orders for each customer through the primary. */
static void write_orders(factory_client *client) {
  int32_t cid, n;
  for (cid = 0; cid < CUSTOMERS; cid++) {
    for (n = 0; n < ORDERS; n++) {
      factory_robot_info info;
      CHECK(factory_client_order(client, cid, n, &info));
      EXPECT(info.customer_id == cid && info.order_number == n);
      EXPECT(info.request_type == 1 && info.admin_id == 0);
    }
  }
}

/*
 * Reads every customer from `server`. A backup applies an entry only when
 * the next one arrives, so it may still miss the very last write (the last
 * order of the last customer); the primary has everything.
 */
static void check_records(uint16_t port, int is_primary) {
  factory_client *client = NULL;
  int32_t cid;
  CHECK(factory_client_connect("127.0.0.1", port, &client));
  for (cid = 0; cid < CUSTOMERS + 1; cid++) {
    factory_customer_record record;
    int32_t want = cid < CUSTOMERS ? ORDERS - 1 : -1;
    CHECK(factory_client_read(client, cid, &record));
    EXPECT(record.customer_id == cid);
    if (!is_primary && cid == CUSTOMERS - 1) {
      EXPECT(record.last_order == want || record.last_order == want - 1);
    } else {
      EXPECT(record.last_order == want);
    }
  }
  factory_client_close(client);
}

int main(void) {
  factory_server *servers[SERVERS];
  uint16_t ports[SERVERS];
  factory_client *client = NULL;
  int32_t i, j, last = -2;

  printf("libfactory %s\n", factory_version());
  for (i = 0; i < SERVERS; i++) {
    servers[i] = start_server(i);
    ports[i] = factory_server_port(servers[i]);
    EXPECT(ports[i] != 0);
  }
  /* Ports are known only now: wire every server to the other two. */
  for (i = 0; i < SERVERS; i++) {
    for (j = 0; j < SERVERS; j++) {
      if (i != j) {
        CHECK(factory_server_add_peer(servers[i], j, "127.0.0.1", ports[j]));
      }
    }
  }

  CHECK(factory_client_connect("127.0.0.1", ports[0], &client));
  write_orders(client);
  factory_client_close(client);

  CHECK(factory_server_last_order(servers[0], CUSTOMERS - 1, &last));
  EXPECT(last == ORDERS - 1);
  for (i = 0; i < SERVERS; i++) {
    check_records(ports[i], i == 0);
  }

  for (i = 0; i < SERVERS; i++) {
    CHECK(factory_server_stop(servers[i]));
  }
  printf("cluster: %d servers, %d writes, every record checked\n", SERVERS,
         CUSTOMERS * ORDERS);
  return 0;
}
