"""Connectivity probes for the policy tests, run inside pod namespaces.

serve ADDR PORT...          TCP and UDP echo servers on each port
probe TARGET...             TARGET = tcp:IP:PORT | udp:IP:PORT | icmp:IP
                            prints one JSON object {TARGET: true|false}
stream-udp DST PORT SECS    sends one numbered datagram a millisecond for
                            SECS from one socket; prints the numbers sent and
                            the numbers echoed back as JSON
stream-tcp DST PORT SECS    sends a steady byte stream over one connection
                            for SECS; prints bytes sent and the server's count
"""

import json
import socket
import subprocess
import sys
import threading
import time

TIMEOUT = 2.0


def serve(addr, ports):
    def tcp(port):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.listen(256)
        while True:
            c, _ = s.accept()
            threading.Thread(target=tcp_conn, args=(c,), daemon=True).start()

    def tcp_conn(c):
        # count what arrives; answer the count when the peer closes its side
        n = 0
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                n += len(d)
            c.sendall(str(n).encode())
        except OSError:
            pass
        finally:
            c.close()

    def udp(port):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((addr, port))
        while True:
            d, peer = s.recvfrom(2048)
            s.sendto(d, peer)

    for p in ports:
        threading.Thread(target=tcp, args=(p,), daemon=True).start()
        threading.Thread(target=udp, args=(p,), daemon=True).start()
    print("ready", flush=True)
    while True:
        time.sleep(3600)


def probe_one(t):
    kind, rest = t.split(":", 1)
    if kind == "icmp":
        r = subprocess.run(
            ["ping", "-c", "2", "-i", "0.3", "-W", "1", "-q", rest],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return r.returncode == 0
    ip, port = rest.rsplit(":", 1)
    port = int(port)
    if kind == "tcp":
        try:
            s = socket.create_connection((ip, port), timeout=TIMEOUT)
            s.close()
            return True
        except ConnectionRefusedError:
            # a reset from the peer: the packets got through
            return True
        except OSError:
            return False
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(TIMEOUT / 3)
    for _ in range(3):
        try:
            s.sendto(b"probe", (ip, port))
            d, _ = s.recvfrom(2048)
            if d == b"probe":
                return True
        except OSError:
            pass
    return False


def probe(targets):
    out = {}

    def run(t):
        out[t] = probe_one(t)

    ts = [threading.Thread(target=run, args=(t,)) for t in targets]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(json.dumps(out))


def stream_udp(dst, port, secs):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((dst, port))
    s.setblocking(False)
    got = set()
    sent = 0
    end = time.time() + secs
    while time.time() < end:
        s.send(sent.to_bytes(4, "big"))
        sent += 1
        time.sleep(0.001)
        try:
            while True:
                got.add(int.from_bytes(s.recv(64)[:4], "big"))
        except BlockingIOError:
            pass
    s.settimeout(1.0)
    try:
        while True:
            got.add(int.from_bytes(s.recv(64)[:4], "big"))
    except OSError:
        pass
    missing = [i for i in range(sent) if i not in got]
    print(json.dumps({"sent": sent, "echoed": len(got), "missing": missing[:20]}))


def stream_tcp(dst, port, secs):
    s = socket.create_connection((dst, port), timeout=10)
    chunk = bytes(range(256)) * 16
    sent = 0
    end = time.time() + secs
    while time.time() < end:
        s.sendall(chunk)
        sent += len(chunk)
        time.sleep(0.002)
    s.shutdown(socket.SHUT_WR)
    s.settimeout(10)
    reply = b""
    while True:
        d = s.recv(64)
        if not d:
            break
        reply += d
    print(json.dumps({"sent": sent, "received": int(reply or b"-1")}))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "serve":
        serve(sys.argv[2], [int(p) for p in sys.argv[3:]])
    elif cmd == "probe":
        probe(sys.argv[2:])
    elif cmd == "stream-udp":
        stream_udp(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    elif cmd == "stream-tcp":
        stream_tcp(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    else:
        sys.exit("unknown command " + cmd)
