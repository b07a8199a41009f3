// ClientStub.h: the original client's stub, for programs written against
// the original robot-factory client (drop-in, header-only), implemented
// over libfactory's C API (factory.h).
//
// As in the original: Init returns false when it cannot connect; Order and
// ReadRecord block until the server answers and, on failure, return a
// default (invalid, every field -1) RobotInfo or CustomerRecord. Unlike the
// original, a failed call also ends the session, so later calls fail at
// once instead of writing to a dead socket, and the failure reason is in
// LastStatus(). A stub is used by one thread at a time.
#ifndef FACTORY_DROPIN_CLIENT_STUB_H
#define FACTORY_DROPIN_CLIENT_STUB_H

#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include "ClientSocket.h"
#include "Messages.h"

class ClientStub {
  ClientSocket socket;

 public:
  ClientStub() {}

  // Connects to ip:port and sends the CLIENT handshake; prints the reason
  // on stderr and returns false on failure.
  bool Init(std::string ip, int port) {
    if (socket.Init(ip, port)) {
      return true;
    }
    std::cerr << "ClientStub: cannot connect to " << ip << ":" << port << ": "
              << factory_status_str(socket.LastStatus()) << std::endl;
    return false;
  }

  // Places `order` as a write (whatever its request type) and returns the
  // committed reply, or a default RobotInfo if the call failed.
  RobotInfo Order(RobotOrder order) {
    RobotInfo info;
    factory_robot_info reply;
    if (!socket.IsOpen()) {
      return info;
    }
    socket.Record(factory_client_order(socket.Handle(), order.GetCustomerId(),
                                       order.GetOrderNumber(), &reply));
    if (socket.LastStatus() == FACTORY_OK) {
      info.SetInfo(reply.customer_id, reply.order_number, reply.request_type,
                   reply.engineer_id, reply.admin_id);
    }
    return info;
  }

  // Reads the record of the order's customer, or returns a default record
  // if the call failed. The order number is ignored.
  CustomerRecord ReadRecord(RobotOrder order) {
    CustomerRecord record;
    factory_customer_record reply;
    if (!socket.IsOpen()) {
      return record;
    }
    socket.Record(
        factory_client_read(socket.Handle(), order.GetCustomerId(), &reply));
    if (socket.LastStatus() == FACTORY_OK) {
      record.SetRecord(reply.customer_id, reply.last_order);
    }
    return record;
  }

  // Why the last Init, Order or ReadRecord failed (FACTORY_OK if it did not).
  factory_status LastStatus() const { return socket.LastStatus(); }
};

#endif  // FACTORY_DROPIN_CLIENT_STUB_H
