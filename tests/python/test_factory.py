"""Tests of bindings/python/factory.py against the real libfactory.

Run by `make python-test` (part of `make test`) with FACTORY_LIB set to
target/release/libfactory.so; without FACTORY_LIB the module finds the
library the way it documents (the tree's target/release first). Run one
file by hand with:
    python3 -m unittest discover -s tests/python -v

Servers are embedded in this process on loopback port 0; every wait is
bounded.
"""

import os
import re
import socket
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))

import factory  # noqa: E402

LOOPBACK = "127.0.0.1"
# Bound on every wait for a condition in these tests, in seconds.
DEADLINE = 20.0


def wait_until(what, condition):
    """Polls `condition` until it holds; fails the test after DEADLINE."""
    end = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting until " + what)
        time.sleep(0.01)


def server(factory_id=0, peers=()):
    return factory.Server(factory_id=factory_id, port=0, bind=LOOPBACK, peers=peers)


class Library(unittest.TestCase):
    def test_version_is_the_crates(self):
        with open(os.path.join(ROOT, "Cargo.toml")) as f:
            want = re.search(r'^version = "(.*)"', f.read(), re.M).group(1)
        self.assertEqual(factory.version(), want)

    def test_every_status_has_its_own_description(self):
        texts = [factory.status_str(s) for s in factory.Status]
        self.assertTrue(all(texts), texts)
        self.assertEqual(len(set(texts)), len(texts), texts)
        self.assertEqual(factory.status_str(99), "unknown status 99")

    def test_every_error_status_has_its_own_exception_class(self):
        S = factory.Status
        want = {
            S.INVALID_ARGUMENT: (factory.InvalidArgumentError, ValueError),
            S.NULL_POINTER: (factory.NullPointerError, factory.FactoryError),
            S.CONNECT: (factory.ConnectError, ConnectionError),
            S.IO: (factory.FactoryIOError, OSError),
            S.PROTOCOL: (factory.ProtocolError, factory.FactoryError),
            S.CLOSED: (factory.ClosedError, ConnectionError),
            S.ADDRESS_IN_USE: (factory.AddressInUseError, OSError),
            S.PANIC: (factory.PanicError, factory.FactoryError),
            S.TIMEOUT: (factory.FactoryTimeoutError, TimeoutError),
            S.UNAVAILABLE: (factory.UnavailableError, ConnectionError),
            S.KV_NOT_FOUND: (factory.KvNotFoundError, LookupError),
            S.KV_EXISTS: (factory.KvExistsError, factory.FactoryError),
            S.KV_VERSION_MISMATCH: (factory.KvVersionMismatchError, factory.FactoryError),
            S.TOO_LARGE: (factory.TooLargeError, ValueError),
            S.BUFFER_TOO_SMALL: (factory.BufferTooSmallError, factory.FactoryError),
            S.NOT_PRIMARY: (factory.NotPrimaryError, factory.FactoryError),
            S.BUSY: (factory.BusyError, factory.FactoryError),
            S.NO_MEMORY: (factory.NoMemoryError, factory.FactoryError),
            S.BAD_REQUEST: (factory.BadRequestError, factory.FactoryError),
        }
        self.assertEqual(set(want), set(S) - {S.OK})
        factory._check(0, "factory_call")
        for status, (cls, builtin) in want.items():
            with self.assertRaises(factory.FactoryError) as caught:
                factory._check(int(status), "factory_call")
            e = caught.exception
            self.assertIs(type(e), cls)
            self.assertIsInstance(e, builtin)
            self.assertIs(e.status, status)
            self.assertEqual(e.call, "factory_call")
            self.assertEqual(str(e), "factory_call: " + factory.status_str(status))
        with self.assertRaises(factory.FactoryError) as caught:
            factory._check(42, "factory_call")
        self.assertIs(type(caught.exception), factory.FactoryError)
        self.assertEqual(caught.exception.status, 42)


class ClientAndServer(unittest.TestCase):
    def test_order_then_read_back_through_client_and_server(self):
        with server() as s:
            self.assertGreater(s.port, 0)
            with factory.Client(LOOPBACK, s.port) as c:
                self.assertEqual(c.read(7), factory.CustomerRecord(7, -1))
                info = c.order(7, 3)
                self.assertEqual(
                    (info.customer_id, info.order_number, info.request_type, info.admin_id),
                    (7, 3, 1, 0))
                c.write(7, 4)
                self.assertEqual(c.read(7), factory.CustomerRecord(7, 4))
                self.assertEqual(c.read(8).last_order, -1)
            self.assertEqual(s.last_order(7), 4)
            self.assertEqual(s.last_order(8), -1)

    def test_customer_minus_one_is_refused_and_the_session_goes_on(self):
        with server() as s, factory.Client(LOOPBACK, s.port) as c:
            with self.assertRaises(factory.InvalidArgumentError) as caught:
                c.order(-1, 1)
            self.assertIsInstance(caught.exception, ValueError)
            self.assertEqual(caught.exception.status, factory.Status.INVALID_ARGUMENT)
            c.order(1, 2)
            self.assertEqual(c.read(1).last_order, 2)

    def test_closed_client_refuses_calls_and_closes_twice(self):
        with server() as s:
            c = factory.Client(LOOPBACK, s.port)
            c.close()
            self.assertTrue(c.closed)
            c.close()
            with self.assertRaises(ValueError):
                c.read(1)

    def test_connecting_where_nothing_listens_raises_connect_error(self):
        # Port 0 is never listening.
        with self.assertRaises(factory.ConnectError) as caught:
            factory.Client(LOOPBACK, 0, timeout=5)
        self.assertIsInstance(caught.exception, ConnectionError)
        self.assertEqual(caught.exception.status, factory.Status.CONNECT)
        with self.assertRaises(factory.InvalidArgumentError):
            factory.Client("", 1)

    def test_a_silent_server_times_the_call_out(self):
        # A socket that listens (the kernel completes the connection) but
        # never answers: the order must end with a timeout, not hang.
        with socket.socket() as silent:
            silent.bind((LOOPBACK, 0))
            silent.listen(1)
            port = silent.getsockname()[1]
            c = factory.Client(LOOPBACK, port, timeout=0.3)
            try:
                with self.assertRaises(factory.FactoryTimeoutError) as caught:
                    c.order(1, 1)
                self.assertIsInstance(caught.exception, TimeoutError)
                self.assertEqual(caught.exception.status, factory.Status.TIMEOUT)
            finally:
                c.close()
        with self.assertRaises(ValueError):
            factory.Client(LOOPBACK, port, timeout=0)

    def test_stopping_the_server_ends_its_clients_sessions(self):
        s = server()
        c = factory.Client(LOOPBACK, s.port, timeout=DEADLINE)
        try:
            c.order(5, 1)
            s.stop()
            self.assertTrue(s.stopped)
            s.stop()
            with self.assertRaises((factory.ClosedError, factory.FactoryIOError)):
                c.order(5, 2)
        finally:
            c.close()
            s.stop()
        with self.assertRaises(ValueError):
            s.port

    def test_a_taken_port_raises_address_in_use(self):
        with socket.socket() as taken:
            taken.bind((LOOPBACK, 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            with self.assertRaises(factory.AddressInUseError) as caught:
                factory.Server(factory_id=0, port=port, bind=LOOPBACK)
            self.assertEqual(caught.exception.status, factory.Status.ADDRESS_IN_USE)

    def test_a_bind_address_must_be_an_ip(self):
        with self.assertRaises(factory.InvalidArgumentError):
            factory.Server(factory_id=0, bind="localhost")
        with self.assertRaises(factory.InvalidArgumentError):
            factory.Server(factory_id=0, bind=LOOPBACK, peers=[(1, "", 1)])

    def test_clients_in_threads_run_beside_the_embedded_server(self):
        # ctypes releases the GIL during a call: four threads' sessions
        # must all be served while each blocks in libfactory.
        errors = []
        with server() as s:
            def writer(customer):
                try:
                    with factory.Client(LOOPBACK, s.port, timeout=DEADLINE) as c:
                        for n in range(20):
                            c.order(customer, n)
                except Exception as e:  # reported below, in the test's thread
                    errors.append(e)
            threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(DEADLINE)
            self.assertFalse(any(t.is_alive() for t in threads), "a writer hung")
            self.assertEqual(errors, [])
            self.assertEqual([s.last_order(i) for i in range(4)], [19] * 4)


class Cluster(unittest.TestCase):
    def test_a_primary_replicates_to_a_peer_added_once_its_port_is_known(self):
        with server(0) as primary, server(1) as backup:
            primary.add_peer(1, LOOPBACK, backup.port)
            backup.add_peer(0, LOOPBACK, primary.port)
            with factory.Client(LOOPBACK, primary.port, timeout=DEADLINE) as c:
                for customer in range(3):
                    c.order(customer, 10 + customer)
                # A backup applies an entry when the next one arrives: one
                # more write makes every earlier one visible there.
                c.order(99, 1)
            for customer in range(3):
                wait_until("the backup applied customer %d" % customer,
                           lambda: backup.last_order(customer) == 10 + customer)
            with factory.Client(LOOPBACK, backup.port, timeout=DEADLINE) as c:
                self.assertEqual(c.read(2).last_order, 12)


class ClusterClient(unittest.TestCase):
    def test_orders_ride_through_the_primary_stopping(self):
        primary, backup = server(0), server(1)
        try:
            primary.add_peer(1, LOOPBACK, backup.port)
            backup.add_peer(0, LOOPBACK, primary.port)
            addresses = ["%s:%d" % (LOOPBACK, s.port) for s in (primary, backup)]
            with factory.Cluster(addresses, deadline=DEADLINE) as cluster:
                for order in range(5):
                    self.assertEqual(cluster.order(7, order).order_number, order)
                primary.stop()
                # Every order after the stop is acknowledged, by the backup
                # once it has taken over; none may fail.
                for order in range(5, 10):
                    self.assertEqual(cluster.order(7, order).order_number, order)
                self.assertEqual(cluster.read(7), factory.CustomerRecord(7, 9))
            self.assertEqual(backup.last_order(7), 9)
        finally:
            primary.stop()
            backup.stop()

    def test_no_server_answering_is_unavailable(self):
        closed = socket.socket()
        closed.bind((LOOPBACK, 0))
        address = "%s:%d" % (LOOPBACK, closed.getsockname()[1])
        closed.close()
        with self.assertRaises(factory.UnavailableError):
            factory.Cluster([address], deadline=1)

    def test_a_bad_address_is_an_invalid_argument(self):
        with self.assertRaises(factory.InvalidArgumentError):
            factory.Cluster(["no-port-here"])
        with self.assertRaises(TypeError):
            factory.Cluster("%s:1" % LOOPBACK)


if __name__ == "__main__":
    unittest.main()
