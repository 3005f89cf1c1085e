#!/usr/bin/env node
// Token ids of TinyStories text from Hugging Face's own tokenizer library (the `tokenizers` npm package,
// the Rust library's Node binding), as the outside check of qtf's HF BPE (docs/llama.md).
//
//   NODE_PATH=DIR/node_modules node tools/convert/hf_tokenize.js TOKENIZER_JSON TEXT OUT.json [STORIES]
//
// TEXT is split into stories at "<|endoftext|>", newlines stripped from both ends of each (as
// tools/convert/hf_reference.py's stories() does); STORIES picks them (e.g. "0-39,443,456"; default all).
// Each story is encoded with the tokenizer's post-processor (add_special_tokens: BOS first for
// TinyStories-656K). Writes {"tokenizer", "library", "stories": [text], "index": [i], "ids": [[id]]}.
// `npm install tokenizers` (0.23.2 made the committed fixture) provides the module; qtf needs none of this.
const fs = require('fs');
const { Tokenizer } = require('tokenizers');

function pick(spec, n) {
  if (!spec) return [...Array(n).keys()];
  const out = [];
  for (const part of spec.split(',')) {
    const [a, b] = part.split('-').map(Number);
    for (let i = a; i <= (b === undefined ? a : b); i++) if (i < n) out.push(i);
  }
  return out;
}

(async () => {
  const [tokPath, textPath, outPath, spec] = process.argv.slice(2);
  if (!outPath) {
    console.error('usage: hf_tokenize.js TOKENIZER_JSON TEXT OUT.json [STORIES]');
    process.exit(2);
  }
  const tk = Tokenizer.fromFile(tokPath);
  const text = fs.readFileSync(textPath, 'utf8');
  const all = text.split('<|endoftext|>').map((s) => s.replace(/^\n+|\n+$/g, '')).filter((s) => s.length);
  const index = pick(spec, all.length);
  const stories = [], ids = [];
  for (const i of index) {
    const e = await tk.encode(all[i]);
    stories.push(all[i]);
    ids.push(Array.from(e.getIds()));
  }
  const version = require('tokenizers/package.json').version;
  fs.writeFileSync(outPath, JSON.stringify({ tokenizer: 'TinyStories-656K tokenizer.json', library: 'tokenizers (npm) ' + version,
                                             index, stories, ids }) + '\n');
  console.log(`${outPath}: ${index.length} stories, ${ids.reduce((s, x) => s + x.length, 0)} ids`);
})();
