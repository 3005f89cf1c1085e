"""Runs the README's "Ways in" examples as written: every fenced block after `<!-- ways-in: file PATH -->`
is saved to PATH, every block after `<!-- ways-in: run [expect="REGEX"] -->` runs in bash (-e -o pipefail),
in order, in a scratch folder that looks like the repository root after a build (build/ and models/ are
links, python/ a copy) with $HOME inside it; the output must match `expect` (a Python regex, DOTALL).
The HTTP example's port is replaced by a free one. A broken example fails the test. Afterwards the C
example is built again with ASan and given a long prompt and one longer than the context (check_hello).
  usage: test_ways_in.py SOURCE_DIR BUILD_DIR WORK_DIR"""
import os
import re
import shutil
import socket
import subprocess
import sys

MARK = re.compile(r'^<!-- ways-in: (file (?P<path>\S+)|run(?: expect="(?P<expect>[^\n]*)")?) -->\n```[a-z]*\n(?P<body>.*?)^```$',
                  re.M | re.S)
WAYS = ("**CLI**", "**C**", "**C++**", "**Python**", "**HTTP**")


def section(readme):
    m = re.search(r"^## Ways in\n(.*?)(?=^## )", readme, re.M | re.S)
    if not m:
        sys.exit("README.md has no '## Ways in' section")
    return m.group(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    src, build, work = sys.argv[1:4]
    text = section(open(os.path.join(src, "README.md"), encoding="utf-8").read())
    missing = [w for w in WAYS if w not in text]
    if missing:
        sys.exit(f"the Ways in section lacks {missing}")
    blocks = list(MARK.finditer(text))
    runs = [b for b in blocks if b.group("path") is None]
    if len(runs) < 5:
        sys.exit(f"expected at least 5 runnable examples, found {len(runs)}")

    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.join(work, "home"))
    os.symlink(os.path.abspath(build), os.path.join(work, "build"))
    os.symlink(os.path.join(src, "models"), os.path.join(work, "models"))
    shutil.copytree(os.path.join(src, "python"), os.path.join(work, "python"),
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    env = {"HOME": os.path.join(work, "home"), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1"}
    port = str(free_port())

    for i, b in enumerate(blocks):
        body = b.group("body")
        if b.group("path"):
            path = os.path.join(work, b.group("path"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(body)
            print(f"== wrote {b.group('path')}")
            continue
        script = body.replace("8080", port)
        print(f"== run:\n{script}", end="")
        p = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=work, env=env, capture_output=True,
                           text=True, errors="replace", timeout=180)
        out = p.stdout + p.stderr
        print(out)
        if p.returncode != 0:
            sys.exit(f"example {i} failed with exit status {p.returncode}")
        expect = b.group("expect")
        if expect and not re.search(expect, out, re.S):
            sys.exit(f"example {i}: output does not match {expect!r}")
    check_hello(work, env)
    print(f"README Ways in: {len(runs)} examples ran, {len(blocks) - len(runs)} files written: passed")


def check_hello(work, env):
    """The C example must hold up when a reader changes its prompt: built again with ASan, a prompt of
    over 100 tokens (it once overflowed a 64-entry array) gives the greedy text `qtf run` gives, and one
    longer than the context ends with the library's message, not a crash."""
    if not os.path.exists(os.path.join(work, "hello.c")):
        sys.exit("the C example hello.c was not written")
    build = ("cc -fsanitize=address,undefined -fno-sanitize-recover=all -g hello.c "
             "$(PKG_CONFIG_PATH=~/.local/lib/pkgconfig pkg-config --cflags --libs qtf) -Wl,-rpath,$HOME/.local/lib "
             "-o hello_asan")
    subprocess.run(["bash", "-e", "-c", build], cwd=work, env=env, check=True, timeout=120)

    def hello(prompt):
        return subprocess.run([os.path.join(work, "hello_asan"), prompt], cwd=work, env=env, capture_output=True,
                              text=True, errors="replace", timeout=60)

    prompt = "ROMEO:\nI pray thee, good Mercutio, let's retire: the day is hot, the Capulets abroad." + " Ay," * 8
    cli = subprocess.run([os.path.join(work, "build", "qtf"), "run", "-m", "models/shakespeare-qtf.qtf", "-p", prompt,
                          "-n", "40", "--temp", "0", "--quiet"], cwd=work, env=env, capture_output=True, text=True,
                         errors="replace", timeout=60)
    p = hello(prompt)
    print(f"== hello_asan with a {len(prompt)}-character prompt: exit {p.returncode}\n{p.stdout}{p.stderr}")
    if p.returncode != 0 or cli.returncode != 0 or prompt + p.stdout.rstrip("\n") != cli.stdout.rstrip("\n"):
        sys.exit(f"hello.c with a long prompt: exit {p.returncode}, not the text of qtf run:\n{cli.stdout}")
    p = hello("A" * 300)  # more tokens than the model's 256 positions
    print(f"== hello_asan with a 300-token prompt: exit {p.returncode}\n{p.stderr}")
    if p.returncode != 1 or "qtf: qtf_decode: the tokens do not fit in the context" not in p.stderr:
        sys.exit("hello.c with a prompt longer than the context must end with the library's message")


if __name__ == "__main__":
    main()
