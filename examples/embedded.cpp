// embedded.cpp: a primary and a backup embedded in one C++ program through
// factory.hpp, with the errors it reports as exceptions.
//
// Starts two servers on free loopback ports, makes the first replicate to
// the second, writes and reads through factory::Client, checks that the
// backup has the writes, and shows factory::Error for a refused
// connection. The servers stop when they go out of scope. Exits 0 when
// every check passes.
#include <cstdlib>
#include <iostream>
#include <string>

#include "factory.hpp"

namespace {

void Expect(bool ok, const std::string &what) {
  if (!ok) {
    std::cerr << "embedded: expected " << what << std::endl;
    std::exit(1);
  }
}

}  // namespace

int main() {
  try {
    factory::Server primary(factory::ServerConfig(0, 0).bind("127.0.0.1"));
    factory::Server backup(factory::ServerConfig(0, 1).bind("127.0.0.1"));
    primary.add_peer(1, "127.0.0.1", backup.port());

    factory::Client client("127.0.0.1", primary.port());
    for (int32_t n = 0; n < 5; n++) {
      factory::RobotInfo info = client.order(7, n);
      Expect(info.customer_id == 7 && info.order_number == n, "an echo");
    }
    Expect(client.read(7).last_order == 4, "order 4 on the primary");
    Expect(client.read(8).last_order == -1, "no order for customer 8");
    // A backup applies an entry when the next one arrives.
    Expect(backup.last_order(7) >= 3, "order 3 or 4 on the backup");
    client.close();

    uint16_t gone = backup.port();
    backup.stop();
    try {
      factory::Client refused("127.0.0.1", gone);
      Expect(false, "a refused connection");
    } catch (const factory::Error &e) {
      Expect(e.status() == FACTORY_ERR_CONNECT, "FACTORY_ERR_CONNECT");
      std::cout << "embedded: as expected, " << e.what() << std::endl;
    }
  } catch (const factory::Error &e) {
    std::cerr << "embedded: " << e.what() << std::endl;
    return 1;
  }
  std::cout << "embedded: libfactory " << factory::version() << " ok"
            << std::endl;
  return 0;
}
