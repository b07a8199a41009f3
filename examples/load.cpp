// load.cpp: a load generator written the way the original client program
// was, against the drop-in headers (ClientStub.h, Messages.h) that
// libfactory provides in bindings/cpp.
//
//   load IP PORT NUM_CUSTOMERS NUM_ORDERS REQUEST_TYPE
//
// One thread and one session per customer. Type 1: customer i places
// orders 0..NUM_ORDERS-1; type 2: it reads its record NUM_ORDERS times;
// type 3: each thread reads customers 0..NUM_ORDERS-1 and prints
// "customer<TAB>last_order". For types 1 and 2 the last line is the mean,
// min and max latency (us) and the throughput (ops/s), tab-separated.
// Exits 0 when every request succeeded, 1 otherwise, 2 on bad arguments.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "ClientStub.h"
#include "Messages.h"

namespace {

typedef std::chrono::steady_clock Clock;

// Latencies of one customer thread, merged into the totals at the end.
struct Latencies {
  double sum_us = 0;
  double min_us = 0;
  double max_us = 0;
  long count = 0;
  long failures = 0;

  void Add(Clock::time_point start) {
    double us =
        std::chrono::duration<double, std::micro>(Clock::now() - start).count();
    min_us = count == 0 ? us : std::min(min_us, us);
    max_us = std::max(max_us, us);
    sum_us += us;
    count++;
  }

  void Merge(const Latencies &other) {
    if (other.count > 0) {
      min_us = count == 0 ? other.min_us : std::min(min_us, other.min_us);
      max_us = std::max(max_us, other.max_us);
    }
    sum_us += other.sum_us;
    count += other.count;
    failures += other.failures;
  }
};

void Customer(std::string ip, int port, int id, int orders, int type,
              Latencies *out) {
  ClientStub stub;
  if (!stub.Init(ip, port)) {
    out->failures++;
    return;
  }
  for (int i = 0; i < orders; i++) {
    RobotOrder order;
    if (type == 1) {
      order.SetOrder(id, i, 1);
      Clock::time_point start = Clock::now();
      RobotInfo info = stub.Order(order);
      out->Add(start);
      if (!info.IsValid()) {
        out->failures++;
        break;
      }
    } else if (type == 2) {
      order.SetOrder(id, i, 2);
      Clock::time_point start = Clock::now();
      CustomerRecord record = stub.ReadRecord(order);
      out->Add(start);
      if (record.GetCustomerId() == -1) {
        out->failures++;
        break;
      }
    } else {
      order.SetOrder(i, -1, 2);
      CustomerRecord record = stub.ReadRecord(order);
      if (record.GetCustomerId() == -1) {
        out->failures++;
        break;
      }
      record.Print();
    }
  }
}

}  // namespace

int main(int argc, char *argv[]) {
  if (argc != 6) {
    std::cerr << "usage: " << argv[0]
              << " IP PORT NUM_CUSTOMERS NUM_ORDERS REQUEST_TYPE(1|2|3)"
              << std::endl;
    return 2;
  }
  std::string ip = argv[1];
  int port = std::atoi(argv[2]);
  int customers = std::atoi(argv[3]);
  int orders = std::atoi(argv[4]);
  int type = std::atoi(argv[5]);
  if (customers < 0 || orders < 0 || type < 1 || type > 3) {
    std::cerr << argv[0] << ": bad arguments" << std::endl;
    return 2;
  }

  std::vector<Latencies> results(static_cast<size_t>(customers));
  std::vector<std::thread> threads;
  Clock::time_point start = Clock::now();
  for (int i = 0; i < customers; i++) {
    threads.push_back(std::thread(Customer, ip, port, i, orders, type,
                                  &results[static_cast<size_t>(i)]));
  }
  for (size_t i = 0; i < threads.size(); i++) {
    threads[i].join();
  }
  double elapsed_s =
      std::chrono::duration<double>(Clock::now() - start).count();

  Latencies total;
  for (size_t i = 0; i < results.size(); i++) {
    total.Merge(results[i]);
  }
  std::cout << std::flush;
  if (type != 3) {
    double mean = total.count > 0 ? total.sum_us / total.count : 0.0;
    double rate = elapsed_s > 0 ? total.count / elapsed_s : 0.0;
    std::cout << std::fixed << std::setprecision(3) << mean << "\t"
              << total.min_us << "\t" << total.max_us << "\t" << rate
              << std::endl;
  }
  if (total.failures > 0) {
    std::cerr << argv[0] << ": " << total.failures << " request(s) failed"
              << std::endl;
    return 1;
  }
  return 0;
}
