// pkg_config_app.cpp: factory.hpp from an installed libfactory, compiled by
// `make install-check` with `c++ app.cpp $(pkg-config --cflags --libs
// libfactory)`.
#include <factory/factory.hpp>

#include <iostream>

int main() {
  try {
    factory::Client client("127.0.0.1", 0);
  } catch (const factory::Error &e) {
    std::cout << "libfactory " << factory::version() << ": " << e.what()
              << std::endl;
    return e.status() == FACTORY_ERR_CONNECT ? 0 : 1;
  }
  return 1;
}
