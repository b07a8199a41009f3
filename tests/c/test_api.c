/*
 * test_api.c: the error paths of libfactory's C API.
 *
 * Each test calls the API the wrong way or at the wrong time (NULL
 * pointers, bad strings, an unknown host, a port in use, a server stopped
 * under its clients, a server that never answers or answers garbage,
 * SIGPIPE) and checks the documented status, and that out-params are left
 * untouched on failure; one checks the calls the header allows from
 * several threads at once. Exits 0 when all pass.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

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

static factory_server *start_loopback_as(uint16_t port, int32_t id) {
  factory_server *server = NULL;
  factory_server_config *config = factory_server_config_new(port, id);
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

static factory_server *start_loopback(uint16_t port) {
  return start_loopback_as(port, 0);
}

static factory_server *start_loopback_id(int32_t id) {
  return start_loopback_as(0, id);
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

/* --- fake servers on raw sockets ------------------------------------- */

/* A listening socket on 127.0.0.1 at a port the system picks. */
static int listen_loopback(uint16_t *port) {
  struct sockaddr_in addr;
  socklen_t len = sizeof addr;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) {
    perror("test_api: socket");
    exit(1);
  }
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
      listen(fd, 8) != 0 ||
      getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
    perror("test_api: bind/listen");
    exit(1);
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

static double seconds_since(const struct timespec *start) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)(now.tv_sec - start->tv_sec) +
         (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/*
 * A listener that never accepts: the connection completes in its backlog
 * and the client's tag and request are taken by the kernel, but nothing
 * ever answers. The call must give up with TIMEOUT after about the
 * timeout given, not the 30 s default.
 */
static void test_connect_timeout(void) {
  uint16_t port;
  int fd = listen_loopback(&port);
  factory_client *client = NULL;
  factory_robot_info info = {7, 7, 7, 7, 7};
  factory_customer_record record = {7, 7};
  struct timespec start;
  double waited;

  EXPECT_STATUS(factory_client_connect_timeout("127.0.0.1", port, 300, &client),
                FACTORY_OK);
  clock_gettime(CLOCK_MONOTONIC, &start);
  EXPECT_STATUS(factory_client_order(client, 1, 1, &info),
                FACTORY_ERR_TIMEOUT);
  waited = seconds_since(&start);
  EXPECT(waited >= 0.25 && waited < 10.0);
  EXPECT(info.customer_id == 7);
  factory_client_close(client);

  client = NULL;
  EXPECT_STATUS(factory_client_connect_timeout("127.0.0.1", port, 300, &client),
                FACTORY_OK);
  clock_gettime(CLOCK_MONOTONIC, &start);
  EXPECT_STATUS(factory_client_read(client, 1, &record), FACTORY_ERR_TIMEOUT);
  waited = seconds_since(&start);
  EXPECT(waited >= 0.25 && waited < 10.0);
  EXPECT(record.customer_id == 7);
  factory_client_close(client);
  close(fd);
}

static int read_all(int fd, unsigned char *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r <= 0) return -1;
    got += (size_t)r;
  }
  return 0;
}

static int32_t get_be32(const unsigned char *p) {
  return (int32_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
                   ((uint32_t)p[2] << 8) | (uint32_t)p[3]);
}

static void put_be32(unsigned char *p, int32_t v) {
  uint32_t u = (uint32_t)v;
  p[0] = (unsigned char)(u >> 24);
  p[1] = (unsigned char)(u >> 16);
  p[2] = (unsigned char)(u >> 8);
  p[3] = (unsigned char)u;
}

/*
 * A fake server: for each of `arg`'s connections, reads the tag and one
 * request and answers with a well-sized reply for another customer (the
 * request's customer + 1), then closes.
 */
struct garbage_server {
  int fd;
  int connections;
};

static void *answer_garbage(void *arg) {
  struct garbage_server *g = arg;
  int i;
  for (i = 0; i < g->connections; i++) {
    unsigned char in[20], out[20];
    int conn = accept(g->fd, NULL, NULL);
    if (conn < 0) break;
    if (read_all(conn, in, sizeof in) == 0) {
      int32_t customer = get_be32(in + 8);
      int32_t kind = get_be32(in + 16);
      memset(out, 0, sizeof out);
      put_be32(out, customer + 1);
      put_be32(out + 4, get_be32(in + 12));
      if (kind == 1) {
        put_be32(out + 8, 1);
        if (write(conn, out, 20) != 20) perror("test_api: write");
      } else if (write(conn, out, 8) != 8) {
        perror("test_api: write");
      }
    }
    close(conn);
  }
  return NULL;
}

static void test_protocol_error(void) {
  struct garbage_server g;
  pthread_t thread;
  uint16_t port;
  factory_client *client = NULL;
  factory_robot_info info = {7, 7, 7, 7, 7};
  factory_customer_record record = {7, 7};

  g.fd = listen_loopback(&port);
  g.connections = 2;
  EXPECT(pthread_create(&thread, NULL, answer_garbage, &g) == 0);

  EXPECT_STATUS(factory_client_connect_timeout("127.0.0.1", port, 10000, &client),
                FACTORY_OK);
  EXPECT_STATUS(factory_client_order(client, 5, 6, &info),
                FACTORY_ERR_PROTOCOL);
  EXPECT(info.customer_id == 7);
  factory_client_close(client);

  client = NULL;
  EXPECT_STATUS(factory_client_connect_timeout("127.0.0.1", port, 10000, &client),
                FACTORY_OK);
  EXPECT_STATUS(factory_client_read(client, 5, &record), FACTORY_ERR_PROTOCOL);
  EXPECT(record.customer_id == 7);
  factory_client_close(client);

  EXPECT(pthread_join(thread, NULL) == 0);
  close(g.fd);
}

/* --- calls from several threads at once -------------------------------- */

#define CONCURRENT_ORDERS 200

struct shared_servers {
  factory_server *a, *b;
  uint16_t port_a, port_b;
  pthread_mutex_t lock;
  int writes_done;
  int errors;
};

static int writes_done(struct shared_servers *s) {
  int done;
  pthread_mutex_lock(&s->lock);
  done = s->writes_done;
  pthread_mutex_unlock(&s->lock);
  return done;
}

static void note_error(struct shared_servers *s, const char *what) {
  pthread_mutex_lock(&s->lock);
  s->errors++;
  pthread_mutex_unlock(&s->lock);
  fprintf(stderr, "test_api: concurrent %s failed\n", what);
}

/* factory_server_port on both servers, over and over. */
static void *call_port(void *arg) {
  struct shared_servers *s = arg;
  long i;
  for (i = 0; i < 1000000 && !writes_done(s); i++) {
    if (factory_server_port(s->a) != s->port_a ||
        factory_server_port(s->b) != s->port_b) {
      note_error(s, "factory_server_port");
      break;
    }
  }
  return NULL;
}

/* factory_server_last_order on both servers: never an error, never a
 * value outside what was written, never going back. */
static void *call_last_order(void *arg) {
  struct shared_servers *s = arg;
  int32_t seen_a = -1, seen_b = -1;
  long i;
  for (i = 0; i < 1000000 && !writes_done(s); i++) {
    int32_t a = 7, b = 7;
    if (factory_server_last_order(s->a, 42, &a) != FACTORY_OK ||
        factory_server_last_order(s->b, 42, &b) != FACTORY_OK ||
        a < seen_a || b < seen_b || a >= CONCURRENT_ORDERS ||
        b >= CONCURRENT_ORDERS) {
      note_error(s, "factory_server_last_order");
      break;
    }
    seen_a = a;
    seen_b = b;
  }
  return NULL;
}

/* Each server gets the other as its peer, from two threads at once. */
static void *add_b_to_a(void *arg) {
  struct shared_servers *s = arg;
  if (factory_server_add_peer(s->a, 1, "127.0.0.1", s->port_b) != FACTORY_OK)
    note_error(s, "factory_server_add_peer");
  return NULL;
}

static void *add_a_to_b(void *arg) {
  struct shared_servers *s = arg;
  if (factory_server_add_peer(s->b, 0, "127.0.0.1", s->port_a) != FACTORY_OK)
    note_error(s, "factory_server_add_peer");
  return NULL;
}

/*
 * The header: factory_server_port, factory_server_add_peer and
 * factory_server_last_order may be called from several threads at once.
 * Two servers get each other as peers from two threads while others ask
 * for their ports and read a customer that a client writes through the
 * first; then the second (a backup) must hold the writes, so the peers
 * added under contention were both taken.
 */
static void test_concurrent_server_calls(void) {
  struct shared_servers s;
  pthread_t ports, readers[2], adders[2];
  factory_client *client = NULL;
  factory_robot_info info;
  int32_t last = -2;
  int i;

  memset(&s, 0, sizeof s);
  pthread_mutex_init(&s.lock, NULL);
  s.a = start_loopback_id(0);
  s.b = start_loopback_id(1);
  s.port_a = factory_server_port(s.a);
  s.port_b = factory_server_port(s.b);

  EXPECT(pthread_create(&ports, NULL, call_port, &s) == 0);
  for (i = 0; i < 2; i++)
    EXPECT(pthread_create(&readers[i], NULL, call_last_order, &s) == 0);
  EXPECT(pthread_create(&adders[0], NULL, add_b_to_a, &s) == 0);
  EXPECT(pthread_create(&adders[1], NULL, add_a_to_b, &s) == 0);
  for (i = 0; i < 2; i++) EXPECT(pthread_join(adders[i], NULL) == 0);

  EXPECT_STATUS(factory_client_connect_timeout("127.0.0.1", s.port_a, 20000, &client),
                FACTORY_OK);
  for (i = 0; i < CONCURRENT_ORDERS && client != NULL; i++) {
    factory_status st = factory_client_order(client, 42, i, &info);
    if (st != FACTORY_OK) {
      fprintf(stderr, "test_api: order %d: %s\n", i, factory_status_str(st));
      failures++;
      break;
    }
  }
  factory_client_close(client);
  pthread_mutex_lock(&s.lock);
  s.writes_done = 1;
  pthread_mutex_unlock(&s.lock);
  EXPECT(pthread_join(ports, NULL) == 0);
  for (i = 0; i < 2; i++) EXPECT(pthread_join(readers[i], NULL) == 0);
  EXPECT(s.errors == 0);

  EXPECT_STATUS(factory_server_last_order(s.a, 42, &last), FACTORY_OK);
  EXPECT(last == CONCURRENT_ORDERS - 1);
  /* Every write was acknowledged by the backup before its reply; the
   * backup applies an entry when the next arrives, so it may trail by
   * the last one. */
  EXPECT_STATUS(factory_server_last_order(s.b, 42, &last), FACTORY_OK);
  EXPECT(last >= CONCURRENT_ORDERS - 2);

  EXPECT_STATUS(factory_server_stop(s.a), FACTORY_OK);
  EXPECT_STATUS(factory_server_stop(s.b), FACTORY_OK);
  pthread_mutex_destroy(&s.lock);
}

/* --- SIGPIPE ------------------------------------------------------------ */

/* A SIG_IGN the program chose stays SIG_IGN through every call that looks
 * at SIGPIPE, and after stop and close. */
static void test_sigpipe_ignored_by_the_program(void) {
  struct sigaction now;
  factory_server *server;
  factory_client *client = NULL;
  signal(SIGPIPE, SIG_IGN);
  server = start_loopback(0);
  EXPECT_STATUS(factory_client_connect("127.0.0.1", factory_server_port(server),
                                       &client),
                FACTORY_OK);
  factory_client_close(client);
  EXPECT_STATUS(factory_server_stop(server), FACTORY_OK);
  sigaction(SIGPIPE, NULL, &now);
  EXPECT(now.sa_handler == SIG_IGN);
}

int main(void) {
  test_sigpipe_disposition();
  test_static_strings();
  test_null_pointers();
  test_null_out_params_on_live_handles();
  test_invalid_arguments();
  test_unreachable_servers();
  test_stop_under_clients();
  test_connect_timeout();
  test_protocol_error();
  test_concurrent_server_calls();
  test_sigpipe_ignored_by_the_program();
  if (failures > 0) {
    fprintf(stderr, "test_api: %d check(s) failed\n", failures);
    return 1;
  }
  printf("test_api: all checks passed\n");
  return 0;
}
