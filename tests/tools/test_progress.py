"""Progress of `qtf eval` (tools/cli/progress.h): a redrawn bar with rate and ETA on a terminal (a pty
here), plain lines when QTF_PROGRESS=1 (and, after 2 s, whenever stderr is not a terminal), nothing for a
short job in a log or with QTF_PROGRESS=0; stdout stays clean. Run by ctest (cli_eval_progress)."""
import json
import os
import pty
import re
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QTF_BIN = os.environ.get("QTF_BIN", os.path.join(ROOT, "build", "qtf"))
MODEL = os.path.join(ROOT, "tests", "fixtures", "q4_k3_daruan_adaptive_qattn_tied.qtf")
TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n" * 40


def run(args, progress=None, tty=False):
    env = dict(os.environ)
    env.pop("QTF_PROGRESS", None)
    if progress is not None:
        env["QTF_PROGRESS"] = progress
    cmd = [QTF_BIN, "eval", "-m", MODEL, *args]
    if not tty:
        p = subprocess.run(cmd, capture_output=True, env=env, check=True)
        return p.stdout.decode(), p.stderr.decode()
    master, slave = pty.openpty()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    err = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the pty closes when the child exits
            break
        if not chunk:
            break
        err += chunk
    out = p.stdout.read().decode()
    p.stdout.close()
    os.close(master)
    assert p.wait() == 0
    return out, err.decode()


class Progress(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.text = os.path.join(cls.tmp.name, "text.txt")
        with open(cls.text, "w") as f:
            f.write(TEXT)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_plain_lines(self):
        out, err = run(["-f", self.text, "--max-tokens", "800", "--json"], progress="1")
        json.loads(out)  # stdout is still just the result
        lines = [l for l in err.splitlines() if l.startswith("qtf eval:")]
        pcts = [int(re.match(r"qtf eval: +(\d+)%", l).group(1)) for l in lines]
        self.assertGreaterEqual(len(pcts), 5, err)
        self.assertEqual(pcts, sorted(pcts))
        self.assertIn("ETA", lines[0])
        self.assertRegex(lines[-1], r"100% \((\d+)/\1 tok\), \d+ tok/s, took \d+:\d\d")
        self.assertNotIn("\r", err)

    def test_quiet_in_a_log_for_a_short_job_and_when_off(self):
        self.assertEqual(run(["-f", self.text, "--max-tokens", "200"])[1], "")
        self.assertEqual(run(["-f", self.text, "--max-tokens", "200"], progress="0", tty=True)[1], "")

    def test_bar_on_a_terminal(self):
        out, err = run(["-f", self.text, "--max-tokens", "800"], tty=True)
        self.assertIn("perplexity", out)
        frames = err.split("\r")
        self.assertGreaterEqual(len(frames), 2, err)
        self.assertRegex(err, r"\[#* *\] +\d+% \d+/\d+ tok +\d+ tok/s +ETA")
        self.assertRegex(frames[-2], r"\[#{24}\] 100% .* took \d+:\d\d")  # the final frame, then a newline
        self.assertTrue(err.endswith("\n"))

    def test_sweep_counts_every_pass(self):
        prefix = os.path.join(self.tmp.name, "sw")
        out, err = run(["-f", self.text, "--max-tokens", "300", "--sweep", "--thetas", "0.2,0.6", "--alphas", "1",
                        "-o", prefix], progress="1")
        lines = [l for l in err.splitlines() if l.startswith("qtf eval --sweep:")]
        self.assertTrue(any("theta 0.2 alpha 1" in l for l in lines), err)
        self.assertTrue(any("theta 0.6 alpha 1" in l for l in lines), err)
        total = int(re.search(r"\(\d+/(\d+) tok\)", lines[0]).group(1))
        self.assertGreaterEqual(total, 3 * 290)  # the trained point and two grid points, ~299 targets each
        self.assertRegex(lines[-1], r"100% .* took")

    def test_final_line_shows_the_final_loss(self):
        out, err = run(["-f", self.text, "--max-tokens", "800", "--json"], progress="1")
        loss = json.loads(out)["loss"]
        last = [l for l in err.splitlines() if l.startswith("qtf eval:")][-1]
        shown = float(re.search(r"loss (\d+\.\d+)", last).group(1))
        self.assertEqual("%.4f" % loss, "%.4f" % shown, last)  # not the last periodic one

    def test_only_the_needed_text_is_tokenized(self):
        # Bytes with no token in this vocabulary far past the first 200 tokens: tokenizing them would warn.
        path = os.path.join(self.tmp.name, "long.txt")
        with open(path, "wb") as f:
            f.write((TEXT * 40).encode() + b"\x01\x02\x03\n" * 100)
        out, err = run(["-f", path, "--max-tokens", "200", "--json"], progress="0")
        r = json.loads(out)
        self.assertEqual(r["tokens"], 200)
        self.assertIsNone(r["text_tokens"])  # the text was not tokenized to its end
        self.assertNotIn("no token", err)
        # The tokens scored are the whole text's first 200: the same loss as the text cut well before the junk.
        short = os.path.join(self.tmp.name, "short.txt")
        with open(short, "w") as f:
            f.write(TEXT * 2)
        r2 = json.loads(run(["-f", short, "--max-tokens", "200", "--json"], progress="0")[0])
        self.assertEqual(r2["loss"], r["loss"])
        self.assertIsInstance(r2["text_tokens"], int)


if __name__ == "__main__":
    unittest.main()
