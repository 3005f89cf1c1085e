// The official OpenAI Node client (npm's `openai`, installed by tools/setup.sh into BUILD/node) against
// `qtf serve` on loopback: models, completions, chat, streaming, stop, seed, n, logprobs and errors.
// Run by ctest (server_openai_node) with QTF_BIN and QTF_NODE_MODULES set; exits 77 (skipped, with the
// reason printed) when the client package is not installed.
"use strict";
const assert = require("node:assert/strict");
const { spawn } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

const root = path.resolve(__dirname, "..", "..");
const qtf = process.env.QTF_BIN || path.join(root, "build", "qtf");
const model = path.join(root, "models", "shakespeare-qtf.qtf");
const modules = [process.env.QTF_NODE_MODULES, path.join(root, "build", "node", "node_modules")].filter(Boolean);
const found = modules.map((d) => path.resolve(d)).find((d) => fs.existsSync(path.join(d, "openai", "package.json")));
if (!found) {
  console.log(`SKIPPED: the openai npm package is not in ${modules.join(" or ")} ` +
              "(tools/setup.sh installs it; it needs the npm registry)");
  process.exit(77);
}
const OpenAI = require(path.join(found, "openai"));

// Starts `qtf serve --port 0 ...` and resolves with { proc, url } once it prints its address.
function serve(...flags) {
  return new Promise((resolve, reject) => {
    const proc = spawn(qtf, ["serve", "-m", model, "--port", "0", "--parallel", "2", ...flags]);
    let out = "";
    const timer = setTimeout(() => reject(new Error("qtf serve did not start: " + out)), 20000);
    proc.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, url: `http://127.0.0.1:${m[1]}/v1` });
      }
    });
    proc.on("exit", (code) => reject(new Error(`qtf serve exited ${code}: ${out}`)));
  });
}

async function collect(stream, pick) {
  let text = "", last = null, usage = null, chunks = 0;
  for await (const chunk of stream) {
    ++chunks;
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += pick(c) || "";
      if (c.finish_reason) last = c.finish_reason;
    }
  }
  return { text, last, usage, chunks };
}

async function main() {
  const { proc, url } = await serve();
  const { proc: keyed, url: keyedUrl } = await serve("--api-key", "sekrit");
  try {
    const client = new OpenAI({ baseURL: url, apiKey: "unused", maxRetries: 0, timeout: 30000 });
    const name = "shakespeare-qtf.qtf";

    // Models.
    const list = await client.models.list();
    assert.deepEqual(list.data.map((m) => m.id), [name]);
    assert.equal((await client.models.retrieve(name)).id, name);
    await assert.rejects(client.models.retrieve("gpt-4"), (e) => e instanceof OpenAI.NotFoundError && e.status === 404);

    // Completions, plain and streamed: the same greedy text.
    const base = { model: name, prompt: "ROMEO:", max_tokens: 30, temperature: 0 };
    const c = await client.completions.create(base);
    assert.equal(c.object, "text_completion");
    assert.equal(c.choices[0].finish_reason, "length");
    assert.equal(c.usage.completion_tokens, 30);
    const text = c.choices[0].text;
    assert.equal(text.length, 30);
    const s = await collect(await client.completions.create({ ...base, stream: true,
                                                              stream_options: { include_usage: true } }),
                            (ch) => ch.text);
    assert.equal(s.text, text);
    assert.ok(s.chunks > 10, "streamed token by token");
    assert.equal(s.usage.completion_tokens, 30);

    // Stop: the text ends before the first stop sequence, which is left out.
    const stop = text.trim()[2];
    const st = await client.completions.create({ ...base, stop: [stop] });
    assert.equal(st.choices[0].finish_reason, "stop");
    assert.equal(st.choices[0].text, text.slice(0, text.indexOf(stop)));

    // Seed: the same seed gives the same sample; n gives several choices.
    const sampled = { ...base, temperature: 1.0, seed: 42 };
    const a = await client.completions.create(sampled), b = await client.completions.create(sampled);
    assert.equal(a.choices[0].text, b.choices[0].text);
    const several = await client.completions.create({ ...sampled, n: 3 });
    assert.deepEqual(several.choices.map((x) => x.index), [0, 1, 2]);
    assert.equal(several.choices[0].text, a.choices[0].text);

    // Log probabilities.
    const lp = await client.completions.create({ ...base, max_tokens: 8, logprobs: 2 });
    assert.equal(lp.choices[0].logprobs.tokens.join(""), lp.choices[0].text);
    assert.ok(lp.choices[0].logprobs.token_logprobs.every((v) => v <= 0));
    assert.ok(lp.choices[0].logprobs.top_logprobs.every((t) => Object.keys(t).length === 2));

    // Chat, plain and streamed, with logprobs.
    const messages = [{ role: "system", content: "A play." }, { role: "user", content: "Who art thou?" }];
    const chat = await client.chat.completions.create({ model: name, messages, max_tokens: 40, temperature: 0,
                                                        logprobs: true, top_logprobs: 2 });
    const msg = chat.choices[0].message;
    assert.equal(msg.role, "assistant");
    assert.ok(msg.content.length > 0);
    assert.equal(chat.choices[0].logprobs.content.map((t) => t.token).join(""), msg.content);
    const cs = await collect(await client.chat.completions.create({ model: name, messages, max_tokens: 40,
                                                                    temperature: 0, stream: true }),
                             (ch) => ch.delta.content);
    assert.equal(cs.text, msg.content);
    assert.equal(cs.last, chat.choices[0].finish_reason);

    // Errors: 4xx as the client's typed errors, with the server's message.
    await assert.rejects(client.completions.create({ ...base, temperature: "hot" }),
                         (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && /temperature/.test(e.message));
    await assert.rejects(client.chat.completions.create({ model: name, messages: [] }),
                         (e) => e instanceof OpenAI.BadRequestError && /messages/.test(e.message));
    await assert.rejects(client.completions.create({ ...base, max_tokens: 10 ** 9 }),
                         (e) => e.status === 400 && e.param === "max_tokens");
    const wrong = new OpenAI({ baseURL: keyedUrl, apiKey: "nope", maxRetries: 0 });
    await assert.rejects(wrong.models.list(), (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
    const right = new OpenAI({ baseURL: keyedUrl, apiKey: "sekrit", maxRetries: 0 });
    assert.equal((await right.completions.create({ ...base, max_tokens: 3 })).choices[0].text, text.slice(0, 3));
    console.log(`openai ${require(path.join(found, "openai", "package.json")).version}: models, completions, ` +
                "chat, streaming, stop, seed, n, logprobs and errors as expected");
  } finally {
    proc.kill("SIGTERM");
    keyed.kill("SIGTERM");
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
