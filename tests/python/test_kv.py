"""Tests of factory.Kv (protocol v2 over libfactory) against servers
embedded in this process on loopback port 0. Run by `make python-test`.
"""

import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "bindings", "python"))

import factory  # noqa: E402

LOOPBACK = "127.0.0.1"


def server(factory_id=0):
    return factory.Server(factory_id=factory_id, port=0, bind=LOOPBACK)


class KvOneServer(unittest.TestCase):
    def setUp(self):
        self.server = server()
        self.kv = factory.Kv(LOOPBACK, self.server.port, timeout=20)

    def tearDown(self):
        self.kv.close()
        self.server.stop()

    def test_binary_values_round_trip(self):
        key, value = b"b\x00in\x00", b"\x00v\x00\xff\x00"
        self.assertIsNone(self.kv.get(key))
        version = self.kv.put(key, value)
        self.assertEqual(self.kv.get(key), factory.KvValue(version, value))
        self.assertEqual(self.kv.put("text", ""), self.kv.get(b"text").version)
        self.assertEqual(self.kv.get("text").value, b"")
        with self.assertRaises(TypeError):
            self.kv.put(1, b"x")

    def test_conditions_raise_with_the_current_version(self):
        v1 = self.kv.create(b"k", b"one")
        with self.assertRaises(factory.KvExistsError) as caught:
            self.kv.create(b"k", b"two")
        self.assertEqual(caught.exception.version, v1)
        self.assertEqual(caught.exception.status, factory.Status.KV_EXISTS)
        with self.assertRaises(factory.KvNotFoundError):
            self.kv.update(b"absent", b"x")
        v2 = self.kv.update(b"k", b"two")
        self.assertGreater(v2, v1)
        with self.assertRaises(factory.KvVersionMismatchError) as caught:
            self.kv.cas(b"k", v1, b"stale")
        self.assertEqual(caught.exception.version, v2)
        self.assertEqual(self.kv.get(b"k").value, b"two")
        v3 = self.kv.cas(b"k", v2, b"three")
        self.assertGreater(v3, v2)
        with self.assertRaises(factory.KvVersionMismatchError) as caught:
            self.kv.cas(b"fresh", v3, b"f")
        self.assertEqual(caught.exception.version, factory.NO_VERSION)
        self.kv.cas(b"fresh", factory.NO_VERSION, b"f")
        self.assertGreater(self.kv.delete(b"k"), v3)
        with self.assertRaises(factory.KvNotFoundError):
            self.kv.delete(b"k")
        self.assertIsNone(self.kv.get(b"k"))

    def test_too_large_is_raised_and_the_connection_goes_on(self):
        with self.assertRaises(factory.TooLargeError):
            self.kv.put(b"big", b"x" * ((1 << 20) + 1))
        with self.assertRaises(factory.TooLargeError):
            self.kv.get(b"k" * 1025)
        self.kv.put(b"big", b"x" * (1 << 20))
        self.assertEqual(len(self.kv.get(b"big").value), 1 << 20)

    def test_scan_pages(self):
        for i in range(25):
            self.kv.put(b"scan/%02d" % i, b"v%d" % i)
        self.kv.put(b"zz", b"end")
        items, more = self.kv.scan(b"scan/", 10)
        self.assertEqual([i.key for i in items], [b"scan/%02d" % i for i in range(10)])
        self.assertTrue(more)
        every = list(self.kv.scan_all(b"scan/", page=10))
        self.assertEqual([i.key for i in every],
                         [b"scan/%02d" % i for i in range(25)] + [b"zz"])
        self.assertEqual(every[3].value, b"v3")
        self.assertEqual(self.kv.scan(b"zzz", 5), ([], False))
        with self.assertRaises(factory.InvalidArgumentError):
            self.kv.scan(b"", 0)

    def test_closed_client(self):
        self.kv.close()
        self.kv.close()
        self.assertTrue(self.kv.closed)
        with self.assertRaises(ValueError):
            self.kv.get(b"k")


class KvCluster(unittest.TestCase):
    def test_a_list_follows_the_primary_and_one_server_is_refused(self):
        with server(0) as primary, server(1) as backup:
            primary.add_peer(1, LOOPBACK, backup.port)
            backup.add_peer(0, LOOPBACK, primary.port)
            with factory.Kv(LOOPBACK, primary.port) as kv:
                kv.put(b"first", b"1")  # makes server 0 the primary
            with factory.Kv(LOOPBACK, backup.port) as on_backup:
                with self.assertRaises(factory.NotPrimaryError):
                    on_backup.put(b"k", b"v")
            listed = ["%s:%d" % (LOOPBACK, backup.port), "%s:%d" % (LOOPBACK, primary.port)]
            with factory.Kv(listed, timeout=20) as kv:
                version = kv.put(b"k", b"v")
                self.assertEqual(kv.get(b"k"), factory.KvValue(version, b"v"))

    def test_bad_arguments(self):
        with self.assertRaises(factory.InvalidArgumentError):
            factory.Kv(["no-port"])
        with self.assertRaises(factory.InvalidArgumentError):
            factory.Kv([])
        with self.assertRaises(TypeError):
            factory.Kv(LOOPBACK)
        with self.assertRaises(TypeError):
            factory.Kv(["a:1"], 5)


if __name__ == "__main__":
    unittest.main()
