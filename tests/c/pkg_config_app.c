/*
 * pkg_config_app.c: the smallest libfactory program, compiled by `make
 * install-check` with `cc app.c $(pkg-config --cflags --libs libfactory)`
 * against a fresh install, to prove the installed header, library and .pc
 * work together.
 */
#include <stdio.h>
#include <string.h>

#include <factory.h>

int main(void) {
  factory_client *client = NULL;
  /* Port 0 is never listening: the call must fail cleanly. */
  factory_status status = factory_client_connect("127.0.0.1", 0, &client);
  if (status == FACTORY_OK || client != NULL) {
    return 1;
  }
  printf("libfactory %s: %s\n", factory_version(), factory_status_str(status));
  return strlen(factory_version()) > 0 ? 0 : 1;
}
