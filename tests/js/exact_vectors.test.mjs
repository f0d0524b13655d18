// docs/exact.md's test vectors, held against web/nametool.js's exact sampler: `node --test tests/js/`
// (tests/test_web_module.py runs it).
import assert from "node:assert/strict";
import { test } from "node:test";
import { ExactSampler, UniformStream, exactLogit, floorDiv, toFixed16, uniformBits } from "../../web/nametool.js";

// The standard table: round(2^16 exp(-d / 256)) while positive, then one 0.
function expTable() {
  const table = [];
  for (let d = 0; ; d++) {
    const value = Math.round(65536 * Math.exp(-d / 256));
    if (value === 0) return [...table, 0];
    table.push(value);
  }
}

const EXP = expTable();
const Z = [[52000, -18000, 30000, 1000], [-40000, 9000, 61000, 2000]];
const MULTIPLIERS = [[300000, 310000, 290000, 305000], [250000, 260000, 240000, 255000]];
const P = [13619091, 967075, 18015443, 952819];
const sampler = new ExactSampler(MULTIPLIERS, EXP);
const z = Z.flat();

const probs = (options = {}, allowed = null) => Array.from(sampler.probs(z, 0, sampler.settings(options), allowed));

test("the exp table is the documented one", () => {
  assert.equal(EXP.length, 3018);
  assert.deepEqual(EXP.slice(0, 4), [65536, 65280, 65026, 64772]);
  assert.deepEqual(EXP.slice(-4), [1, 1, 1, 0]);
});

test("logits, each member's masses and the mixture", () => {
  const l = Z.map((row, m) => row.map((value, v) => exactLogit(value, MULTIPLIERS[m][v])));
  assert.deepEqual(l, [[930, -333, 519, 18], [-596, 139, 873, 30]]);
  const q = Z.map((row, m) => {
    const one = new ExactSampler([MULTIPLIERS[m]], EXP);
    return Array.from(one.probs(row, 0, one.settings()));
  });
  assert.deepEqual(q, [[13569861, 97732, 2724698, 384923], [49230, 869343, 15290745, 567896]]);
  assert.deepEqual(probs(), P);
  assert.equal(P.reduce((a, b) => a + b), 33554428);
});

test("temperature, masks, top-k, top-p, min-p and greedy", () => {
  assert.deepEqual(probs({ temperature: 0.5 }), [16114092, 54759, 17349612, 35964]);
  assert.deepEqual(probs({ temperature: 2 }), [10495761, 3525670, 15696556, 3836441]);
  assert.deepEqual(probs({}, Uint8Array.from([0, 1, 1, 1])), [0, 1382971, 29588277, 2583180]);
  for (const options of [{ topK: 2 }, { topP: 0.6 }, { minP: 0.1 }]) {
    assert.deepEqual(probs(options), [13619091, 0, 18015443, 0], JSON.stringify(options));
  }
  assert.deepEqual(probs({ temperature: 0 }), [0, 0, 1, 0]);
  assert.deepEqual(probs({ temperature: 2 ** -18 }), [0, 0, 1, 0]); // t16 rounds to 0: greedy
  assert.deepEqual(sampler.settings({ temperature: 0.5 }).t16, 32768);
  assert.deepEqual(sampler.settings({ temperature: 1e300 }).t16, 2 ** 46);
});

test("the draws of seed 0", () => {
  const cdf = ExactSampler.cumulative(Float64Array.from(P));
  assert.deepEqual(Array.from(cdf), [13619091, 14586166, 32601609, 33554428]);
  const u24 = Array.from(new UniformStream(0).random(4), uniformBits);
  assert.deepEqual(u24, [14819496, 7239838, 443485, 16288696]);
  assert.deepEqual(u24.map((u) => Math.floor((u * 33554428) / 2 ** 24)), [29638988, 14479674, 886969, 32577388]);
  assert.deepEqual(u24.map((u) => ExactSampler.drawId(cdf, u)), [2, 1, 0, 2]);
});

test("an id of mass 0 is never drawn, and a threshold on a boundary takes the next id", () => {
  const cdf = ExactSampler.cumulative(Float64Array.from([0, 5, 0, 3]));
  assert.deepEqual([0, 2 ** 24 - 1].map((u) => ExactSampler.drawId(cdf, u)), [1, 3]);
  const u = Math.ceil((5 * 2 ** 24) / 8); // t = (u * 8) >> 24 = 5: the cumulative 5 does not exceed it
  assert.equal(ExactSampler.drawId(cdf, u), 3);
  assert.equal(ExactSampler.drawId(cdf, u - 1), 1);
});

test("rounding and division are exact", () => {
  assert.deepEqual([0.5, 1.5, 2.5].map((x) => toFixed16(x / 65536)), [0, 2, 2]); // ties to even
  assert.equal(toFixed16(0.3), Math.round(0.3 * 65536));
  const big = 2 ** 52 - 1;
  assert.equal(floorDiv(big, 3), (2 ** 52 - 1) / 3);
  assert.equal(floorDiv(big - 1, 3), (2 ** 52 - 1) / 3 - 1);
  for (const [a, b] of [[2 ** 45 - 1, 2 ** 46], [2 ** 40, 2 ** 40 + 1], [2 ** 52 - 2, 2 ** 26 - 1]]) {
    assert.equal(BigInt(floorDiv(a, b)), BigInt(a) / BigInt(b), `${a} / ${b}`);
  }
});
