// Reads JSON on stdin and prints what web/nametool.js computes, for tests/test_web_module.py:
// {sampler: {multipliers, expTable, cases: [{z, options, allowed, u}]}}: each case's P and drawn id;
// {file, contexts}: an exact file's graph integers for id contexts, on the page's own engine;
// {file, requests}: the names NameModel.generate gives (or the error it throws) per request.
import { readFileSync } from "node:fs";
import { ExactSampler, NameModel, readOnnx, uniformBits } from "../../web/nametool.js";

const input = JSON.parse(readFileSync(0, "utf-8"));
const out = {};
if (input.sampler) {
  const { multipliers, expTable, cases } = input.sampler;
  const sampler = new ExactSampler(multipliers, expTable);
  out.probs = [];
  out.ids = [];
  for (const c of cases) {
    const P = sampler.probs(c.z, 0, sampler.settings(c.options), c.allowed ? Uint8Array.from(c.allowed) : null);
    out.probs.push(Array.from(P));
    out.ids.push(ExactSampler.drawId(ExactSampler.cumulative(P), uniformBits(c.u)));
  }
}
if (input.file) {
  const bytes = readFileSync(input.file);
  try {
    const model = await NameModel.load(null, bytes, { source: input.file });
    if (input.contexts) out.integers = Array.from(model.graph.run(input.contexts));
    out.names = [];
    for (const request of input.requests || []) out.names.push((await model.generate(request)).join("\n"));
    out.info = model.info();
  } catch (error) {
    out.error = error.message;
  }
}
process.stdout.write(JSON.stringify(out));
