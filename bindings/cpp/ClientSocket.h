// ClientSocket.h: the connection under the original client's ClientStub,
// for programs written against the original robot-factory client
// (drop-in, header-only).
//
// The original class wrapped a raw TCP socket with Send/Recv. Here it
// holds a libfactory client session instead: Init connects and sends the
// CLIENT handshake, and the frames are libfactory's business, so there is
// no Send or Recv. Copies share one session, as copies of the original
// shared one file descriptor; the last copy to go closes it.
#ifndef FACTORY_DROPIN_CLIENT_SOCKET_H
#define FACTORY_DROPIN_CLIENT_SOCKET_H

#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include "factory.h"

class ClientSocket {
  std::shared_ptr<factory_client> session;
  factory_status last_status;

 public:
  ClientSocket() : last_status(FACTORY_OK) {}

  // Connects to ip:port and opens a client session (replacing any open
  // one). Returns false, with the reason in LastStatus(), on failure.
  bool Init(std::string ip, int port) {
    Close();
    if (port < 1 || port > 65535) {
      last_status = FACTORY_ERR_INVALID_ARGUMENT;
      return false;
    }
    factory_client *client = NULL;
    last_status = factory_client_connect(ip.c_str(),
                                         static_cast<uint16_t>(port), &client);
    if (last_status != FACTORY_OK) {
      return false;
    }
    session.reset(client, factory_client_close);
    return true;
  }

  // True between a successful Init and Close (or a failed call).
  bool IsOpen() const { return static_cast<bool>(session); }

  // Why the last Init or call failed (FACTORY_OK if it did not).
  factory_status LastStatus() const { return last_status; }

  // The session, for calls through the C API; NULL when not open.
  factory_client *Handle() const { return session.get(); }

  // Records the status of a call on Handle(); after an I/O or protocol
  // error the session is unusable, so this copy lets go of it.
  void Record(factory_status status) {
    last_status = status;
    if (status != FACTORY_OK && status != FACTORY_ERR_INVALID_ARGUMENT) {
      Close();
    }
  }

  // Lets go of the session; the last copy holding it closes it.
  void Close() { session.reset(); }
};

#endif  // FACTORY_DROPIN_CLIENT_SOCKET_H
