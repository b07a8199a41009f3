// Messages.h: the original client's message classes, for programs written
// against the original robot-factory client (drop-in, header-only).
//
// RobotOrder (12 bytes on the wire), RobotInfo (20) and CustomerRecord (8)
// keep the original's interface and defaults (every field -1 until set) and
// marshal to the same big-endian frames. Programs using them with
// ClientStub.h never touch the frames: libfactory does the I/O.
#ifndef FACTORY_DROPIN_MESSAGES_H
#define FACTORY_DROPIN_MESSAGES_H

#include <cstdlib>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>

namespace factory_dropin {

// Stores `v` as 4 big-endian bytes at `out`.
inline void put_i32(char *out, int v) {
  unsigned int u = static_cast<unsigned int>(v);
  out[0] = static_cast<char>((u >> 24) & 0xff);
  out[1] = static_cast<char>((u >> 16) & 0xff);
  out[2] = static_cast<char>((u >> 8) & 0xff);
  out[3] = static_cast<char>(u & 0xff);
}

// Reads 4 big-endian bytes at `in`.
inline int get_i32(const char *in) {
  unsigned int u = 0;
  for (int i = 0; i < 4; i++) {
    u = (u << 8) | static_cast<unsigned char>(in[i]);
  }
  return static_cast<int>(u);
}

// One lock for every Print(), so that lines from client threads do not
// interleave. A function-local static is shared across translation units.
inline std::mutex &print_lock() {
  static std::mutex lock;
  return lock;
}

}  // namespace factory_dropin

// A request: a write (type 1) or a read (type 2) for one customer.
class RobotOrder {
  int customer_id;
  int order_number;
  int request_type;

 public:
  RobotOrder() : customer_id(-1), order_number(-1), request_type(-1) {}

  void SetOrder(int cid, int order_num, int type) {
    customer_id = cid;
    order_number = order_num;
    request_type = type;
  }
  int GetCustomerId() { return customer_id; }
  int GetOrderNumber() { return order_number; }
  int GetRequestType() { return request_type; }

  int Size() { return 12; }
  void Marshal(char *buffer) {
    factory_dropin::put_i32(buffer, customer_id);
    factory_dropin::put_i32(buffer + 4, order_number);
    factory_dropin::put_i32(buffer + 8, request_type);
  }
  void Unmarshal(char *buffer) {
    customer_id = factory_dropin::get_i32(buffer);
    order_number = factory_dropin::get_i32(buffer + 4);
    request_type = factory_dropin::get_i32(buffer + 8);
  }

  bool IsValid() { return customer_id != -1; }
  void Print() {
    std::lock_guard<std::mutex> guard(factory_dropin::print_lock());
    std::cout << "id " << customer_id << " num " << order_number << " type "
              << request_type << std::endl;
  }
};

// The reply to a write: the order echoed, plus the ids of the server
// thread (engineer) and admin that handled it.
class RobotInfo {
  int customer_id;
  int order_number;
  int request_type;
  int engineer_id;
  int admin_id;

 public:
  RobotInfo()
      : customer_id(-1),
        order_number(-1),
        request_type(-1),
        engineer_id(-1),
        admin_id(-1) {}

  void SetInfo(int cid, int order_num, int type, int engid, int admid) {
    customer_id = cid;
    order_number = order_num;
    request_type = type;
    engineer_id = engid;
    admin_id = admid;
  }
  void CopyOrder(RobotOrder order) {
    customer_id = order.GetCustomerId();
    order_number = order.GetOrderNumber();
    request_type = order.GetRequestType();
  }
  void SetEngineerId(int id) { engineer_id = id; }
  void SetAdminId(int id) { admin_id = id; }

  int GetCustomerId() { return customer_id; }
  int GetOrderNumber() { return order_number; }
  int GetRequestType() { return request_type; }
  int GetEngineerId() { return engineer_id; }
  int GetAdminId() { return admin_id; }

  int Size() { return 20; }
  void Marshal(char *buffer) {
    factory_dropin::put_i32(buffer, customer_id);
    factory_dropin::put_i32(buffer + 4, order_number);
    factory_dropin::put_i32(buffer + 8, request_type);
    factory_dropin::put_i32(buffer + 12, engineer_id);
    factory_dropin::put_i32(buffer + 16, admin_id);
  }
  void Unmarshal(char *buffer) {
    customer_id = factory_dropin::get_i32(buffer);
    order_number = factory_dropin::get_i32(buffer + 4);
    request_type = factory_dropin::get_i32(buffer + 8);
    engineer_id = factory_dropin::get_i32(buffer + 12);
    admin_id = factory_dropin::get_i32(buffer + 16);
  }

  bool IsValid() { return customer_id != -1; }
  void Print() {
    std::lock_guard<std::mutex> guard(factory_dropin::print_lock());
    std::cout << "id " << customer_id << " num " << order_number << " type "
              << request_type << " engid " << engineer_id << " adminid "
              << admin_id << std::endl;
  }
};

// A customer's committed record; last_order is -1 when there is none.
struct CustomerRecord {
  int customer_id;
  int last_order;

  CustomerRecord() : customer_id(-1), last_order(-1) {}

  void SetRecord(int cid, int last) {
    customer_id = cid;
    last_order = last;
  }
  int GetCustomerId() { return customer_id; }
  int GetLastOrder() { return last_order; }

  int Size() { return 8; }
  void Marshal(char *buffer) {
    factory_dropin::put_i32(buffer, customer_id);
    factory_dropin::put_i32(buffer + 4, last_order);
  }
  void Unmarshal(char *buffer) {
    customer_id = factory_dropin::get_i32(buffer);
    last_order = factory_dropin::get_i32(buffer + 4);
  }

  // Prints "customer_id<TAB>last_order" for a record that was read.
  void Print() {
    if (customer_id == -1) {
      return;
    }
    std::lock_guard<std::mutex> guard(factory_dropin::print_lock());
    std::cout << customer_id << "\t" << last_order << "\n";
  }
};

#endif  // FACTORY_DROPIN_MESSAGES_H
