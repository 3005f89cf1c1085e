"""qtf serve while its model file is overwritten in place: shortened (a mapped model faults, SIGBUS) and
rewritten longer with other bytes (a mapped model computes garbage and answers 200). The server reads the
model into memory by default, so both leave its answers unchanged; with --mmap it is the documented risk.
And a model with a NaN weight: an error naming the cause, not token 0 forever with 200.
Run by ctest (serve_model_file_changes) with QTF_BIN set; by hand:
  QTF_BIN=build/qtf /usr/bin/python3 tests/reliability/test_serve_model_file.py
"""
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QTF_BIN = os.environ.get("QTF_BIN", os.path.join(ROOT, "build", "qtf"))
MODEL = os.path.join(ROOT, "models", "shakespeare-qtf.qtf")
BODY = {"prompt": "ROMEO:", "max_tokens": 24, "temperature": 0}


def complete(port, raw=False):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/v1/completions", json.dumps(BODY), {"Content-Type": "application/json"})
        r = conn.getresponse()
        body = r.read()
        return r.status, body.decode("utf-8", "replace") if raw else json.loads(body)["choices"][0]["text"]
    finally:
        conn.close()


def serve(path):
    proc = subprocess.Popen([QTF_BIN, "serve", "-m", path, "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    m = re.search(r"http://127\.0\.0\.1:(\d+)", proc.stdout.readline())
    if not m:
        proc.kill()
        sys.exit("qtf serve did not start: " + proc.stdout.read())
    return proc, int(m.group(1))


def nan_model(path):
    """The shipped model with one NaN in the final norm's bias (tools/train's reader and writer)."""
    sys.path.insert(0, os.path.join(ROOT, "tools", "train"))
    import numpy as np
    import qtf_format
    meta, tensors = qtf_format.read_qtf(MODEL)
    tensors = {k: v.copy() for k, v in tensors.items()}
    tensors["lnf.b"][3] = np.nan
    qtf_format.write_qtf(path, meta, list(tensors.items()))


def main():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "nan.qtf")
        nan_model(path)
        proc, port = serve(path)
        try:
            status, text = complete(port, raw=True)
            print(f"a model with a NaN weight: {status} {text}")
            if status != 500 or "non-finite logit" not in text:
                sys.exit("a model computing NaN logits must answer an error naming them")
        finally:
            proc.kill()
            proc.wait()

        path = os.path.join(d, "model.qtf")
        shutil.copyfile(MODEL, path)
        proc, port = serve(path)
        try:
            status, want = complete(port)
            if status != 200 or not want:
                sys.exit(f"first completion failed: {status}")
            size = os.path.getsize(path)
            with open(path, "r+b") as f:  # in place, same inode: shorter
                f.truncate(size // 3)
            status, text = complete(port)
            print(f"after truncating the file to {size // 3} bytes: {status} {text!r}")
            if proc.poll() is not None or (status, text) != (200, want):
                sys.exit(f"the server died (exit {proc.poll()}) or changed its answer after the file was truncated")
            with open(path, "r+b") as f:  # in place, same inode: other bytes, longer
                f.write(os.urandom(size + 4096))
            status, text = complete(port)
            print(f"after overwriting the file with {size + 4096} random bytes: {status} {text!r}")
            if proc.poll() is not None or (status, text) != (200, want):
                sys.exit("the server died or changed its answer after the file was overwritten")
        finally:
            proc.kill()
            proc.wait()
    print("serve model file changes: the answers stayed the same: passed")


if __name__ == "__main__":
    main()
