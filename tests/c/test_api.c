/*
 * test_api.c: the error paths of libfactory's C API.
 *
 * Each test calls the API the wrong way or at the wrong time (NULL
 * pointers, bad strings, an unknown host, a port in use, a server stopped
 * under its clients, SIGPIPE) and checks the documented status, and that
 * out-params are left untouched on failure. Exits 0 when all pass.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "factory.h"

static int failures = 0;

#define EXPECT(cond)                                                        \
  do {                                                                      \
    if (!(cond)) {                                                          \
      fprintf(stderr, "test_api: %s:%d: expected %s\n", __FILE__, __LINE__, \
              #cond);                                                       \
      failures++;                                                           \
    }                                                                       \
  } while (0)

#define EXPECT_STATUS(call, want)                                           \
  do {                                                                      \
    factory_status got_ = (call);                                           \
    if (got_ != (want)) {                                                   \
      fprintf(stderr, "test_api: %s:%d: %s gave \"%s\", expected \"%s\"\n", \
              __FILE__, __LINE__, #call, factory_status_str(got_),          \
              factory_status_str(want));                                    \
      failures++;                                                           \
    }                                                                       \
  } while (0)

/* Sentinels: a failed call must leave out-params exactly as they were. */
#define BAD_SERVER ((factory_server *)&failures)
#define BAD_CLIENT ((factory_client *)&failures)

static factory_server *start_loopback(uint16_t port) {
  factory_server *server = NULL;
  factory_server_config *config = factory_server_config_new(port, 0);
  EXPECT_STATUS(factory_server_config_set_bind(config, "127.0.0.1"),
                FACTORY_OK);
  EXPECT_STATUS(factory_server_start(config, &server), FACTORY_OK);
  factory_server_config_free(config);
  if (server == NULL) {
    fprintf(stderr, "test_api: cannot start a server, giving up\n");
    exit(1);
  }
  return server;
}

static void sigpipe_handler(int sig) { (void)sig; }

static void test_sigpipe_disposition(void) {
  struct sigaction mine, now;
  factory_server *server;
  memset(&mine, 0, sizeof mine);
  mine.sa_handler = sigpipe_handler;
  sigemptyset(&mine.sa_mask);
  sigaction(SIGPIPE, &mine, NULL);

  /* A handler the program installed is kept... */
  server = start_loopback(0);
  sigaction(SIGPIPE, NULL, &now);
  EXPECT(now.sa_handler == sigpipe_handler);

  /* ...while the default action, which would kill us, is replaced. */
  signal(SIGPIPE, SIG_DFL);
  {
    factory_client *client = NULL;
    EXPECT_STATUS(factory_client_connect("127.0.0.1",
                                         factory_server_port(server), &client),
                  FACTORY_OK);
    sigaction(SIGPIPE, NULL, &now);
    EXPECT(now.sa_handler == SIG_IGN);
    factory_client_close(client);
  }
  EXPECT_STATUS(factory_server_stop(server), FACTORY_OK);
}

static void test_static_strings(void) {
  int s;
  EXPECT(factory_version() != NULL && factory_version()[0] != '\0');
  for (s = FACTORY_OK; s <= FACTORY_ERR_TIMEOUT; s++) {
    const char *text = factory_status_str((factory_status)s);
    EXPECT(text != NULL && text[0] != '\0');
    if (s > FACTORY_OK) {
      EXPECT(strcmp(text, factory_status_str((factory_status)(s - 1))) != 0);
    }
  }
}

static void test_null_pointers(void) {
  factory_server_config *config = factory_server_config_new(0, 0);
  factory_server *server = BAD_SERVER;
  factory_client *client = BAD_CLIENT;
  factory_robot_info info = {7, 7, 7, 7, 7};
  factory_customer_record record = {7, 7};
  int32_t last = 7;

  EXPECT_STATUS(factory_server_config_set_bind(NULL, "127.0.0.1"),
                FACTORY_ERR_NULL_POINTER);
  EXPECT_STATUS(factory_server_config_set_bind(config, NULL),
                FACTORY_ERR_NULL_POINTER);
  EXPECT_STATUS(factory_server_config_add_peer(NULL, 1, "localhost", 1),
                FACTORY_ERR_NULL_POINTER);
  EXPECT_STATUS(factory_server_config_add_peer(config, 1, NULL, 1),
                FACTORY_ERR_NULL_POINTER);
  EXPECT_STATUS(factory_server_start(NULL, &server), FACTORY_ERR_NULL_POINTER);
  EXPECT_STATUS(factory_server_start(config, NULL), FACTORY_ERR_NULL_POINTER);
  EXPECT(server == BAD_SERVER);
  EXPECT(factory_server_port(NULL) == 0);
  EXPECT_STATUS(factory_server_add_peer(NULL, 1, "localhost", 1),
                FACTORY_ERR_NULL_POINTER);
  EXPECT_STATUS(factory_server_last_order(NULL, 1, &last),
                FACTORY_ERR_NULL_POINTER);
  EXPECT(last == 7);
  EXPECT_STATUS(factory_server_stop(NULL), FACTORY_ERR_NULL_POINTER);

  EXPECT_STATUS(factory_client_connect(NULL, 1, &client),
                FACTORY_ERR_NULL_POINTER);
  EXPECT_STATUS(factory_client_connect("localhost", 1, NULL),
                FACTORY_ERR_NULL_POINTER);
  EXPECT(client == BAD_CLIENT);
  EXPECT_STATUS(factory_client_order(NULL, 1, 1, &info),
                FACTORY_ERR_NULL_POINTER);
  EXPECT_STATUS(factory_client_read(NULL, 1, &record),
                FACTORY_ERR_NULL_POINTER);
  EXPECT(info.customer_id == 7 && record.customer_id == 7);

  /* Freeing NULL is a no-op. */
  factory_server_config_free(NULL);
  factory_client_close(NULL);
  factory_server_config_free(config);
}

static void test_null_out_params_on_live_handles(void) {
  factory_server *server = start_loopback(0);
  factory_client *client = NULL;
  EXPECT_STATUS(factory_client_connect("127.0.0.1", factory_server_port(server),
                                       &client),
                FACTORY_OK);
  EXPECT_STATUS(factory_server_add_peer(server, 1, NULL, 1),
                FACTORY_ERR_NULL_POINTER);
  EXPECT_STATUS(factory_server_last_order(server, 1, NULL),
                FACTORY_ERR_NULL_POINTER);
  EXPECT_STATUS(factory_client_order(client, 1, 1, NULL),
                FACTORY_ERR_NULL_POINTER);
  EXPECT_STATUS(factory_client_read(client, 1, NULL), FACTORY_ERR_NULL_POINTER);
  factory_client_close(client);
  EXPECT_STATUS(factory_server_stop(server), FACTORY_OK);
}

static void test_invalid_arguments(void) {
  factory_server_config *config = factory_server_config_new(0, 0);
  factory_server *server = start_loopback(0);
  factory_client *client = BAD_CLIENT;
  factory_robot_info info = {7, 7, 7, 7, 7};
  factory_customer_record record = {7, 7};

  EXPECT_STATUS(factory_server_config_set_bind(config, "localhost"),
                FACTORY_ERR_INVALID_ARGUMENT);
  EXPECT_STATUS(factory_server_config_set_bind(config, "::1"), FACTORY_OK);
  EXPECT_STATUS(factory_server_config_add_peer(config, 1, "", 1),
                FACTORY_ERR_INVALID_ARGUMENT);
  EXPECT_STATUS(factory_server_config_add_peer(config, 1, "\xff", 1),
                FACTORY_ERR_INVALID_ARGUMENT);
  EXPECT_STATUS(factory_server_add_peer(server, 1, "", 1),
                FACTORY_ERR_INVALID_ARGUMENT);
  EXPECT_STATUS(factory_client_connect("", 1, &client),
                FACTORY_ERR_INVALID_ARGUMENT);
  EXPECT(client == BAD_CLIENT);

  client = NULL;
  EXPECT_STATUS(factory_client_connect("127.0.0.1", factory_server_port(server),
                                       &client),
                FACTORY_OK);
  /* Customer -1 would end the session on the wire. */
  EXPECT_STATUS(factory_client_order(client, -1, 1, &info),
                FACTORY_ERR_INVALID_ARGUMENT);
  EXPECT_STATUS(factory_client_read(client, -1, &record),
                FACTORY_ERR_INVALID_ARGUMENT);
  EXPECT(info.customer_id == 7 && record.customer_id == 7);
  /* ...and the session is still usable afterwards. */
  EXPECT_STATUS(factory_client_order(client, 3, 4, &info), FACTORY_OK);
  EXPECT(info.customer_id == 3 && info.order_number == 4);

  factory_client_close(client);
  EXPECT_STATUS(factory_server_stop(server), FACTORY_OK);
  factory_server_config_free(config);
}

static void test_unreachable_servers(void) {
  factory_client *client = BAD_CLIENT;
  factory_server *server = start_loopback(0);
  uint16_t port = factory_server_port(server);
  factory_server *second = BAD_SERVER;
  factory_server_config *config = factory_server_config_new(port, 1);

  /* A second server on the same port. */
  EXPECT_STATUS(factory_server_config_set_bind(config, "127.0.0.1"),
                FACTORY_OK);
  EXPECT_STATUS(factory_server_start(config, &second),
                FACTORY_ERR_ADDRESS_IN_USE);
  EXPECT(second == BAD_SERVER);
  factory_server_config_free(config);

  /* A host that does not resolve, then a port nobody listens on. */
  EXPECT_STATUS(factory_client_connect("no-such-host.invalid", port, &client),
                FACTORY_ERR_CONNECT);
  EXPECT_STATUS(factory_server_stop(server), FACTORY_OK);
  EXPECT_STATUS(factory_client_connect("127.0.0.1", port, &client),
                FACTORY_ERR_CONNECT);
  EXPECT(client == BAD_CLIENT);
}

static int closed(factory_status s) {
  return s == FACTORY_ERR_CLOSED || s == FACTORY_ERR_IO;
}

static void *stop_in_thread(void *server) {
  factory_status *result = malloc(sizeof *result);
  *result = factory_server_stop((factory_server *)server);
  return result;
}

/*
 * Stops a server (from another thread) while two clients are connected.
 * Their next calls must fail with CLOSED or IO: the first write to the
 * dead connection usually succeeds and the read sees the close; the next
 * write then meets the reset, which would raise SIGPIPE.
 */
static void test_stop_under_clients(void) {
  factory_server *server = start_loopback(0);
  factory_client *clients[2] = {NULL, NULL};
  factory_robot_info info = {7, 7, 7, 7, 7};
  factory_customer_record record = {7, 7};
  pthread_t stopper;
  void *result = NULL;
  int i;

  for (i = 0; i < 2; i++) {
    EXPECT_STATUS(factory_client_connect("127.0.0.1",
                                         factory_server_port(server),
                                         &clients[i]),
                  FACTORY_OK);
    EXPECT_STATUS(factory_client_order(clients[i], i, 1, &info), FACTORY_OK);
  }
  info.customer_id = 7;

  EXPECT(pthread_create(&stopper, NULL, stop_in_thread, server) == 0);
  EXPECT(pthread_join(stopper, &result) == 0);
  EXPECT(result != NULL && *(factory_status *)result == FACTORY_OK);
  free(result);

  EXPECT(closed(factory_client_order(clients[0], 0, 2, &info)));
  EXPECT(closed(factory_client_order(clients[0], 0, 3, &info)));
  EXPECT(closed(factory_client_order(clients[0], 0, 4, &info)));
  EXPECT(closed(factory_client_read(clients[1], 1, &record)));
  EXPECT(closed(factory_client_read(clients[1], 1, &record)));
  EXPECT(info.customer_id == 7 && record.customer_id == 7);
  for (i = 0; i < 2; i++) {
    factory_client_close(clients[i]);
  }
}

int main(void) {
  test_sigpipe_disposition();
  test_static_strings();
  test_null_pointers();
  test_null_out_params_on_live_handles();
  test_invalid_arguments();
  test_unreachable_servers();
  test_stop_under_clients();
  if (failures > 0) {
    fprintf(stderr, "test_api: %d check(s) failed\n", failures);
    return 1;
  }
  printf("test_api: all checks passed\n");
  return 0;
}
