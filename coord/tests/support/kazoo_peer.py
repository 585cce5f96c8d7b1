#!/usr/bin/env python3
"""A kazoo (2.11.0, from PyPI) peer for the interoperability tests in node/tests/kazoo_interop.rs.

Each sub-command drives one kazoo recipe against the same ZooKeeper as our Rust recipes and
prints machine-readable lines on stdout (``<ts>`` = Unix time in microseconds):

  election HOSTS PATH ID HOLD_MS ROUNDS
      ROUNDS times: Election.run(lead), where lead prints ``LEADER <ts>`` and ``NODE <name>``,
      holds HOLD_MS (printing kazoo's ``contenders()`` half-way as ``CONTENDERS a,b``), prints
      ``RESIGN <ts>`` and returns (kazoo then deletes its node).
  counter HOSTS PATH N GO_FILE
      Waits until GO_FILE exists, prints ``START <ts>``, does N times ``Counter += 1``, and
      prints ``VALUE <v> <ts>``.
  barrier-wait HOSTS PATH TIMEOUT_S
      Barrier.wait(TIMEOUT_S); prints ``RELEASED <True|False> <ts>``.
  barrier-create-remove HOSTS PATH GO_FILE
      Barrier.create(); prints ``CREATED``; waits until GO_FILE exists; Barrier.remove();
      prints ``REMOVED <True|False> <ts>``.

Every command prints ``READY`` once connected and ``DONE`` at the end; any exception ends the
process with a traceback and a non-zero status (the test reports the log).
"""

import os
import sys
import time

from kazoo.client import KazooClient
from kazoo.recipe.barrier import Barrier
from kazoo.recipe.counter import Counter
from kazoo.recipe.election import Election


def ts():
    return time.time_ns() // 1000


def say(*words):
    print(*words, flush=True)


def election(zk, path, ident, hold_ms, rounds):
    e = Election(zk, path, ident)

    def lead():
        say("LEADER", ts())
        say("NODE", e.lock.node)
        time.sleep(hold_ms / 2000.0)
        say("CONTENDERS", ",".join(e.contenders()))
        time.sleep(hold_ms / 2000.0)
        say("RESIGN", ts())

    for _ in range(rounds):
        e.run(lead)


def wait_file(path):
    while not os.path.exists(path):
        time.sleep(0.01)


def counter(zk, path, n, go_file):
    c = Counter(zk, path)
    wait_file(go_file)
    say("START", ts())
    for _ in range(n):
        c += 1
    say("VALUE", c.value, ts())


def barrier_wait(zk, path, timeout_s):
    released = Barrier(zk, path).wait(timeout_s)
    say("RELEASED", released, ts())


def barrier_create_remove(zk, path, go_file):
    b = Barrier(zk, path)
    b.create()
    say("CREATED", ts())
    wait_file(go_file)
    say("REMOVED", b.remove(), ts())


def main(argv):
    cmd, hosts = argv[1], argv[2]
    zk = KazooClient(hosts=hosts, timeout=4.0)
    zk.start(timeout=30)
    say("READY")
    try:
        if cmd == "election":
            election(zk, argv[3], argv[4], int(argv[5]), int(argv[6]))
        elif cmd == "counter":
            counter(zk, argv[3], int(argv[4]), argv[5])
        elif cmd == "barrier-wait":
            barrier_wait(zk, argv[3], float(argv[4]))
        elif cmd == "barrier-create-remove":
            barrier_create_remove(zk, argv[3], argv[4])
        else:
            raise SystemExit("unknown command " + cmd)
    finally:
        zk.stop()
        zk.close()
    say("DONE")


if __name__ == "__main__":
    main(sys.argv)
