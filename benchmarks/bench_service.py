"""Service benchmark: a front-desk HTTP service on ownervault against the same on the matched store.

Usage::

    python benchmarks/bench_service.py [--quick] [--duration S] [--owners N]
                                       [--concurrency C] [--clients P] [--json FILE]
                                       [--synchronous NORMAL|FULL]

A front-desk service built on the standard library serves three endpoints the way a web
application embedding ownervault does, one session per request:

* ``GET /owner/<record id>`` -- open a session as the front-desk clerk (``clerk-01``, role
  ``front_desk``) for ``owner_registration``, ``get`` the owner profile, close the session;
* ``GET /find?phone=...`` -- a session, ``find`` owner profiles by phone, close;
* ``POST /owner`` -- a session, ``put`` a new owner profile (JSON body), close.

Each store runs in its own server process: the store is opened once there and shared by a
pool of 8 worker threads (one selector thread hands each request of a keep-alive connection to
the pool, so 16 connections share 8 threads). ownervault's ``Vault`` is shared as its docs say
(its threads take turns at one shared SQLCipher connection and share a commit when they queue;
one session per request, in one thread). The matched store of ``bench_store.py``
(``_common.MatchedStore``: the same guarantees written by hand) has one connection whose every
operation is a write transaction; the service guards it with one lock. Both stores run with
``--synchronous`` (NORMAL, the default; FULL adds an fsync per commit).

Client processes (``--clients``, default 2) split ``--concurrency`` keep-alive ``http.client``
connections (default 16, one thread each) and send a mixed load, 60% get, 20% find, 20% put,
on 127.0.0.1. Every response is checked: status 200, the JSON shape and the owner asked for.
The stores take turns in slices (the order alternates) so that load from other processes hits
both alike: ``--duration`` measured seconds per store in ``--slices`` slices, after a warm-up.
Reported: requests per second and p50/p99 latency per store and per operation, errors, and
ownervault / matched.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import multiprocessing as mp
import os
import queue
import random
import selectors
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import ownervault as ov
from _common import (
    CLERK,
    PERSONAL_FIELDS,
    MatchedStore,
    Person,
    create_vault,
    environment,
    fmt_seconds,
    generate_people,
    load_average,
    markdown_table,
    median,
    percentile,
    spaced_phone,
)
from ownervault.records import OwnerProfile
from ownervault.testing import InMemoryKey

OPS = ("get", "find", "put")
#: The mix of the load: the share of each operation.
MIX = {"get": 0.6, "find": 0.2, "put": 0.2}
#: Worker threads of each server.
WORKERS = 8
#: The front desk's purpose (the clerk's screen registers and looks up owners).
PURPOSE = "owner_registration"
STORES = ("ownervault", "matched")
#: Owners created by the prefill's put_many per transaction.
PREFILL_BATCH = 1000


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="about a minute: 2k owners, 20 s a store")
    p.add_argument("--duration", type=float, default=None, help="measured seconds per store (90)")
    p.add_argument("--owners", type=int, default=None, help="owners put before the load (10000)")
    p.add_argument("--warmup", type=float, default=None, help="warm-up seconds per store (5)")
    p.add_argument("--slices", type=int, default=None, help="turns per store (3; quick 2)")
    p.add_argument("--concurrency", type=int, default=16, help="client connections (16)")
    p.add_argument("--clients", type=int, default=2, help="client processes (2)")
    p.add_argument("--seed", type=int, default=20260101)
    p.add_argument(
        "--synchronous",
        choices=("NORMAL", "FULL"),
        default="NORMAL",
        help="both stores' SQLite synchronous mode (NORMAL; FULL: an fsync per commit)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write raw figures here")
    p.add_argument(
        "--split",
        action="store_true",
        help="instead of the service: CPU time per store call in one thread, no HTTP",
    )
    args = p.parse_args(argv)
    if args.duration is None:
        args.duration = 20.0 if args.quick else 90.0
    if args.owners is None:
        args.owners = 2000 if args.quick else 10_000
    if args.warmup is None:
        args.warmup = 3.0 if args.quick else 5.0
    if args.slices is None:
        args.slices = 2 if args.quick else 3
    args.clients = max(1, min(args.clients, args.concurrency))
    if args.owners < 1 or args.duration <= 0 or args.concurrency < 1 or args.slices < 1:
        p.error("need owners >= 1, duration > 0, concurrency >= 1, slices >= 1")
    return args


# --------------------------------------------------------------------------- wire format


def person_json(person: Person, subject_id: str) -> bytes:
    """The body of ``POST /owner``: the owner's fields, dates as ISO text."""
    values = {
        k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in person.values().items()
    }
    return json.dumps({"subject_id": subject_id, **values}, ensure_ascii=False).encode()


def person_from_json(body: dict[str, Any]) -> Person:
    """The owner a ``POST /owner`` body describes (ValueError if it is not one)."""
    if not isinstance(body.get("subject_id"), str) or not isinstance(body.get("name"), str):
        raise ValueError("subject_id and name are required")
    unknown = set(body) - {"subject_id", *PERSONAL_FIELDS}
    if unknown:
        raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for name in PERSONAL_FIELDS:
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} must be text")
        if value is not None and name in ("birth_date", "move_in_date"):
            value = dt.date.fromisoformat(value)
        values[name] = value
    return Person(subject_id=body["subject_id"], **values)


def owner_out(record_id: str, subject_id: str, values: dict[str, Any]) -> dict[str, Any]:
    """An owner as the service answers it: ids and the disclosed fields as text."""
    fields = {k: (None if v is None else str(v)) for k, v in values.items()}
    return {"record_id": record_id, "subject_id": subject_id, "fields": fields}


# --------------------------------------------------------------------------- the two back ends


class VaultBackend:
    """ownervault: one vault per process shared by the threads, one session per request."""

    name = "ownervault"

    def __init__(self, directory: Path, synchronous: str = "NORMAL") -> None:
        self.vault = create_vault(
            directory / "vault", CLERK, key=InMemoryKey(), synchronous=synchronous
        )

    @staticmethod
    def _profile(person: Person) -> OwnerProfile:
        fields = {k: v for k, v in person.values().items() if v is not None}
        return OwnerProfile(subject_id=person.subject_id, **fields)

    def prefill(self, people: Sequence[Person]) -> list[str]:
        ids: list[str] = []
        with self.vault.session(CLERK, purpose=PURPOSE) as session:
            for start in range(0, len(people), PREFILL_BATCH):
                part = people[start : start + PREFILL_BATCH]
                ids.extend(session.put_many([self._profile(p) for p in part]))
        return ids

    @staticmethod
    def _out(view: ov.RecordView) -> dict[str, Any]:
        return owner_out(view.record_id, view.subject_id, dict(view.values))

    def get(self, record_id: str) -> dict[str, Any]:
        with self.vault.session(CLERK, purpose=PURPOSE) as session:
            return self._out(session.get(OwnerProfile, record_id))

    def find(self, phone: str) -> list[dict[str, Any]]:
        with self.vault.session(CLERK, purpose=PURPOSE) as session:
            return [self._out(v) for v in session.find(OwnerProfile, phone=phone)]

    def put(self, person: Person) -> str:
        profile = self._profile(person)  # validated before the session opens, as an app would
        with self.vault.session(CLERK, purpose=PURPOSE) as session:
            return session.put(profile)

    def close(self) -> None:
        self.vault.close()


class MatchedBackend:
    """The matched store of ``bench_store.py``, one connection behind one lock.

    Its connection runs one transaction at a time and every operation of the store is a write
    transaction (reads commit their audit row), so the lock takes no parallelism away; its key
    cache is shared, as ownervault's is.
    """

    name = "matched"

    def __init__(self, directory: Path, synchronous: str = "NORMAL") -> None:
        self.store = MatchedStore(directory)
        self.store.sqlite_connection().execute(f"PRAGMA synchronous = {synchronous}")
        self._lock = threading.Lock()

    def prefill(self, people: Sequence[Person]) -> list[str]:
        ids: list[str] = []
        for start in range(0, len(people), PREFILL_BATCH):
            ids.extend(
                self.store.put_many(self.store.prepare(people[start : start + PREFILL_BATCH]))
            )
        return ids

    @staticmethod
    def _out(record: dict[str, Any]) -> dict[str, Any]:
        return owner_out(
            record["id"], record["subject_id"], {f: record[f] for f in PERSONAL_FIELDS}
        )

    def get(self, record_id: str) -> dict[str, Any]:
        with self._lock:
            record = self.store.get(record_id)
        return self._out(record)

    def find(self, phone: str) -> list[dict[str, Any]]:
        with self._lock:
            records = self.store.find(phone)
        return [self._out(r) for r in records]

    def put(self, person: Person) -> str:
        item = self.store.prepare([person])[0]
        with self._lock:
            return self.store.put(item)

    def close(self) -> None:
        with self._lock:
            self.store.close()


BACKENDS: dict[str, Callable[[Path, str], VaultBackend | MatchedBackend]] = {
    "ownervault": VaultBackend,
    "matched": MatchedBackend,
}


# --------------------------------------------------------------------------- the server


class _Connection:
    """One client connection: its socket and the buffered streams requests are read from."""

    def __init__(self, sock: socket.socket, address: Any) -> None:
        self.sock = sock
        self.address = address
        self.rfile = sock.makefile("rb")
        self.wfile = sock.makefile("wb")

    def close(self) -> None:
        for stream in (self.rfile, self.wfile):
            with contextlib.suppress(OSError):
                stream.close()
        self.sock.close()


class _Handler(BaseHTTPRequestHandler):
    """Handles exactly one request of a connection, then hands the connection back."""

    protocol_version = "HTTP/1.1"
    server_version = "frontdesk-bench"
    sys_version = ""

    def __init__(self, conn: _Connection, service: FrontDesk) -> None:
        self.conn = conn
        self.service = service
        super().__init__(conn.sock, conn.address, None)  # type: ignore[arg-type]

    def setup(self) -> None:
        self.connection = self.request
        self.rfile = self.conn.rfile
        self.wfile = self.conn.wfile

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()

    def finish(self) -> None:
        """The connection stays open (keep-alive); the worker decides what becomes of it."""

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: one line per request would cost more than some requests."""

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _run(self, op: str, call: Callable[[], Any]) -> None:
        try:
            result = call()
        except Exception as exc:
            self.service.count(op, error=type(exc).__name__)
            self._answer(500, {"error": type(exc).__name__})
            return
        self.service.count(op)
        self._answer(200, result)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        backend = self.service.backend
        if url.path.startswith("/owner/") and len(url.path) > len("/owner/"):
            record_id = url.path[len("/owner/") :]
            self._run("get", lambda: backend.get(record_id))
        elif url.path == "/find":
            phones = parse_qs(url.query).get("phone")
            if not phones:
                self._answer(400, {"error": "phone is required"})
                return
            self._run("find", lambda: {"owners": backend.find(phones[0])})
        else:
            self._answer(404, {"error": "not found"})

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/owner":
            self._answer(404, {"error": "not found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            person = person_from_json(json.loads(self.rfile.read(length)))
        except ValueError as exc:
            self.service.count("put", error="bad request")
            self._answer(400, {"error": str(exc)})
            return
        backend = self.service.backend
        self._run(
            "put", lambda: {"record_id": backend.put(person), "subject_id": person.subject_id}
        )


class FrontDesk:
    """An HTTP/1.1 server with a bounded pool of worker threads over one store.

    One selector thread accepts connections and watches the idle ones; when a request arrives
    on one, the connection goes to the pool, a worker answers that one request and gives the
    connection back. So any number of keep-alive connections share the ``workers`` threads.
    Requests are read one at a time: a client must wait for an answer before sending the next
    request on a connection (``http.client`` does).
    """

    def __init__(self, backend: VaultBackend | MatchedBackend, workers: int = WORKERS) -> None:
        self.backend = backend
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.listener.setblocking(False)
        self.port: int = self.listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.listener, selectors.EVENT_READ, "accept")
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._returned: queue.SimpleQueue[_Connection] = queue.SimpleQueue()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="frontdesk")
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.served: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.threads: set[int] = set()

    def count(self, op: str, error: str | None = None) -> None:
        with self._lock:
            self.threads.add(threading.get_ident())
            if error is None:
                self.served[op] += 1
            else:
                self.errors[f"{op}: {error}"] += 1

    def _serve_one(self, conn: _Connection) -> None:
        try:
            handler = _Handler(conn, self)
            conn.wfile.flush()
            keep = not handler.close_connection
        except OSError:
            keep = False  # the client went away
        except Exception as exc:
            self.count("request", error=type(exc).__name__)
            keep = False
        if keep and not self._stop.is_set():
            self._returned.put(conn)
            self._wake_w.send(b"\0")
        else:
            conn.close()

    def serve_forever(self) -> None:
        selector = self._selector
        while not self._stop.is_set():
            for key, _ in selector.select(timeout=0.5):
                if key.data == "accept":
                    self._accept()
                elif key.data == "wake":
                    with contextlib.suppress(BlockingIOError):
                        self._wake_r.recv(4096)
                    while True:
                        try:
                            conn = self._returned.get_nowait()
                        except queue.Empty:
                            break
                        selector.register(conn.sock, selectors.EVENT_READ, conn)
                else:
                    selector.unregister(key.fileobj)
                    self._pool.submit(self._serve_one, key.data)
        self._pool.shutdown(wait=True)
        for key in list(selector.get_map().values()):
            if isinstance(key.data, _Connection):
                key.data.close()
        while True:
            try:
                self._returned.get_nowait().close()
            except queue.Empty:
                break
        selector.close()
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                sock, address = self.listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(True)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(sock, address)
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def stop(self) -> None:
        self._stop.set()
        self._wake_w.send(b"\0")


def server_main(
    store: str, directory: str, people: Sequence[Person], pipe: Connection, synchronous: str
) -> None:
    """A server process: build the store, put the owners, serve until told to stop."""
    backend = BACKENDS[store](Path(directory), synchronous)
    start = time.perf_counter()
    ids = backend.prefill(people)
    prefill_s = time.perf_counter() - start
    service = FrontDesk(backend)
    pipe.send({"port": service.port, "ids": ids, "prefill_s": prefill_s})

    def control() -> None:
        pipe.recv()  # any message: stop
        service.stop()

    threading.Thread(target=control, daemon=True).start()
    service.serve_forever()
    backend.close()
    pipe.send(
        {
            "served": dict(service.served),
            "errors": dict(service.errors),
            "worker_threads": len(service.threads),
        }
    )


# --------------------------------------------------------------------------- the load


@dataclass
class Plan:
    """What one client process does in one slice."""

    port: int
    measure_from: float  # time.monotonic(): requests finished before this are warm-up
    until: float  # time.monotonic(): no request starts after this
    threads: int
    seed: int
    tag: str  # makes the subject ids of new owners unique across slices and processes


@dataclass
class Tally:
    """What one client process saw in the measured part of a slice."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: {op: [] for op in OPS})
    errors: Counter[str] = field(default_factory=Counter)
    warmup_requests: int = 0


def _check_owner(owner: Any, record_id: str | None, subject_id: str | None) -> bool:
    return (
        isinstance(owner, dict)
        and isinstance(owner.get("record_id"), str)
        and (record_id is None or owner["record_id"] == record_id)
        and (subject_id is None or owner.get("subject_id") == subject_id)
        and isinstance(owner.get("fields"), dict)
        and isinstance(owner["fields"].get("name"), str)
    )


def _one_thread(
    plan: Plan,
    index: int,
    targets: Sequence[tuple[str, str, str]],
    new_people: Sequence[Person],
    tally: Tally,
    lock: threading.Lock,
) -> None:
    """One keep-alive connection sending the mixed load until the plan's end."""
    rng = random.Random(plan.seed * 1000 + index)
    ops, weights = list(MIX), list(MIX.values())
    conn = http.client.HTTPConnection("127.0.0.1", plan.port, timeout=60)
    latencies: dict[str, list[float]] = {op: [] for op in OPS}
    errors: Counter[str] = Counter()
    warm = made = 0
    headers = {"Content-Type": "application/json"}
    clock, now = time.perf_counter, time.monotonic
    while now() < plan.until:
        op = rng.choices(ops, weights)[0]
        record_id, subject_id, phone = targets[rng.randrange(len(targets))]
        if op == "get":
            method, path, body = "GET", f"/owner/{record_id}", None
        elif op == "find":
            method, path, body = "GET", f"/find?phone={quote(spaced_phone(phone))}", None
        else:
            made += 1
            subject_id = f"new-{plan.tag}-{index}-{made}"
            person = new_people[rng.randrange(len(new_people))]
            method, path, body = "POST", "/owner", person_json(person, subject_id)
        start = clock()
        try:
            conn.request(method, path, body=body, headers=headers if body else {})
            response = conn.getresponse()
            status, data = response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            errors[f"{op}: {type(exc).__name__}"] += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", plan.port, timeout=60)
            continue
        elapsed = clock() - start
        if status != 200:
            errors[f"{op}: status {status}"] += 1
            continue
        try:
            answer = json.loads(data)
        except ValueError:
            errors[f"{op}: not JSON"] += 1
            continue
        if op == "find":
            owners = answer.get("owners") if isinstance(answer, dict) else None
            good = (
                isinstance(owners, list)
                and all(_check_owner(o, None, None) for o in owners)
                and any(o["subject_id"] == subject_id for o in owners)
            )
        elif op == "get":
            good = _check_owner(answer, record_id, subject_id)
        else:
            good = (
                isinstance(answer, dict)
                and isinstance(answer.get("record_id"), str)
                and bool(answer["record_id"])
                and answer.get("subject_id") == subject_id
            )
        if not good:
            errors[f"{op}: wrong answer"] += 1
        elif now() < plan.measure_from:
            warm += 1  # checked, not counted
        else:
            latencies[op].append(elapsed)
    conn.close()
    with lock:
        for op in OPS:
            tally.latencies[op].extend(latencies[op])
        tally.errors.update(errors)
        tally.warmup_requests += warm


def client_main(
    targets: dict[str, list[tuple[str, str, str]]], new_people: Sequence[Person], pipe: Connection
) -> None:
    """A client process: run each plan it is sent with its threads, send back the tally."""
    while True:
        message = pipe.recv()
        if message is None:
            return
        store, plan = message
        tally, lock = Tally(), threading.Lock()
        threads = [
            threading.Thread(
                target=_one_thread,
                args=(plan, i, targets[store], new_people, tally, lock),
                daemon=True,
            )
            for i in range(plan.threads)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        pipe.send(tally)


# --------------------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    people = generate_people(args.owners, seed=args.seed)
    # New owners for the puts: other people than the prefill (their phones are not searched),
    # reused under fresh subject ids.
    new_people = generate_people(min(1000, args.owners), seed=args.seed + 1, start=args.owners)
    print(
        f"generated {len(people) + len(new_people):,} owners in "
        f"{fmt_seconds(time.perf_counter() - start)}",
        flush=True,
    )
    ctx = mp.get_context("fork")  # no threads in this process yet; the children share the data
    tmp = Path(tempfile.mkdtemp(prefix="ovbench-service-"))
    servers: dict[str, tuple[Any, Connection]] = {}
    clients: list[tuple[Any, Connection]] = []
    info: dict[str, dict[str, Any]] = {}
    try:
        for store in STORES:
            (tmp / store).mkdir()
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(
                target=server_main,
                args=(store, str(tmp / store), people, theirs, args.synchronous),
                daemon=True,
            )
            proc.start()
            servers[store] = (proc, ours)
        for store, (_, pipe) in servers.items():
            info[store] = pipe.recv()
            print(
                f"{store}: {args.owners:,} owners put in {fmt_seconds(info[store]['prefill_s'])}, "
                f"serving on 127.0.0.1:{info[store]['port']}",
                flush=True,
            )
        targets = {
            store: [
                (rid, p.subject_id, p.phone)
                for rid, p in zip(info[store]["ids"], people, strict=True)
            ]
            for store in STORES
        }
        shares = [args.concurrency // args.clients] * args.clients
        for i in range(args.concurrency % args.clients):
            shares[i] += 1
        for _ in range(args.clients):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=client_main, args=(targets, new_people, theirs), daemon=True)
            proc.start()
            clients.append((proc, ours))
        pids = {store: proc.pid for store, (proc, _) in servers.items()}
        result = load(args, info, clients, shares, pids)
        result["prefill_s"] = {s: info[s]["prefill_s"] for s in STORES}
        for proc, pipe in clients:
            pipe.send(None)
            proc.join(10)
        server_side: dict[str, Any] = {}
        for store, (proc, pipe) in servers.items():
            pipe.send("stop")
            server_side[store] = pipe.recv()
            proc.join(30)
        result["server"] = server_side
        return result
    finally:
        for proc, _ in [*servers.values(), *clients]:
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        shutil.rmtree(tmp, ignore_errors=True)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from ``/proc``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # fields[0] is the state, the third of the line
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(
    args: argparse.Namespace,
    info: dict[str, dict[str, Any]],
    clients: Sequence[tuple[Any, Connection]],
    shares: Sequence[int],
    server_pids: dict[str, int],
) -> dict[str, Any]:
    """Run the slices, the stores taking turns; pool each store's tallies.

    Also adds up the CPU time the store's server process and the client processes use over
    each slice (warm-up included), per request answered in it (warm-up included).
    """
    per_slice = args.duration / args.slices
    client_pids = [proc.pid for proc, _ in clients]
    cpu: dict[str, dict[str, float]] = {
        s: {"server_s": 0.0, "client_s": 0.0, "requests": 0} for s in STORES
    }
    latencies: dict[str, dict[str, list[float]]] = {s: {op: [] for op in OPS} for s in STORES}
    errors: dict[str, Counter[str]] = {s: Counter() for s in STORES}
    measured: dict[str, float] = dict.fromkeys(STORES, 0.0)
    slices: list[dict[str, Any]] = []
    warmed: set[str] = set()
    for number in range(args.slices):
        order = STORES if number % 2 == 0 else STORES[::-1]
        for store in order:
            settle = args.warmup if store not in warmed else min(1.0, args.warmup)
            warmed.add(store)
            begin = time.monotonic() + 0.2
            plans = [
                Plan(
                    port=info[store]["port"],
                    measure_from=begin + settle,
                    until=begin + settle + per_slice,
                    threads=threads,
                    seed=args.seed + 7919 * number + 104729 * k + (0 if store == STORES[0] else 1),
                    tag=f"{number}x{k}",
                )
                for k, threads in enumerate(shares)
            ]
            load_before = os.getloadavg()[0]
            server_cpu = cpu_seconds(server_pids[store])
            client_cpu = sum(cpu_seconds(pid) for pid in client_pids)
            for (_, pipe), plan in zip(clients, plans, strict=True):
                pipe.send((store, plan))
            tallies: list[Tally] = [pipe.recv() for _, pipe in clients]
            cpu[store]["server_s"] += cpu_seconds(server_pids[store]) - server_cpu
            cpu[store]["client_s"] += sum(cpu_seconds(pid) for pid in client_pids) - client_cpu
            cpu[store]["requests"] += sum(t.warmup_requests for t in tallies)
            done = 0
            for tally in tallies:
                for op in OPS:
                    latencies[store][op].extend(tally.latencies[op])
                    done += len(tally.latencies[op])
                errors[store].update(tally.errors)
            measured[store] += per_slice
            cpu[store]["requests"] += done
            slices.append(
                {
                    "slice": number + 1,
                    "store": store,
                    "requests_per_s": done / per_slice,
                    "load": (load_before, os.getloadavg()[0]),
                }
            )
            print(
                f"  slice {number + 1}/{args.slices} {store}: {done / per_slice:,.0f} requests/s, "
                f"{sum(tally.errors.total() for tally in tallies)} errors, "
                f"load average {os.getloadavg()[0]:.2f}",
                flush=True,
            )
    return {
        "figures": figures(latencies, measured),
        "errors": {s: dict(e) for s, e in errors.items()},
        "slices": slices,
        "cpu_ms_per_request": {
            s: {
                "server": 1e3 * c["server_s"] / c["requests"] if c["requests"] else 0.0,
                "client": 1e3 * c["client_s"] / c["requests"] if c["requests"] else 0.0,
            }
            for s, c in cpu.items()
        },
    }


def figures(
    latencies: dict[str, dict[str, list[float]]], measured: dict[str, float]
) -> dict[str, dict[str, dict[str, float]]]:
    """Requests/s, p50 and p99 (ms) per store, for each operation and for all together."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for store in STORES:
        seconds = measured[store]
        rows: dict[str, dict[str, float]] = {}
        every: list[float] = []
        for op in OPS:
            values = latencies[store][op]
            every.extend(values)
            rows[op] = _row(values, seconds)
        rows["all"] = _row(every, seconds)
        out[store] = rows
    return out


def _row(values: Sequence[float], seconds: float) -> dict[str, float]:
    return {
        "requests": len(values),
        "per_s": len(values) / seconds if seconds else 0.0,
        "p50_ms": percentile(values, 50) * 1e3,
        "p99_ms": percentile(values, 99) * 1e3,
    }


# --------------------------------------------------------------------------- split

#: Calls per block and blocks per store of ``--split`` (quick: fewer blocks).
SPLIT_CALLS = 100


def _split_calls(
    backend: VaultBackend | MatchedBackend, ids: Sequence[str], people: Sequence[Person]
) -> dict[str, Callable[[int], object]]:
    """The get and the find of the i-th prefilled owner, as ``--split`` times them."""

    def get(i: int) -> object:
        return backend.get(ids[i])

    def find(i: int) -> object:
        return backend.find(spaced_phone(people[i].phone))

    return {"get": get, "find": find}


def run_split(args: argparse.Namespace) -> dict[str, Any]:
    """CPU microseconds per call of each back end's operations, in this thread, without HTTP.

    The same calls the service makes per request (a session per call for ownervault), and for
    ownervault an empty session (open + close) alone; the stores take turns block by block.
    """
    people = generate_people(args.owners, seed=args.seed)
    new_people = generate_people(min(1000, args.owners), seed=args.seed + 1, start=args.owners)
    blocks = 6 if args.quick else 20
    rng = random.Random(args.seed + 5)
    tmp = Path(tempfile.mkdtemp(prefix="ovbench-split-"))
    backends: dict[str, VaultBackend | MatchedBackend] = {}
    samples: dict[str, dict[str, list[float]]] = {}
    try:
        ids: dict[str, list[str]] = {}
        for store in STORES:
            (tmp / store).mkdir()
            backends[store] = BACKENDS[store](tmp / store, args.synchronous)
            ids[store] = backends[store].prefill(people)
            samples[store] = {op: [] for op in ("open+close", *OPS)}
        made = 0

        def empty_session() -> None:
            vault = backends["ownervault"]
            assert isinstance(vault, VaultBackend)
            with vault.vault.session(CLERK, purpose=PURPOSE):
                pass

        clock = time.thread_time
        for block in range(blocks):
            picks = [rng.randrange(len(people)) for _ in range(SPLIT_CALLS)]
            for store in STORES if block % 2 == 0 else STORES[::-1]:
                backend = backends[store]
                calls = _split_calls(backend, ids[store], people)
                if store == "ownervault":
                    calls["open+close"] = lambda i: empty_session()
                for op, call in calls.items():
                    start = clock()
                    for i in picks:
                        call(i)
                    samples[store][op].append((clock() - start) / SPLIT_CALLS * 1e6)
                # New owners as the service receives them (decoded from JSON), outside the clock.
                bodies = []
                for i in picks:
                    made += 1
                    body = person_json(new_people[i % len(new_people)], f"split-{made}")
                    bodies.append(person_from_json(json.loads(body)))
                start = clock()
                for person in bodies:
                    backend.put(person)
                samples[store]["put"].append((clock() - start) / SPLIT_CALLS * 1e6)
    finally:
        for backend in backends.values():
            backend.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "us_per_call": {
            store: {op: median(v) for op, v in ops.items() if v} for store, ops in samples.items()
        },
        "blocks": blocks,
    }


def report_split(args: argparse.Namespace, result: dict[str, Any]) -> list[str]:
    us = result["us_per_call"]
    rows = []
    for op in ("open+close", *OPS):
        own = us["ownervault"].get(op)
        other = us["matched"].get(op)
        rows.append(
            [
                op if op == "open+close" else f"{op} (session per call)",
                "-" if own is None else f"{own:,.0f}",
                "-" if other is None else f"{other:,.0f}",
                f"{other / own:.2f}x" if own and other else "-",
            ]
        )
    return [
        f"### CPU time per store call, one thread, no HTTP ({args.owners:,} owners, median of "
        f"{result['blocks']} blocks of {SPLIT_CALLS} calls)",
        "",
        "What each request of the service costs in the store alone (the thread's CPU time, so "
        "other processes' load does not count). ownervault opens and closes a session per call; "
        "`open+close` is an empty session. Ratio: ownervault calls per CPU second / matched's.",
        "",
        markdown_table(["call", "ownervault (us)", "matched (us)", "ownervault / matched"], rows),
    ]


# --------------------------------------------------------------------------- report


def report(args: argparse.Namespace, result: dict[str, Any]) -> list[str]:
    fig = result["figures"]
    own, matched = fig["ownervault"], fig["matched"]
    header = [
        "operation",
        "ownervault req/s",
        "p50 ms",
        "p99 ms",
        "matched req/s",
        "p50 ms",
        "p99 ms",
        "ownervault / matched",
    ]
    rows = []
    for op in (*OPS, "all"):
        a, b = own[op], matched[op]
        share = "" if op == "all" else f" ({MIX[op]:.0%})"
        rows.append(
            [
                f"{op}{share}",
                f"{a['per_s']:,.0f}",
                f"{a['p50_ms']:.2f}",
                f"{a['p99_ms']:.2f}",
                f"{b['per_s']:,.0f}",
                f"{b['p50_ms']:.2f}",
                f"{b['p99_ms']:.2f}",
                f"{a['per_s'] / b['per_s']:.2f}x" if b["per_s"] else "-",
            ]
        )
    error_rows = [
        [
            store,
            f"{sum(result['errors'][store].values()):,}",
            ", ".join(f"{k} x{v}" for k, v in sorted(result["errors"][store].items())) or "-",
            f"{sum(result['server'][store]['errors'].values()):,}",
            str(result["server"][store]["worker_threads"]),
            f"{result['cpu_ms_per_request'][store]['server']:.2f}",
            f"{result['cpu_ms_per_request'][store]['client']:.2f}",
        ]
        for store in STORES
    ]
    slice_rows = [
        [
            f"{s['slice']} {s['store']}",
            f"{s['requests_per_s']:,.0f}",
            f"{s['load'][0]:.2f} -> {s['load'][1]:.2f}",
        ]
        for s in result["slices"]
    ]
    ratio = own["all"]["per_s"] / matched["all"]["per_s"] if matched["all"]["per_s"] else 0.0
    return [
        f"### Front-desk service: {args.owners:,} owners, {args.concurrency} connections "
        f"({args.clients} client processes), {WORKERS} server threads, "
        f"{args.duration:g} s per store in {args.slices} slices, synchronous={args.synchronous}",
        "",
        "Mix: 60% `GET /owner/<id>`, 20% `GET /find?phone=`, 20% `POST /owner`; one session "
        "per request. Requests/s over the measured seconds; latency per request, at the client, "
        "in milliseconds. Only requests answered 200 with the expected JSON are counted.",
        "",
        markdown_table(header, rows),
        "",
        f"**ownervault / matched, all requests: {ratio:.2f}x** "
        f"({own['all']['per_s']:,.0f} against {matched['all']['per_s']:,.0f} requests/s)",
        "",
        markdown_table(
            [
                "store",
                "client errors",
                "kinds",
                "server errors",
                "worker threads used",
                "server CPU ms/request",
                "clients' CPU ms/request",
            ],
            error_rows,
        ),
        "",
        markdown_table(["slice", "requests/s", "load average (1 min)"], slice_rows),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print("## ownervault front-desk service benchmark", flush=True)
    print()
    print("\n".join(environment()))
    print()
    start = time.perf_counter()
    if args.split:
        split = run_split(args)
        print(f"run took {fmt_seconds(time.perf_counter() - start)}")
        print()
        print("\n".join(report_split(args, split)))
        print()
        print(f"{load_average()} at the end")
        if args.json is not None:
            raw = {"args": vars(args) | {"json": None}, **split}
            args.json.write_text(json.dumps(raw, indent=2, default=str))
        return 0
    result = run(args)
    print(f"run took {fmt_seconds(time.perf_counter() - start)}")
    print()
    print("\n".join(report(args, result)))
    print()
    print(f"{load_average()} at the end")
    if args.json is not None:
        raw = {"args": vars(args) | {"json": None}, **result}
        args.json.write_text(json.dumps(raw, indent=2, default=str))
    failed = any(result["errors"][s] for s in STORES) or any(
        result["server"][s]["errors"] for s in STORES
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
