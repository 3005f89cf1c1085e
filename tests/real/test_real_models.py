"""Real models trained elsewhere, checked against the programs that made them (docs/llama.md, "Real models:
proof"). Run by ctest (real_models); each check needs an outside input and is skipped, by name, when it
is absent; with none of them there the test reports SKIPPED (exit 77):
  - ../shared/data/real beside the checkout (or QTF_REAL_DATA): stories260K.bin + tok512.bin;
  - llama2.c's run.c binary (QTF_RUNC, else ../ext/llama2.c/run beside the checkout): greedy text, no
    prompt and "Once upon a time", equal byte for byte to qtf's on the llama2.c file;
  - a llama.cpp build (QTF_LLAMA_CPP, else ../ext/llama.cpp; build/bin/llama-simple, and
    llama-convert-llama2c-to-ggml there or at QTF_LLAMA2C_CONVERTER): stories260K converted to GGUF by
    llama.cpp's converter, greedy text of llama.cpp and of qtf reading that GGUF equal byte for byte
    (120 tokens: that converter writes a context of 128).
Takes about a second: stories260K runs 256 tokens in milliseconds."""
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BESIDE = os.path.dirname(ROOT)
QTF = os.environ.get("QTF_BIN", os.path.join(ROOT, "build", "qtf"))
REAL = os.environ.get("QTF_REAL_DATA", os.path.join(BESIDE, "shared", "data", "real"))
RUNC = os.environ.get("QTF_RUNC", os.path.join(BESIDE, "ext", "llama2.c", "run"))
LLAMA = os.environ.get("QTF_LLAMA_CPP", os.path.join(BESIDE, "ext", "llama.cpp"))
PROMPT = "Once upon a time"


def out(cmd):
    p = subprocess.run(cmd, capture_output=True, timeout=120)
    if p.returncode != 0:
        raise AssertionError("exit %d: %s\n%s" % (p.returncode, " ".join(cmd), p.stderr.decode(errors="replace")))
    return p.stdout.decode("utf-8", errors="replace")


def chomp(s):
    """run.c, llama-simple and qtf each end their output with one newline of their own."""
    return s[:-1] if s.endswith("\n") else s


def check(name, f):
    """One comparison: f() -> (qtf's text, the reference text); a program that fails is a failure."""
    try:
        got, want = f()
    except (AssertionError, subprocess.TimeoutExpired) as e:
        print("FAILED  %s: %s" % (name, str(e).strip().splitlines()[-1] if str(e).strip() else e))
        return False
    return same(name, got, want)


def same(name, got, want):
    if got == want:
        print("ok      %s (%d bytes equal)" % (name, len(want.encode())))
        return True
    i = next((i for i in range(min(len(got), len(want))) if got[i] != want[i]), min(len(got), len(want)))
    print("FAILED  %s: first difference at character %d: qtf %r, reference %r" % (name, i, got[i:i + 60], want[i:i + 60]))
    return False


def main():
    bin_, tok = os.path.join(REAL, "stories260K", "stories260K.bin"), os.path.join(REAL, "stories260K", "tok512.bin")
    if not (os.path.exists(bin_) and os.path.exists(tok)):
        print("SKIPPED: no real models at %s (set QTF_REAL_DATA)" % REAL)
        return 77
    model = ["-m", bin_, "--tokenizer", tok]
    results = []
    if os.access(RUNC, os.X_OK):
        # run.c: 256 positions from BOS; it prints one piece per position after the first, then "\n".
        # qtf's -n counts generated tokens: 256 minus the prompt's tokens after BOS.
        def greedy(rc_args, q_args):
            want = out([RUNC, bin_, "-z", tok, "-t", "0"] + rc_args)
            got = out([QTF, "run"] + model + q_args + ["--temp", "0", "-q"])
            return chomp(got), chomp(want)

        results.append(check("stories260K greedy from BOS: qtf = run.c", lambda: greedy([], ["-p", "", "-n", "256"])))

        def after_prompt():
            n_prompt = len(json.loads(out([QTF, "tokenize"] + model + ["--ids", PROMPT])))  # "[1, ...]", BOS included
            return greedy(["-i", PROMPT], ["-p", PROMPT, "-n", str(257 - n_prompt)])

        results.append(check("stories260K greedy after %r: qtf = run.c" % PROMPT, after_prompt))
    else:
        print("skipped stories260K against run.c: no run.c binary at %s (set QTF_RUNC)" % RUNC)
    conv = os.environ.get("QTF_LLAMA2C_CONVERTER", os.path.join(LLAMA, "build", "bin", "llama-convert-llama2c-to-ggml"))
    simple = os.path.join(LLAMA, "build", "bin", "llama-simple")
    if os.access(conv, os.X_OK) and os.access(simple, os.X_OK):
        def gguf_text():
            with tempfile.TemporaryDirectory() as tmp:
                gguf = os.path.join(tmp, "stories260K.gguf")
                out([conv, "--copy-vocab-from-model", tok, "--llama2c-model", bin_, "--llama2c-output-model", gguf])
                want = out([simple, "-m", gguf, "-n", "120", PROMPT])
                want = want[want.find(PROMPT):]  # llama-simple echoes BOS as "<s>" and the first "▁" as a space
                got = out([QTF, "run", "-m", gguf, "-p", PROMPT, "-n", "120", "--temp", "0", "-q"])
                return chomp(got), chomp(want)

        results.append(check("stories260K GGUF (llama.cpp's converter): qtf = llama.cpp", gguf_text))
    else:
        print("skipped stories260K GGUF against llama.cpp: no llama.cpp build at %s (set QTF_LLAMA_CPP)" % LLAMA)
    if not results:
        print("SKIPPED: none of the outside programs is there")
        return 77
    print("%d passed, %d failed" % (results.count(True), results.count(False)))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
