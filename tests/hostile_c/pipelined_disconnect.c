/*
 * pipelined_disconnect.c: a server embedded through libfactory survives
 * clients that pipeline 200 writes and vanish before reading a reply, in a
 * C program where SIGPIPE keeps its default action (which kills the
 * process when a write finds the peer gone).
 *
 * factory_server_start ignores SIGPIPE when it is SIG_DFL; this program
 * puts the default back right after, so what is tested is that the
 * server's own socket writes never raise SIGPIPE at all. Built and run by
 * tests/limits.rs; prints "ok" and exits 0 when everything held.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "factory.h"

#define PIPELINED 200

static void fail(const char *what) {
  fprintf(stderr, "pipelined_disconnect: %s\n", what);
  exit(1);
}

static void put_i32(unsigned char *out, int32_t v) {
  uint32_t u = (uint32_t)v;
  out[0] = (unsigned char)(u >> 24);
  out[1] = (unsigned char)(u >> 16);
  out[2] = (unsigned char)(u >> 8);
  out[3] = (unsigned char)u;
}

static int32_t get_i32(const unsigned char *in) {
  return (int32_t)(((uint32_t)in[0] << 24) | ((uint32_t)in[1] << 16) |
                   ((uint32_t)in[2] << 8) | (uint32_t)in[3]);
}

static void request(unsigned char *out, int32_t customer, int32_t order,
                    int32_t type) {
  put_i32(out, customer);
  put_i32(out + 4, order);
  put_i32(out + 8, type);
}

/* A connected client session (tag sent), with 10 s timeouts. */
static int session(uint16_t port) {
  struct sockaddr_in addr;
  struct timeval timeout = {10, 0};
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) fail("socket");
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) fail("connect");
  if (write(fd, "CLIENT\0\0", 8) != 8) fail("send the tag");
  return fd;
}

static void read_full(int fd, unsigned char *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r <= 0) fail("read a reply");
    got += (size_t)r;
  }
}

/* 200 writes in one go, then gone: with a reset (linger 0) or a close. */
static void vanish(uint16_t port, int reset) {
  static unsigned char burst[PIPELINED * 12];
  int fd = session(port);
  int i;
  for (i = 0; i < PIPELINED; i++) request(burst + 12 * i, 100, i, 1);
  if (write(fd, burst, sizeof burst) != (ssize_t)sizeof burst) fail("pipeline");
  if (reset) {
    struct linger linger = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, sizeof linger);
  }
  close(fd);
}

/* A well-formed client: write (9, order), read it back. */
static void served(uint16_t port, int32_t order) {
  unsigned char buf[20];
  int fd = session(port);
  request(buf, 9, order, 1);
  if (write(fd, buf, 12) != 12) fail("send a write");
  read_full(fd, buf, 20);
  if (get_i32(buf) != 9 || get_i32(buf + 4) != order) fail("write reply");
  request(buf, 9, 0, 2);
  if (write(fd, buf, 12) != 12) fail("send a read");
  read_full(fd, buf, 8);
  if (get_i32(buf) != 9 || get_i32(buf + 4) != order) fail("read reply");
  close(fd);
}

int main(void) {
  factory_server *server = NULL;
  factory_server_config *config = factory_server_config_new(0, 0);
  struct sigaction now;
  uint16_t port;
  int round;

  if (config == NULL) fail("config");
  if (factory_server_config_set_bind(config, "127.0.0.1") != FACTORY_OK)
    fail("bind address");
  if (factory_server_start(config, &server) != FACTORY_OK) fail("start");
  factory_server_config_free(config);
  port = factory_server_port(server);

  /* Undo the library's courtesy: SIGPIPE kills unless never raised. */
  signal(SIGPIPE, SIG_DFL);

  for (round = 0; round < 6; round++) {
    vanish(port, round % 2);
    served(port, round);
  }

  sigaction(SIGPIPE, NULL, &now);
  if (now.sa_handler != SIG_DFL) fail("SIGPIPE is no longer SIG_DFL");
  if (factory_server_stop(server) != FACTORY_OK) fail("stop");
  printf("ok: survived %d vanished pipelining clients\n", round);
  return 0;
}
