// Reads {cases: [{logits, u, options}], seeds: [[seed, count]]} as JSON on stdin; prints the ids
// web/nametool.js draws and the uniforms its stream gives, for tests/test_web_module.py.
import { readFileSync } from "node:fs";
import { draw, nextCharProbs, UniformStream } from "../../web/nametool.js";

const input = JSON.parse(readFileSync(0, "utf-8"));
const row = (values) => Float32Array.from(values, (v) => (v === "-inf" ? -Infinity : v));
const ids = input.cases.map((c) => draw(row(c.logits), c.u, c.options));
const probs = (input.probs || []).map((c) => Array.from(nextCharProbs(row(c.logits), c.options)));
const streams = input.seeds.map(([seed, count]) => Array.from(new UniformStream(seed).random(count)));
process.stdout.write(JSON.stringify({ ids, probs, streams }));
