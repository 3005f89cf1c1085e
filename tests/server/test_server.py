"""qtf serve end to end with real clients: Python's standard library (http.client) and curl, on an ephemeral
loopback port (parallel ctest runs do not collide). Run by ctest (server_api) with QTF_BIN set; by hand:
  QTF_BIN=build/qtf /usr/bin/python3 tests/server/test_server.py
"""
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QTF_BIN = os.environ.get("QTF_BIN", os.path.join(ROOT, "build", "qtf"))
MODEL = os.path.join(ROOT, "models", "shakespeare-qtf.qtf")


class Server:
    """`qtf serve --port 0` in the background; .port is the port it printed."""

    def __init__(self, *flags):
        self.proc = subprocess.Popen([QTF_BIN, "serve", "-m", MODEL, "--port", "0", *flags], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError("qtf serve did not start: " + line + self.proc.stdout.read())
        self.port = int(m.group(1))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        out = self.proc.stdout.read()
        self.proc.stdout.close()
        return self.proc.wait(timeout=20), out

    def request(self, method, path, body=None, raw=None, headers=None):
        """(status, headers, body bytes)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            data = raw if raw is not None else (json.dumps(body) if body is not None else None)
            conn.request(method, path, data, headers or {"Content-Type": "application/json"})
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def post(self, path, body=None, raw=None):
        status, headers, data = self.request("POST", path, body, raw)
        return status, headers, json.loads(data)

    def stream(self, path, body):
        """Server-sent events of a streaming request: (status, content type, list of decoded events)."""
        status, headers, data = self.request("POST", path, dict(body, stream=True))
        events = []
        for block in data.decode("utf-8").split("\n\n"):
            if block.startswith("data: "):
                events.append("[DONE]" if block[6:] == "[DONE]" else json.loads(block[6:]))
        return status, headers.get("Content-Type", ""), events


def cli_greedy(prompt, n):
    out = subprocess.run([QTF_BIN, "run", "-m", MODEL, "-p", prompt, "-n", str(n), "--temp", "0"], check=True,
                         capture_output=True).stdout.decode()
    return out.rstrip("\n")[len(prompt):]


class ServeApi(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = Server("--parallel", "2", "--max-body", "4096", "--max-tokens", "512")

    @classmethod
    def tearDownClass(cls):
        code, out = cls.s.stop()
        assert code == 0 and "stopped" in out, (code, out)

    def test_health_and_models(self):
        status, _, body = self.s.request("GET", "/health")
        h = json.loads(body)
        self.assertEqual((status, h["status"], h["slots"], h["n_ctx"]), (200, "ok", 2, 256))
        status, _, body = self.s.request("GET", "/v1/models")
        self.assertEqual(json.loads(body)["data"][0]["id"], "shakespeare-qtf.qtf")

    def test_completion_is_the_cli_greedy_text(self):
        status, _, r = self.s.post("/v1/completions", {"prompt": "ROMEO:", "max_tokens": 40, "temperature": 0})
        self.assertEqual(status, 200)
        self.assertEqual(r["object"], "text_completion")
        c = r["choices"][0]
        self.assertEqual(c["text"], cli_greedy("ROMEO:", 40))
        self.assertEqual(c["finish_reason"], "length")
        self.assertEqual(r["usage"], {"prompt_tokens": 6, "completion_tokens": 40, "total_tokens": 46})
        self.assertEqual(r["qtf"]["forward_passes"], 6 + 39)
        self.assertGreater(r["qtf"]["mean_rank"], 0)
        self.assertGreater(r["qtf"]["energy_J"], 0)

    def test_streaming_gives_the_same_text(self):
        body = {"prompt": "JULIET:", "max_tokens": 50, "temperature": 0}
        _, _, whole = self.s.post("/v1/completions", body)
        status, ctype, events = self.s.stream("/v1/completions", body)
        self.assertEqual(status, 200)
        self.assertTrue(ctype.startswith("text/event-stream"))
        self.assertEqual(events[-1], "[DONE]")
        self.assertEqual(events[-2]["choices"][0]["finish_reason"], "length")
        self.assertTrue(all(e["choices"][0]["finish_reason"] is None for e in events[:-2]))
        self.assertEqual("".join(e["choices"][0]["text"] for e in events[:-1]), whole["choices"][0]["text"])
        self.assertGreater(len(events), 10)  # token by token, not one block

    def test_chat_plain_and_streaming(self):
        body = {"messages": [{"role": "system", "content": "A play."}, {"role": "user", "content": "Who art thou?"}],
                "max_tokens": 60, "temperature": 0}
        status, _, r = self.s.post("/v1/chat/completions", body)
        self.assertEqual(status, 200)
        self.assertEqual(r["object"], "chat.completion")
        msg = r["choices"][0]["message"]
        self.assertEqual(msg["role"], "assistant")
        self.assertNotIn("\n\n", msg["content"])  # a turn ends at a blank line
        status, _, events = self.s.stream("/v1/chat/completions", body)
        self.assertEqual(events[0]["choices"][0]["delta"], {"role": "assistant", "content": ""})
        self.assertEqual(events[0]["object"], "chat.completion.chunk")
        text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1])
        self.assertEqual(text, msg["content"])
        self.assertEqual(events[-2]["choices"][0]["finish_reason"], r["choices"][0]["finish_reason"])

    def test_stop_sequences_end_the_text_and_are_left_out(self):
        full = cli_greedy("ROMEO:", 40)
        stop = full[full.index("the") + 1:full.index("the") + 3]  # "he": starts inside the text
        want = full[:full.index(stop)]
        body = {"prompt": "ROMEO:", "max_tokens": 40, "temperature": 0, "stop": [stop, "zzz"]}
        _, _, r = self.s.post("/v1/completions", body)
        self.assertEqual((r["choices"][0]["text"], r["choices"][0]["finish_reason"]), (want, "stop"))
        _, _, events = self.s.stream("/v1/completions", body)
        self.assertEqual("".join(e["choices"][0]["text"] for e in events[:-1]), want)

    def test_bad_requests_are_clear_4xx(self):
        cases = [
            (dict(raw='{"prompt": "ROMEO:", '), 400, "not valid JSON", None),
            (dict(raw='["ROMEO:"]'), 400, "JSON object", None),
            (dict(body={"prompt": "ROMEO:", "max_tokns": 3}), 400, "unknown field 'max_tokns'", "max_tokns"),
            (dict(body={"max_tokens": 3}), 400, "'prompt' is required", "prompt"),
            (dict(body={"prompt": 5}), 400, "'prompt' must be a string", "prompt"),
            (dict(body={"prompt": "ROMEO:", "temperature": "hot"}), 400, "'temperature' must be a number", "temperature"),
            (dict(body={"prompt": "ROMEO:", "max_tokens": 100000}), 400, "'max_tokens' must be an integer", "max_tokens"),
            (dict(body={"prompt": "ROMEO:", "n": 2}), 400, "one choice", "n"),
            (dict(body={"prompt": "ROMEO: " * 60}), 400, "context holds 256", "prompt"),
            (dict(body={"prompt": "x" * 8000}), 413, "too large", None),
            (dict(body={"prompt": "ROMEO:", "stop": [""]}), 400, "'stop'", "stop"),
            (dict(body={"messages": []}, path="/v1/chat/completions"), 400, "'messages'", "messages"),
            (dict(body={"messages": [{"role": "king", "content": "x"}]}, path="/v1/chat/completions"), 400, "role",
             "messages"),
            (dict(body={"prompt": "x"}, path="/v1/nothing"), 404, "no such endpoint", None),
        ]
        for kw, want_status, want_text, want_param in cases:
            with self.subTest(case=kw):
                path = kw.pop("path", "/v1/completions")
                status, _, data = self.s.request("POST", path, kw.get("body"), kw.get("raw"))
                self.assertEqual(status, want_status)
                err = json.loads(data)["error"]
                self.assertIn(want_text, err["message"])
                self.assertEqual(err["param"], want_param)
        status, _, _ = self.s.request("GET", "/v1/completions")
        self.assertIn(status, (404, 405))

    def test_metrics_count_ranks_routes_and_energy(self):
        def scrape():
            _, _, body = self.s.request("GET", "/metrics")
            vals = {}
            for line in body.decode().splitlines():
                if line and not line.startswith("#"):
                    k, v = line.rsplit(" ", 1)
                    vals[k] = float(v)
            return vals
        before = scrape()
        self.s.post("/v1/completions", {"prompt": "ROMEO:", "max_tokens": 20, "temperature": 0})
        after = scrape()
        d = lambda k: after.get(k, 0) - before.get(k, 0)  # noqa: E731
        self.assertEqual(d("qtf_forward_passes_total"), 6 + 19)
        self.assertEqual(d('qtf_requests_total{endpoint="completions",status="200"}'), 1)
        for layer in range(3):  # every pass of every layer has one rank and one route
            ranks = sum(v - before.get(k, 0) for k, v in after.items()
                        if k.startswith(f'qtf_layer_rank_total{{layer="{layer}",'))
            routes = sum(v - before.get(k, 0) for k, v in after.items()
                         if k.startswith(f'qtf_layer_route_total{{layer="{layer}",'))
            self.assertEqual((ranks, routes), (25, 25))
        self.assertGreater(d('qtf_energy_joules_total{profile="cpu_xeon"}'), 0)
        self.assertGreater(d("qtf_flops_total"), 0)
        self.assertEqual(after["qtf_slots"], 2)

    def test_a_second_server_cannot_take_the_port(self):
        p = subprocess.run([QTF_BIN, "serve", "-m", MODEL, "--port", str(self.s.port)], capture_output=True,
                           text=True, timeout=20)
        self.assertEqual(p.returncode, 1)
        self.assertIn("cannot listen", p.stderr)

    def test_curl(self):
        url = f"http://127.0.0.1:{self.s.port}"
        out = subprocess.run(["curl", "-sS", "-N", url + "/v1/completions", "-H", "Content-Type: application/json",
                              "-d", '{"prompt":"ROMEO:","max_tokens":12,"temperature":0,"stream":true}'],
                             check=True, capture_output=True, text=True).stdout
        self.assertTrue(out.rstrip().endswith("data: [DONE]"))
        text = "".join(json.loads(l[6:])["choices"][0]["text"] for l in out.splitlines()
                       if l.startswith("data: {"))
        self.assertEqual(text, cli_greedy("ROMEO:", 12))
        out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", url + "/v1/completions",
                              "-d", "{nope"], check=True, capture_output=True, text=True).stdout
        self.assertEqual(out, "400")


class ServeBusy(unittest.TestCase):
    def test_full_queue_gets_503_and_the_rest_complete(self):
        s = Server("--parallel", "1", "--queue", "0")
        try:
            barrier, results = threading.Barrier(24), []

            def one():
                barrier.wait()
                try:
                    results.append(s.request("POST", "/v1/completions",
                                             {"prompt": "ROMEO:", "max_tokens": 250, "temperature": 0}))
                except OSError as e:  # a connection error is a failure, not a missing result
                    results.append((repr(e), {}, b""))

            threads = [threading.Thread(target=one) for _ in range(24)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            statuses = sorted(str(r[0]) for r in results)
            self.assertEqual(len(results), 24)
            self.assertEqual(set(statuses), {"200", "503"}, statuses)
            for status, headers, body in results:
                if status == 503:
                    self.assertEqual(headers.get("Retry-After"), "1")
                    self.assertIn("busy", json.loads(body)["error"]["message"])
                else:
                    self.assertEqual(json.loads(body)["usage"]["completion_tokens"], 250)
        finally:
            self.assertEqual(s.stop()[0], 0)


class ServeLoad(unittest.TestCase):
    """tools/server/loadtest.py: 8 streams for 3 s against 4 contexts (the rest wait in the queue)."""

    def test_parallel_streams_all_complete(self):
        s = Server("--parallel", "4", "--queue", "16")
        try:
            out = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "server", "loadtest.py"), "--url",
                                  f"http://127.0.0.1:{s.port}", "--streams", "8", "--seconds", "3"],
                                 capture_output=True, text=True, timeout=120)
            print(out.stdout, end="")
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertIn("every response completed", out.stdout)
            _, _, body = s.request("GET", "/metrics")
            self.assertIn("qtf_client_disconnects_total 0", body.decode())
        finally:
            self.assertEqual(s.stop()[0], 0)


if __name__ == "__main__":
    unittest.main()
