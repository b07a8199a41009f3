"""factory: libfactory from Python, through ctypes.

A client of a factory server (``Client``: connect, place an order, read a
customer's record, close), of a cluster (``Cluster``), of string keys and
values (``Kv``, protocol v2: get, put, create, update, delete, cas, scan),
and a server embedded in this process
(``Server``: start, its port, add a peer, a local read, stop), over the C
library libfactory. Plain Python 3 and the standard library: no compiled
extension, no dependency.

    import factory
    with factory.Server(factory_id=0, port=0, bind="127.0.0.1") as server:
        with factory.Client("127.0.0.1", server.port) as client:
            client.order(7, 1)
            assert client.read(7).last_order == 1

Every failing call raises a ``FactoryError`` (or a subclass per status, see
``Status``) whose ``status`` is the C status code. The library is found, in
this order, at the path in the environment variable FACTORY_LIB, in the
source tree this file sits in (``target/release/libfactory.so``, built by
``make``), or as ``libfactory.so.0`` through the dynamic linker (an
installed library: ``ldconfig`` or LD_LIBRARY_PATH).

Threads: ctypes releases the GIL while a call blocks, so servers and
clients in other threads keep running. A ``Client`` is used by one thread
at a time (it takes a lock around each call); run sessions in parallel with
one client per thread.
"""

import ctypes
import enum
import math
import os
import threading
from collections import namedtuple

__all__ = [
    "Status",
    "FactoryError",
    "InvalidArgumentError",
    "NullPointerError",
    "ConnectError",
    "FactoryIOError",
    "ProtocolError",
    "ClosedError",
    "AddressInUseError",
    "PanicError",
    "FactoryTimeoutError",
    "UnavailableError",
    "KvNotFoundError",
    "KvConditionError",
    "KvExistsError",
    "KvVersionMismatchError",
    "TooLargeError",
    "BufferTooSmallError",
    "NotPrimaryError",
    "BusyError",
    "NoMemoryError",
    "BadRequestError",
    "RobotInfo",
    "CustomerRecord",
    "Client",
    "Server",
    "Kv",
    "KvValue",
    "KvItem",
    "NO_VERSION",
    "DEFAULT_TIMEOUT",
    "library",
    "version",
    "status_str",
]

# The C client's default timeout for connecting and for every call, seconds.
DEFAULT_TIMEOUT = 30.0


class Status(enum.IntEnum):
    """The values of the C enum ``factory_status`` (include/factory.h)."""

    OK = 0
    INVALID_ARGUMENT = 1
    NULL_POINTER = 2
    CONNECT = 3
    IO = 4
    PROTOCOL = 5
    CLOSED = 6
    ADDRESS_IN_USE = 7
    PANIC = 8
    TIMEOUT = 9
    UNAVAILABLE = 10
    KV_NOT_FOUND = 11
    KV_EXISTS = 12
    KV_VERSION_MISMATCH = 13
    TOO_LARGE = 14
    BUFFER_TOO_SMALL = 15
    NOT_PRIMARY = 16
    BUSY = 17
    NO_MEMORY = 18
    BAD_REQUEST = 19


# --- errors ------------------------------------------------------------------


class FactoryError(Exception):
    """A libfactory call failed. ``status`` is its ``Status`` (or the plain
    int of a code newer than this module), ``call`` the C function's name.
    """

    def __init__(self, status, call):
        self.status = status
        self.call = call
        super().__init__("%s: %s" % (call, status_str(int(status))))


class InvalidArgumentError(FactoryError, ValueError):
    """An argument is out of range: an empty string, an address that does
    not parse, customer id -1. The session stays usable."""


class NullPointerError(FactoryError):
    """A NULL pointer reached libfactory (a bug in this module)."""


class ConnectError(FactoryError, ConnectionError):
    """The host did not resolve or no connection could be made."""


class FactoryIOError(FactoryError, OSError):
    """A socket or thread operation failed; the session is unusable."""


class ProtocolError(FactoryError):
    """The server's reply does not match the request; the session is
    unusable."""


class ClosedError(FactoryError, ConnectionError):
    """The server closed the connection; the session is unusable."""


class AddressInUseError(FactoryError, OSError):
    """The server's port is already in use."""


class PanicError(FactoryError):
    """A bug inside libfactory was caught; the object may only be closed."""


class FactoryTimeoutError(FactoryError, TimeoutError):
    """The server did not answer within the client's timeout; the session
    is unusable."""


class UnavailableError(FactoryError, ConnectionError):
    """No server of a cluster client's list served the request before its
    deadline."""


class KvNotFoundError(FactoryError, LookupError):
    """Protocol v2: update or delete of an absent key (``Kv.get`` returns
    None instead)."""


class KvConditionError(FactoryError):
    """Protocol v2: a condition on the key's version did not hold;
    ``version`` is the key's current version (``NO_VERSION``: absent), set
    by ``Kv`` (None when raised elsewhere)."""

    version = None


class KvExistsError(KvConditionError):
    """Protocol v2: create of a key that exists."""


class KvVersionMismatchError(KvConditionError):
    """Protocol v2: cas whose expected version is not the key's."""


class TooLargeError(FactoryError, ValueError):
    """Protocol v2: a key or value over the server's limit (or over what
    the protocol carries). The connection stays usable."""


class BufferTooSmallError(FactoryError):
    """A caller's buffer cannot hold the value (the C ``factory_kv_get``;
    ``Kv`` never raises it)."""


class NotPrimaryError(FactoryError):
    """Protocol v2: a ``Kv`` made for one server sent a request its server
    does not serve (a write to a backup). A ``Kv`` made for a list follows
    the primary instead."""


class BusyError(FactoryError):
    """Protocol v2: the server is overloaded; try again later."""


class NoMemoryError(FactoryError):
    """Protocol v2: the write would take the server past its
    ``--max-memory``; reads are still served."""


class BadRequestError(FactoryError):
    """Protocol v2: the server found the request malformed and closed the
    connection (a bug in libfactory)."""


_ERRORS = {
    Status.KV_NOT_FOUND: KvNotFoundError,
    Status.KV_EXISTS: KvExistsError,
    Status.KV_VERSION_MISMATCH: KvVersionMismatchError,
    Status.TOO_LARGE: TooLargeError,
    Status.BUFFER_TOO_SMALL: BufferTooSmallError,
    Status.NOT_PRIMARY: NotPrimaryError,
    Status.BUSY: BusyError,
    Status.NO_MEMORY: NoMemoryError,
    Status.BAD_REQUEST: BadRequestError,
    Status.UNAVAILABLE: UnavailableError,
    Status.INVALID_ARGUMENT: InvalidArgumentError,
    Status.NULL_POINTER: NullPointerError,
    Status.CONNECT: ConnectError,
    Status.IO: FactoryIOError,
    Status.PROTOCOL: ProtocolError,
    Status.CLOSED: ClosedError,
    Status.ADDRESS_IN_USE: AddressInUseError,
    Status.PANIC: PanicError,
    Status.TIMEOUT: FactoryTimeoutError,
}


def _check(code, call):
    """Raises the error of a status code other than OK."""
    if code == Status.OK:
        return
    try:
        status = Status(code)
    except ValueError:
        raise FactoryError(code, call) from None
    raise _ERRORS[status](status, call)


# --- the library -------------------------------------------------------------


class _RobotInfo(ctypes.Structure):
    _fields_ = [
        ("customer_id", ctypes.c_int32),
        ("order_number", ctypes.c_int32),
        ("request_type", ctypes.c_int32),
        ("engineer_id", ctypes.c_int32),
        ("admin_id", ctypes.c_int32),
    ]


class _CustomerRecord(ctypes.Structure):
    _fields_ = [("customer_id", ctypes.c_int32), ("last_order", ctypes.c_int32)]


# The reply to an order: the request echoed, the number of the server
# connection that served it, admin_id 0.
RobotInfo = namedtuple(
    "RobotInfo", "customer_id order_number request_type engineer_id admin_id"
)
# A customer's committed record; last_order is -1 for a customer with no order.
CustomerRecord = namedtuple("CustomerRecord", "customer_id last_order")

_p = ctypes.c_void_p
_status = ctypes.c_int
_str = ctypes.c_char_p
# Keys and values: a pointer to bytes (NULs included) with a separate length.
_bytes = ctypes.c_char_p


class _KvItemC(ctypes.Structure):
    _fields_ = [
        ("key", ctypes.c_void_p),
        ("key_len", ctypes.c_size_t),
        ("value", ctypes.c_void_p),
        ("value_len", ctypes.c_size_t),
        ("version", ctypes.c_uint64),
    ]
# name: (restype, argtypes), as in include/factory.h.
_SIGNATURES = {
    "factory_client_connect": (
        _status, [_str, ctypes.c_uint16, ctypes.POINTER(_p)]),
    "factory_client_connect_timeout": (
        _status, [_str, ctypes.c_uint16, ctypes.c_uint32, ctypes.POINTER(_p)]),
    "factory_client_order": (
        _status, [_p, ctypes.c_int32, ctypes.c_int32, ctypes.POINTER(_RobotInfo)]),
    "factory_client_read": (
        _status, [_p, ctypes.c_int32, ctypes.POINTER(_CustomerRecord)]),
    "factory_client_close": (None, [_p]),
    "factory_cluster_connect": (
        _status, [ctypes.POINTER(_str), ctypes.c_size_t, ctypes.c_uint32, ctypes.POINTER(_p)]),
    "factory_cluster_order": (
        _status, [_p, ctypes.c_int32, ctypes.c_int32, ctypes.POINTER(_RobotInfo)]),
    "factory_cluster_read": (
        _status, [_p, ctypes.c_int32, ctypes.POINTER(_CustomerRecord)]),
    "factory_cluster_close": (None, [_p]),
    "factory_server_config_new": (_p, [ctypes.c_uint16, ctypes.c_int32]),
    "factory_server_config_set_bind": (_status, [_p, _str]),
    "factory_server_config_add_peer": (
        _status, [_p, ctypes.c_int32, _str, ctypes.c_uint16]),
    "factory_server_config_free": (None, [_p]),
    "factory_server_start": (_status, [_p, ctypes.POINTER(_p)]),
    "factory_server_port": (ctypes.c_uint16, [_p]),
    "factory_server_add_peer": (
        _status, [_p, ctypes.c_int32, _str, ctypes.c_uint16]),
    "factory_server_last_order": (
        _status, [_p, ctypes.c_int32, ctypes.POINTER(ctypes.c_int32)]),
    "factory_server_stop": (_status, [_p]),
    "factory_kv_connect": (
        _status, [_str, ctypes.c_uint16, ctypes.c_uint32, ctypes.POINTER(_p)]),
    "factory_kv_connect_cluster": (
        _status, [ctypes.POINTER(_str), ctypes.c_size_t, ctypes.c_uint32, ctypes.POINTER(_p)]),
    "factory_kv_close": (None, [_p]),
    "factory_kv_get_alloc": (
        _status, [_p, _bytes, ctypes.c_size_t, ctypes.POINTER(_p),
                  ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_uint64)]),
    "factory_kv_free": (None, [_p]),
    "factory_kv_put": (
        _status, [_p, _bytes, ctypes.c_size_t, _bytes, ctypes.c_size_t,
                  ctypes.POINTER(ctypes.c_uint64)]),
    "factory_kv_create": (
        _status, [_p, _bytes, ctypes.c_size_t, _bytes, ctypes.c_size_t,
                  ctypes.POINTER(ctypes.c_uint64)]),
    "factory_kv_update": (
        _status, [_p, _bytes, ctypes.c_size_t, _bytes, ctypes.c_size_t,
                  ctypes.POINTER(ctypes.c_uint64)]),
    "factory_kv_delete": (
        _status, [_p, _bytes, ctypes.c_size_t, ctypes.POINTER(ctypes.c_uint64)]),
    "factory_kv_cas": (
        _status, [_p, _bytes, ctypes.c_size_t, ctypes.c_uint64, _bytes, ctypes.c_size_t,
                  ctypes.POINTER(ctypes.c_uint64)]),
    "factory_kv_scan": (
        _status, [_p, _bytes, ctypes.c_size_t, ctypes.c_uint32, ctypes.POINTER(_p)]),
    "factory_kv_scan_count": (ctypes.c_size_t, [_p]),
    "factory_kv_scan_more": (ctypes.c_uint8, [_p]),
    "factory_kv_scan_item": (
        _status, [_p, ctypes.c_size_t, ctypes.POINTER(_KvItemC)]),
    "factory_kv_scan_free": (None, [_p]),
    "factory_version": (_str, []),
    "factory_status_str": (_str, [_status]),
}

_lib = None
_lib_lock = threading.Lock()


def _candidates():
    """Where the library is looked for, in order (see the module's doc)."""
    env = os.environ.get("FACTORY_LIB")
    if env:
        return [env]
    here = os.path.dirname(os.path.abspath(__file__))
    tree = os.path.join(here, "..", "..", "target", "release", "libfactory.so")
    found = [os.path.normpath(tree)] if os.path.exists(tree) else []
    return found + ["libfactory.so.0"]


def library():
    """The loaded libfactory (a ctypes.CDLL), loaded on first use.

    Raises OSError naming every place tried when none has it."""
    global _lib
    with _lib_lock:
        if _lib is None:
            tried = []
            for path in _candidates():
                try:
                    lib = ctypes.CDLL(path)
                    break
                except OSError as e:
                    tried.append("%s (%s)" % (path, e))
            else:
                raise OSError(
                    "libfactory not found; tried: %s. Build it with `make`, "
                    "install it, or set FACTORY_LIB to its path" % "; ".join(tried))
            for name, (restype, argtypes) in _SIGNATURES.items():
                fn = getattr(lib, name)
                fn.restype = restype
                fn.argtypes = argtypes
            _lib = lib
        return _lib


def version():
    """The library's version, e.g. "0.1.0"."""
    return library().factory_version().decode()


def status_str(status):
    """The library's short English description of a status code."""
    if not any(status == s for s in Status):
        return "unknown status %d" % status
    return library().factory_status_str(int(status)).decode()


def _host(host):
    """A host name or address as the C string libfactory copies."""
    if not isinstance(host, str):
        raise TypeError("host must be a str, not %s" % type(host).__name__)
    return host.encode()


def _timeout_ms(timeout):
    """Seconds (None: wait forever) as the C API's milliseconds (0: forever)."""
    if timeout is None:
        return 0
    if not timeout > 0:
        raise ValueError("timeout must be positive seconds or None, not %r" % (timeout,))
    return min(max(1, math.ceil(timeout * 1000)), 2**32 - 1)


# --- clients -------------------------------------------------------------------


class _Session:
    """What a server client and a cluster client share: a handle made by a
    connect call, and order/read/close through the C functions named
    ``factory_<PREFIX>_order`` and so on. Calls on one object are serialised
    (the C handle is used by one thread at a time)."""

    _PREFIX = None  # "client" or "cluster"

    def _open(self, connect, name, *args):
        self._lock = threading.Lock()
        self._handle = None
        out = _p()
        _check(connect(*args, ctypes.byref(out)), name)
        self._handle = out.value

    def _call(self, what, *args):
        name = "factory_%s_%s" % (self._PREFIX, what)
        with self._lock:
            if self._handle is None:
                raise ValueError("the %s is closed" % type(self).__name__.lower())
            code = getattr(library(), name)(self._handle, *args)
        _check(code, name)

    def order(self, customer_id, order_number):
        """Places order ``order_number`` for ``customer_id`` (a write) and
        returns the ``RobotInfo`` reply once it is committed."""
        out = _RobotInfo()
        self._call("order", customer_id, order_number, ctypes.byref(out))
        return RobotInfo(out.customer_id, out.order_number, out.request_type,
                         out.engineer_id, out.admin_id)

    # A write is an order: the name the rest of the project uses for it.
    write = order

    def read(self, customer_id):
        """The committed ``CustomerRecord`` of ``customer_id`` (-1: no order)."""
        out = _CustomerRecord()
        self._call("read", customer_id, ctypes.byref(out))
        return CustomerRecord(out.customer_id, out.last_order)

    def close(self):
        """Ends the session and frees the handle; closing twice is a no-op."""
        with self._lock:
            handle, self._handle = self._handle, None
        if handle is not None:
            getattr(library(), "factory_%s_close" % self._PREFIX)(handle)

    @property
    def closed(self):
        return self._handle is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_handle", None) is not None and _lib is not None:
            self.close()


class Client(_Session):
    """One client session with a server (``factory_client``).

    ``timeout`` (seconds, default 30) bounds connecting and every later call;
    ``None`` waits forever. Raises ``ConnectError`` if the host does not
    resolve or refuses. A read answers from the server connected to. After
    any error but ``InvalidArgumentError`` the session is unusable: close
    it. A context manager; closed when collected.
    """

    _PREFIX = "client"

    def __init__(self, host, port, timeout=DEFAULT_TIMEOUT):
        lib = library()
        if timeout == DEFAULT_TIMEOUT:
            self._open(lib.factory_client_connect, "factory_client_connect",
                       _host(host), port)
        else:
            self._open(lib.factory_client_connect_timeout,
                       "factory_client_connect_timeout",
                       _host(host), port, _timeout_ms(timeout))


class Cluster(_Session):
    """A client of a whole cluster (``factory_cluster``).

    ``servers`` is a list of ``"host:port"`` strings. The client finds the
    primary through the servers' status, sends every call there, and when
    that server fails, times out or closes the session it sends the call
    again to the next server, with backoff, until ``deadline`` seconds have
    passed since the call began (default 30; ``None`` also means the
    default). Resending is safe: an order sets the customer's last order, so
    the same order sent twice leaves the same record. Raises
    ``UnavailableError`` when no server served a call in time. A context
    manager; closed when collected.
    """

    _PREFIX = "cluster"

    def __init__(self, servers, deadline=DEFAULT_TIMEOUT):
        if isinstance(servers, str):
            raise TypeError("servers must be a list of 'host:port' strings, not one str")
        encoded = [_host(s) for s in servers]
        array = (_str * max(1, len(encoded)))(*encoded)
        ms = 0 if deadline is None else _timeout_ms(deadline)
        self._open(library().factory_cluster_connect, "factory_cluster_connect",
                   array, len(encoded), ms)


# --- protocol v2: string keys and values ------------------------------------

# The version of an absent key, for ``Kv.cas`` (only if absent) and as
# reported by a mismatch.
NO_VERSION = 2**64 - 1

# A value and its version (the log index that wrote it).
KvValue = namedtuple("KvValue", "version value")
# One key of a scan.
KvItem = namedtuple("KvItem", "key version value")


def _data(what, value):
    """Bytes of a key or value: bytes-like as is, str as UTF-8."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError("%s must be bytes or str, not %s" % (what, type(value).__name__))


class Kv:
    """A protocol v2 client (``factory_kv``): string keys and values, each
    with a version (the log index that wrote it).

    ``Kv("127.0.0.1", 5000)`` talks to one server (``timeout`` seconds for
    connecting and every call, default 30); ``Kv(["h:1", "h:2", "h:3"])``
    to a cluster, following its primary: a call goes on to the primary a
    refusal names or to the next server, with backoff, until ``timeout``
    seconds have passed (default 30). With a list, a write whose connection
    failed after it was sent is sent again: a put may commit twice (same
    value, newer version); a create, update, delete or cas may then raise
    the outcome of its own first commit.

    Keys and values are bytes (str is taken as UTF-8); values come back as
    bytes. ``get`` returns None for an absent key; the conditional writes
    raise ``KvExistsError``, ``KvNotFoundError`` or
    ``KvVersionMismatchError`` (the first and last carry the key's
    ``version``). Other failures raise their ``FactoryError``; after a
    connection error (closed, I/O, timeout) a one-server ``Kv`` is
    unusable, a cluster ``Kv`` connects again on its next call. One thread
    at a time (calls take a lock). A context manager; closed when
    collected.
    """

    def __init__(self, host_or_servers, port=None, timeout=DEFAULT_TIMEOUT):
        lib = library()
        self._lock = threading.Lock()
        self._handle = None
        out = _p()
        ms = 0 if timeout is None else _timeout_ms(timeout)
        if isinstance(host_or_servers, str):
            if port is None:
                raise TypeError("Kv(host, port): the port is missing")
            _check(lib.factory_kv_connect(_host(host_or_servers), port, ms,
                                          ctypes.byref(out)),
                   "factory_kv_connect")
        else:
            if port is not None:
                raise TypeError("Kv(servers): a list of 'host:port' takes no port")
            encoded = [_host(s) for s in host_or_servers]
            array = (_str * max(1, len(encoded)))(*encoded)
            _check(lib.factory_kv_connect_cluster(array, len(encoded), ms,
                                                  ctypes.byref(out)),
                   "factory_kv_connect_cluster")
        self._handle = out.value

    def _call(self, what, *args):
        """Calls ``factory_kv_<what>(handle, *args)``; returns its status
        code (the caller decides which are errors)."""
        with self._lock:
            if self._handle is None:
                raise ValueError("the kv client is closed")
            return getattr(library(), "factory_kv_" + what)(self._handle, *args)

    def get(self, key):
        """The key's ``KvValue``, or None if it is absent."""
        key = _data("key", key)
        buf, length, version = _p(), ctypes.c_size_t(), ctypes.c_uint64()
        code = self._call("get_alloc", key, len(key), ctypes.byref(buf),
                          ctypes.byref(length), ctypes.byref(version))
        if code == Status.KV_NOT_FOUND:
            return None
        _check(code, "factory_kv_get_alloc")
        try:
            value = ctypes.string_at(buf.value, length.value)
        finally:
            library().factory_kv_free(buf)
        return KvValue(version.value, value)

    def _write(self, what, *args):
        version = ctypes.c_uint64()
        code = self._call(what, *args, ctypes.byref(version))
        if code == Status.OK:
            return version.value
        try:
            _check(code, "factory_kv_" + what)
        except KvConditionError as e:
            e.version = version.value
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    def put(self, key, value):
        """Sets the key; returns its new version."""
        key, value = _data("key", key), _data("value", value)
        return self._write("put", key, len(key), value, len(value))

    def create(self, key, value):
        """Sets the key only if absent (else ``KvExistsError``); returns
        the new version."""
        key, value = _data("key", key), _data("value", value)
        return self._write("create", key, len(key), value, len(value))

    def update(self, key, value):
        """Sets the key only if present (else ``KvNotFoundError``); returns
        the new version."""
        key, value = _data("key", key), _data("value", value)
        return self._write("update", key, len(key), value, len(value))

    def delete(self, key):
        """Removes the key (else ``KvNotFoundError``); returns the delete's
        log index."""
        key = _data("key", key)
        return self._write("delete", key, len(key))

    def cas(self, key, expected, value):
        """Sets the key only if its version is ``expected`` (``NO_VERSION``:
        only if absent), else ``KvVersionMismatchError``; returns the new
        version."""
        key, value = _data("key", key), _data("value", value)
        return self._write("cas", key, len(key), expected, value, len(value))

    def scan(self, start=b"", limit=100):
        """Up to ``limit`` (1-1000) keys from ``start`` (inclusive) in byte
        order: a list of ``KvItem`` and whether more keys follow."""
        start = _data("start", start)
        out = _p()
        _check(self._call("scan", start, len(start), limit, ctypes.byref(out)),
               "factory_kv_scan")
        lib = library()
        try:
            items = []
            item = _KvItemC()
            for i in range(lib.factory_kv_scan_count(out)):
                _check(lib.factory_kv_scan_item(out, i, ctypes.byref(item)),
                       "factory_kv_scan_item")
                items.append(KvItem(ctypes.string_at(item.key, item.key_len),
                                    item.version,
                                    ctypes.string_at(item.value, item.value_len)))
            more = bool(lib.factory_kv_scan_more(out))
        finally:
            lib.factory_kv_scan_free(out)
        return items, more

    def scan_all(self, start=b"", page=1000):
        """Every key from ``start`` on, as ``KvItem``s, read ``page`` keys
        at a time (each page from the last key + b"\\0")."""
        start = _data("start", start)
        while True:
            items, more = self.scan(start, page)
            yield from items
            if not more or not items:
                return
            start = items[-1].key + b"\0"

    def close(self):
        """Closes the connection and frees the handle; closing twice is a
        no-op."""
        with self._lock:
            handle, self._handle = self._handle, None
        if handle is not None:
            library().factory_kv_close(handle)

    @property
    def closed(self):
        return self._handle is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_handle", None) is not None and _lib is not None:
            self.close()


# --- an embedded server -----------------------------------------------------


class Server:
    """A factory server running in this process (``factory_server``).

    Listens on ``port`` (0: the system picks one, see ``port``) at ``bind``
    (an IP address; None: every IPv4 interface, as the original server),
    with id ``factory_id`` and ``peers``, an iterable of (peer_id, host,
    port). Starting returns without waiting for clients. Raises
    ``AddressInUseError`` if the port is taken. A context manager; stopped
    when collected.
    """

    def __init__(self, factory_id, port=0, bind=None, peers=()):
        lib = library()
        self._handle = None
        self._stop_lock = threading.Lock()
        config = lib.factory_server_config_new(port, factory_id)
        if not config:
            raise MemoryError("factory_server_config_new")
        try:
            if bind is not None:
                _check(lib.factory_server_config_set_bind(config, _host(bind)),
                       "factory_server_config_set_bind")
            for peer_id, host, peer_port in peers:
                _check(lib.factory_server_config_add_peer(
                    config, peer_id, _host(host), peer_port),
                    "factory_server_config_add_peer")
            out = _p()
            _check(lib.factory_server_start(config, ctypes.byref(out)),
                   "factory_server_start")
            self._handle = out.value
        finally:
            lib.factory_server_config_free(config)

    def _live(self):
        handle = self._handle
        if handle is None:
            raise ValueError("the server is stopped")
        return handle

    @property
    def port(self):
        """The port the server listens on (the one the system picked for 0)."""
        return library().factory_server_port(self._live())

    def add_peer(self, peer_id, host, port):
        """Adds a backup, for clusters whose ports are known only once their
        servers have started."""
        _check(library().factory_server_add_peer(self._live(), peer_id, _host(host), port),
               "factory_server_add_peer")

    def last_order(self, customer_id):
        """The last order of ``customer_id`` this server has committed and
        applied (-1: none), read locally without the network."""
        out = ctypes.c_int32()
        _check(library().factory_server_last_order(self._live(), customer_id,
                                                   ctypes.byref(out)),
               "factory_server_last_order")
        return out.value

    def stop(self):
        """Stops the server and frees it; blocks until its threads have ended
        (up to a few seconds). Stopping twice is a no-op. Do not stop a
        server while another thread is calling one of its methods."""
        with self._stop_lock:
            handle, self._handle = self._handle, None
        if handle is not None:
            _check(library().factory_server_stop(handle), "factory_server_stop")

    @property
    def stopped(self):
        return self._handle is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __del__(self):
        if getattr(self, "_handle", None) is not None and _lib is not None:
            self.stop()
