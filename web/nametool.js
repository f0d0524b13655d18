// nametool in the browser: load a nametool .onnx file from its bytes, check it, and sample
// names with the semantics of the Python runtime (nametool.runtime): the same random stream
// (docs/random.md), the same sampler arithmetic (runtime/sampling.py for float files,
// docs/exact.md and runtime/exact.py for exact ones), the same order of draws
// (runtime/generation.py). An exact file runs on this module's own integer engine (no
// dependency) or on onnxruntime-web; a float file on onnxruntime-web. onnxruntime-web is
// passed in, so this module runs in a page and in Node alike.

export const SCHEMA_VERSIONS = [1];
export const INPUT_NAME = "context";
export const OUTPUT_NAME = "logits";
export const MAX_NAME_LEN = 256;
export const MAX_SEED = (1n << 64n) - 1n;
const FLOAT32_SAFE_TEMPERATURE = 1e-30;
const UNIQUE_DRAW_FACTOR = 20; // unique/novel give up after 20 * count + 1000 names drawn
const UNIQUE_DRAW_EXTRA = 1000;
const ROW_MULTIPLE = 4; // calls padded as the Python runtime pads onnxruntime's (runtime/model.py)
// Rows per onnxruntime-web call, by the file's first layer. In Node 20 (wasm, one thread, the
// 2-core Xeon): the folded default model took 10.4 ms per 1,024 rows in calls of 128 against
// 14.1 ms in one call; the plain lecture model was fastest whole (1.25 ms).
const ROWS_PER_CALL = { folded: 128, plain: Infinity };
const CACHE_VALUES = 1 << 21; // an exact file's cached graph rows: 8 MB of int32
const SHARE_UNTIL = 0.9; // rows with equal contexts share a model row until this share is distinct
const DEFAULT_BATCH_SIZE = 1024;

export class NametoolError extends Error {
  constructor(message) {
    super(message);
    this.name = "NametoolError";
  }
}

// ---- the random stream (docs/random.md) ------------------------------------------------

const MASK64 = (1n << 64n) - 1n;
const GAMMA = 0x9e3779b97f4a7c15n;

function mix(z) {
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return z ^ (z >> 31n);
}

export function parseSeed(seed) {
  if (seed === undefined || seed === null || seed === "") return null;
  let value;
  try {
    value = BigInt(typeof seed === "string" ? seed.trim() : seed);
  } catch {
    throw new NametoolError(`seed ${JSON.stringify(seed)} is not a whole number`);
  }
  if (value < 0n || value > MAX_SEED) throw new NametoolError(`seed ${value} is outside 0..2**64-1`);
  return value;
}

export class UniformStream {
  constructor(seed) {
    let value = parseSeed(seed);
    if (value === null) {
      const words = new BigUint64Array(1);
      globalThis.crypto.getRandomValues(words);
      value = words[0];
    }
    this.seed = value;
    this.key = mix(value);
    this.position = 0n; // index of the next draw
  }

  random(count) {
    const out = new Float64Array(count);
    let z = (this.key + (this.position + 1n) * GAMMA) & MASK64;
    for (let i = 0; i < count; i++) {
      out[i] = Number(mix(z) >> 11n) * 2 ** -53;
      z = (z + GAMMA) & MASK64;
    }
    this.position += BigInt(count);
    return out;
  }
}

// ---- the sampler (runtime/sampling.py), one row at a time -------------------------------

const f32 = Math.fround;
const scratch32 = new Float32Array(1);
const scratch32Bits = new Int32Array(scratch32.buffer);
const scratch64 = new Float64Array(1);
const scratch64Bits = new BigInt64Array(scratch64.buffer);

function nextDown32(x) { // the largest float32 below a positive finite float32 x
  scratch32[0] = x;
  scratch32Bits[0] -= 1;
  return scratch32[0];
}

function nextDown64(x) { // the largest float64 below a positive finite x
  scratch64[0] = x;
  scratch64Bits[0] -= 1n;
  return scratch64[0];
}

function unusable(row, value) {
  const what = value === -Infinity ? "every allowed id has logit -inf" : `its logits hold ${value}`;
  const error = new NametoolError(`logits row ${row}: ${what}`);
  error.value = value;
  return error;
}

function rowMax(x) {
  let top = -Infinity;
  for (let i = 0; i < x.length; i++) {
    if (Number.isNaN(x[i])) return NaN;
    if (x[i] > top) top = x[i];
  }
  return top;
}

// Sampling distribution of one row: softmax of logits / temperature, then top-k, top-p, min-p
// (float64, as next_char_probs); rows need not sum to one.
export function nextCharProbs(logits, { temperature = 1, topK = null, topP = null, minP = null, forbid = null } = {}) {
  const n = logits.length;
  let x = Float64Array.from(logits);
  if (forbid !== null) x[forbid] = -Infinity;
  const top = rowMax(x);
  if (!Number.isFinite(top)) throw unusable(0, top);
  if (temperature === 0) {
    const probs = new Float64Array(n);
    probs[x.indexOf(top)] = 1;
    return probs;
  }
  if (topK !== null && topK < n) {
    const order = [...x.keys()].sort((a, b) => x[b] - x[a] || a - b);
    const kept = new Float64Array(n).fill(-Infinity);
    for (const id of order.slice(0, topK)) kept[id] = x[id];
    x = kept;
  }
  let probs = new Float64Array(n);
  for (let i = 0; i < n; i++) probs[i] = Math.exp((x[i] - top) / temperature);
  const total = pairwiseSum(probs, 0, n);
  for (let i = 0; i < n; i++) probs[i] /= total;
  if (topP !== null && topP < 1) {
    const order = [...probs.keys()].sort((a, b) => probs[b] - probs[a] || a - b);
    let cumulative = 0;
    const kept = new Float64Array(n);
    for (const id of order) {
      cumulative += probs[id];
      if (cumulative - probs[id] < topP) kept[id] = probs[id]; // the id that crosses p is the last kept
    }
    probs = kept;
  }
  if (minP) {
    const floor = minP * rowMax(probs);
    for (let i = 0; i < n; i++) if (probs[i] < floor) probs[i] = 0;
  }
  return probs;
}

// numpy's float64 sum of a contiguous row (pairwise, eight accumulators), so that a row's
// normalisation rounds as the Python sampler's does.
function pairwiseSum(a, start, n) {
  if (n < 8) {
    let res = 0;
    for (let i = start; i < start + n; i++) res += a[i];
    return res;
  }
  if (n <= 128) {
    const r = Array.from({ length: 8 }, (_, j) => a[start + j]);
    let i = 8;
    for (; i < n - (n % 8); i += 8) for (let j = 0; j < 8; j++) r[j] += a[start + i + j];
    let res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; i++) res += a[start + i];
    return res;
  }
  let half = Math.floor(n / 2);
  half -= half % 8;
  return pairwiseSum(a, start, half) + pairwiseSum(a, start + half, n - half);
}

// Inverse-CDF draw: the first id whose cumulative mass exceeds u * total (float64).
export function sampleId(probs, u) {
  const cdf = new Float64Array(probs.length);
  let running = 0;
  for (let i = 0; i < probs.length; i++) cdf[i] = running += probs[i];
  const total = cdf[cdf.length - 1];
  const threshold = Math.min(u * total, nextDown64(total));
  let id = 0;
  for (let i = 0; i < cdf.length; i++) if (cdf[i] <= threshold) id++;
  return id;
}

let plainRow = new Float32Array(64);

// One id from a row of logits, as runtime/sampling.py's draw: the plain case in float32.
export function draw(logits, u, options = {}) {
  const { temperature = 1, topK = null, topP = null, minP = null, forbid = null } = options;
  const plain = temperature >= FLOAT32_SAFE_TEMPERATURE && topK === null && (topP === null || topP === 1) && !minP;
  if (!plain) return sampleId(nextCharProbs(logits, options), u);
  const n = logits.length;
  if (plainRow.length < n) plainRow = new Float32Array(n);
  const x = plainRow.subarray(0, n); // reused: the hot loop allocates nothing per row
  x.set(logits);
  if (forbid !== null) x[forbid] = -Infinity;
  const top = rowMax(x);
  if (!Number.isFinite(top)) throw unusable(0, top);
  const t = f32(temperature);
  for (let i = 0; i < n; i++) {
    let v = f32(x[i] - top);
    if (temperature !== 1) v = f32(v / t);
    x[i] = Math.exp(v); // stored as float32: rounded once
  }
  for (let i = 1; i < n; i++) x[i] = x[i] + x[i - 1];
  const total = x[n - 1];
  const threshold = Math.min(f32(u * total), nextDown32(total));
  let id = 0;
  for (let i = 0; i < n; i++) if (x[i] <= threshold) id++;
  return id;
}

// ---- the exact form (docs/exact.md): integers from the context to the drawn id -----------

// Every value below is an integer under 2^53, so JavaScript numbers hold it exactly; the
// graph's partial sums stay below 2^24 (checked on load), so no order of summing rounds.
const LOGIT_SHIFT = 2 ** 24; // l = (z * multiplier + 2^23) >> 24: logits in 2^-8 nats
const MASS_ONE = 2 ** 24; // each member's distribution sums to at most 2^24
const FIXED_ONE = 2 ** 16; // temperature, top-p and min-p as multiples of 2^-16
const MAX_T16 = 2 ** 46;
const MAX_MULTIPLIER = 2 ** 28;
const PARTIAL_SUM_LIMIT = 2 ** 24; // float32 (onnxruntime's arithmetic) holds every integer below it
const TANH_PEAK = 255;
const END_ID = 0; // the end token's id, which pads a context's start
const MAX_SHIFT = 23; // scales are powers of two from 2^-23 to 1

// floor(a / b) for integers a >= 0, b > 0 below 2^53: the quotient of doubles, corrected by its remainder.
export function floorDiv(a, b) {
  let q = Math.floor(a / b);
  const r = a - q * b;
  if (r < 0) q -= 1;
  else if (r >= b) q += 1;
  return q;
}

// round(value * 2^16), ties to even, as Python's round: one exact product and a defined rounding.
export function toFixed16(value) {
  const x = value * FIXED_ONE;
  const r = Math.floor(x);
  const diff = x - r;
  if (diff !== 0.5) return diff > 0.5 ? r + 1 : r;
  return r % 2 === 0 ? r : r + 1;
}

// The top 24 bits of a draw of the stream: exact, since a uniform is k * 2^-53.
export function uniformBits(u) {
  return Math.floor(u * 2 ** 24);
}

// A member's logit in 2^-8 nats: (z * multiplier + 2^23) >> 24 (z * multiplier < 2^52: exact).
export function exactLogit(z, multiplier) {
  return Math.floor((z * multiplier + LOGIT_SHIFT / 2) / LOGIT_SHIFT);
}

function checkExpTable(table) {
  check(Array.isArray(table) && table.length >= 2 && table.length <= 65536,
    `the exp table has ${Array.isArray(table) ? table.length : 0} entries, expected 2 to 65,536`);
  const falls = table.every((v, i) => Number.isInteger(v) && (i === 0 || v <= table[i - 1]));
  const positive = table.slice(0, -1).every((v) => v > 0);
  check(table[0] === FIXED_ONE && table[table.length - 1] === 0 && falls && positive,
    `the exp table must start at ${FIXED_ONE}, fall, stay positive and end with one 0`);
}

// The sampler of docs/exact.md: the graph's integers z (members, vocab) of a row to P, then a draw.
export class ExactSampler {
  constructor(multipliers, expTable) {
    checkExpTable(expTable);
    check(Array.isArray(multipliers) && multipliers.length >= 1 && multipliers.every((row) => Array.isArray(row)
      && row.length === multipliers[0].length), "exact.multipliers must be a (members, vocab) table");
    check(multipliers.every((row) => row.every((m) => Number.isInteger(m) && m >= 1 && m < MAX_MULTIPLIER)),
      "exact.multipliers must lie in 1..2^28-1");
    this.members = multipliers.length;
    this.vocabSize = multipliers[0].length;
    this.multipliers = multipliers.map((row) => Float64Array.from(row));
    this.expTable = Int32Array.from(expTable);
    this.l = new Float64Array(this.vocabSize); // scratch: one member's logits
    this.e = new Float64Array(this.vocabSize); // scratch: one member's unnormalised masses
  }

  // The request's integers: t16 (0: greedy), top-k (null: off), p16 and m16 (null: off).
  settings({ temperature = 1, topK = null, topP = null, minP = null } = {}) {
    return {
      t16: Math.min(toFixed16(temperature), MAX_T16),
      topK: topK !== null && topK < this.vocabSize ? topK : null,
      p16: topP === null || topP >= 1 ? null : toFixed16(topP),
      m16: minP ? toFixed16(minP) : null,
    };
  }

  // P (Float64Array, vocab) of the row of z (members * vocab integers) starting at `at`. `allowed`:
  // null, or a Uint8Array (vocab) with 0 for the ids the request forbids here.
  probs(z, at, s, allowed = null) {
    const V = this.vocabSize;
    const P = new Float64Array(V);
    const t16 = s.t16 === 0 ? FIXED_ONE : s.t16; // greedy: the largest P at T = 1
    const { l, e, expTable } = this;
    const last = expTable.length - 1;
    for (let m = 0; m < this.members; m++) {
      const mult = this.multipliers[m];
      const base = at + m * V;
      let top = -Infinity;
      for (let v = 0; v < V; v++) {
        if (allowed !== null && !allowed[v]) continue;
        l[v] = exactLogit(z[base + v], mult[v]);
        if (l[v] > top) top = l[v];
      }
      if (top === -Infinity) throw unusable(0, -Infinity);
      let total = 0;
      for (let v = 0; v < V; v++) {
        if (allowed !== null && !allowed[v]) {
          e[v] = 0;
          continue;
        }
        let d = top - l[v];
        if (t16 !== FIXED_ONE) d = floorDiv(d * FIXED_ONE, t16);
        e[v] = expTable[d < last ? d : last];
        total += e[v];
      }
      for (let v = 0; v < V; v++) if (e[v]) P[v] += floorDiv(e[v] * MASS_ONE, total);
    }
    if (s.t16 === 0) {
      let best = 0;
      for (let v = 1; v < V; v++) if (P[v] > P[best]) best = v;
      P.fill(0);
      P[best] = 1;
      return P;
    }
    if (s.topK !== null || s.p16 !== null || s.m16) filterMass(P, s);
    return P;
  }

  // The cumulative masses of P, whose last entry is the total.
  static cumulative(P) {
    const cdf = new Float64Array(P.length);
    let running = 0;
    for (let v = 0; v < P.length; v++) cdf[v] = running += P[v];
    return cdf;
  }

  // The first id whose cumulative mass exceeds (u24 * total) >> 24; an id of mass 0 never.
  static drawId(cdf, u24) {
    const threshold = Math.floor((u24 * cdf[cdf.length - 1]) / 2 ** 24); // u24 * total < 2^52: exact
    let id = 0;
    while (cdf[id] <= threshold) id++;
    return id;
  }
}

// Top-k (ties to the lower id), top-p and min-p on P, in place, in that order.
function filterMass(P, { topK, p16, m16 }) {
  const order = Array.from(P.keys()).sort((a, b) => P[b] - P[a] || a - b);
  const ranked = order.map((id) => P[id]);
  if (topK !== null) ranked.fill(0, topK);
  if (p16 !== null) {
    const total = ranked.reduce((a, b) => a + b, 0);
    let before = 0;
    for (let r = 0; r < ranked.length; r++) {
      const mass = ranked[r];
      if (r > 0 && before * FIXED_ONE >= p16 * total) ranked[r] = 0; // < 2^52 on both sides
      before += mass;
    }
  }
  if (m16) {
    for (let r = 1; r < ranked.length; r++) if (ranked[r] * FIXED_ONE < m16 * ranked[0]) ranked[r] = 0;
  }
  order.forEach((id, r) => { P[id] = ranked[r]; });
}

function sameDims(dims, expected) {
  return dims.length === expected.length && dims.every((d, i) => d === expected[i]);
}

// The exact graph in JavaScript: what export/exact.py's ONNX graph computes, integer for integer.
export class ExactGraph {
  constructor(tensors, meta) {
    const { context_size: C, hidden, members: M = 1, norm = "none" } = meta.model;
    check(norm === "none", "the exact form has no layer norm, yet the metadata says norm 'layer'");
    check(Array.isArray(hidden) && hidden.length >= 1 && hidden.every((h) => Number.isInteger(h) && h >= 1),
      "metadata model.hidden must be one or more positive integers");
    const V = meta.vocab.chars.length + 1;
    Object.assign(this, { C, M, V, W: M * hidden[0] });
    const integers = (name, dims) => {
      const t = tensors[name];
      check(t, `the exact form's tensor '${name}' is missing`);
      check(!(t.values instanceof Float32Array), `${name}: expected integers, found float32`);
      check(dims === null || sameDims(t.dims, dims), `${name}: shape [${t.dims}], expected [${dims}]`);
      return t.values;
    };
    const shifts = (name, dims) => {
      const t = tensors[name];
      check(t, `the exact form's tensor '${name}' is missing`);
      check(t.values instanceof Float32Array && sameDims(t.dims, dims),
        `${name}: expected float32 of shape [${dims}]`);
      return Int32Array.from(t.values, (scale) => {
        const s = -Math.log2(scale);
        check(Number.isInteger(s) && s >= 0 && s <= MAX_SHIFT && 2 ** -s === scale,
          `${name}: every entry must be a power of two from 2^-23 to 1`);
        return s;
      });
    };
    this.tanh = integers("exact.tanh", null);
    const N = (this.tanh.length - 1) / 2;
    check(tensors["exact.tanh"].dims.length === 1 && this.tanh.length >= 3 && Number.isInteger(N),
      "exact.tanh: the tanh table must hold an odd number (3 or more) of entries");
    const peak = Math.max(...Array.from(this.tanh, Math.abs));
    check(peak <= TANH_PEAK, `exact.tanh: values beyond +-${TANH_PEAK}`);
    this.high = 2 * N;
    this.tables = integers("exact.tables", [C * V, this.W]);
    this.bias1 = integers("exact.bias1", [this.W]);
    this.shift1 = shifts("exact.scale1", [this.W]);
    this.layers = [];
    for (let L = 2; L <= hidden.length; L++) {
      const [inner, outer] = [hidden[L - 2], hidden[L - 1]];
      this.layers.push({
        inner,
        outer,
        weight: integers(`exact.weight${L}`, [M, inner, outer]),
        bias: integers(`exact.bias${L}`, [M, 1, outer]),
        shift: shifts(`exact.scale${L}`, [M, 1, outer]),
      });
    }
    const last = hidden[hidden.length - 1];
    this.output = {
      inner: last, outer: V, weight: integers("exact.out_weight", [M, last, V]), bias: integers("exact.out_bias", [M, 1, V]),
    };
    this.checkBounds(meta.exact.bounds, peak);
  }

  // Computed in float64 (integers, exact: every partial sum is below 2^24, in any order), dense
  // layers as dot products over weights laid out (members, outer, inner): twice as fast in V8
  // as int32 arithmetic over the file's (members, inner, outer). Made on the first run only: a
  // file run on onnxruntime-web is checked here but never run.
  prepare() {
    const { C, V, W, M } = this;
    this.tablesF = Float64Array.from(this.tables);
    // Contexts start with the end id, as padding, in most positions: leading[k * W + u] is unit
    // u's bias plus its table rows for k leading end ids, so a context adds only its other rows.
    this.leading = new Float64Array((C + 1) * W);
    this.leading.set(this.bias1);
    for (let k = 1; k <= C; k++) {
      const row = ((k - 1) * V + END_ID) * W;
      for (let u = 0; u < W; u++) this.leading[k * W + u] = this.leading[(k - 1) * W + u] + this.tablesF[row + u];
    }
    this.rows = new Int32Array(C);
    this.z1 = new Float64Array(this.W);
    this.a1 = new Float64Array(this.W);
    for (const layer of [...this.layers, this.output]) {
      layer.weightT = transposed(layer, M);
      layer.biasF = Float64Array.from(layer.bias);
      layer.z = new Float64Array(M * layer.outer);
      layer.a = new Float64Array(M * layer.outer);
    }
  }

  // Recompute every reduction's largest partial sum from the stored integers (docs/exact.md's
  // bounds): each must be below 2^24 and equal what the metadata states.
  checkBounds(stated, peak) {
    const { C, V, W, M } = this;
    const bounds = {};
    let worst = 0;
    for (let u = 0; u < W; u++) {
      let sum = Math.abs(this.bias1[u]);
      for (let i = 0; i < C; i++) {
        let top = 0;
        for (let c = 0; c < V; c++) top = Math.max(top, Math.abs(this.tables[(i * V + c) * W + u]));
        sum += top;
      }
      worst = Math.max(worst, sum);
    }
    bounds.layer1 = worst;
    const dense = (layer) => {
      let most = 0;
      for (let m = 0; m < M; m++) {
        for (let o = 0; o < layer.outer; o++) {
          let sum = 0;
          for (let j = 0; j < layer.inner; j++) sum += Math.abs(layer.weight[(m * layer.inner + j) * layer.outer + o]);
          most = Math.max(most, peak * sum + Math.abs(layer.bias[m * layer.outer + o]));
        }
      }
      return most;
    };
    this.layers.forEach((layer, i) => { bounds[`layer${i + 2}`] = dense(layer); });
    bounds.output = dense(this.output);
    for (const [layer, bound] of Object.entries(bounds)) {
      check(bound < PARTIAL_SUM_LIMIT, `exact form: a partial sum of ${layer} can reach ${bound.toLocaleString("en")}, `
        + "not below 2^24 (float32 would round it)");
    }
    const keys = Object.keys(bounds);
    check(stated && typeof stated === "object" && Object.keys(stated).length === keys.length
      && keys.every((k) => stated[k] === bounds[k]),
    `exact form: the stated bounds ${JSON.stringify(stated)} differ from the stored integers' ${JSON.stringify(bounds)}`);
  }

  // (rows * members * vocab) integers for an array of id contexts, as the graph's `logits`.
  run(contexts) {
    if (!this.tablesF) this.prepare();
    const { M, V } = this;
    const out = new Int32Array(contexts.length * M * V);
    for (let r = 0; r < contexts.length; r++) {
      this.firstLayer(contexts[r]);
      this.activate(this.z1, this.shift1, this.a1);
      let a = this.a1;
      for (const layer of this.layers) {
        dense(a, layer, layer.z, 0, M);
        this.activate(layer.z, layer.shift, layer.a);
        a = layer.a;
      }
      dense(a, this.output, out, r * M * V, M);
    }
    return out;
  }

  // z1 = bias + one table row per position: the leading end ids' from `leading`, the others
  // four at a time (one pass over z1 for four rows).
  firstLayer(context) {
    const { C, V, W, tablesF: T, rows } = this;
    const z = this.z1;
    let k = 0;
    while (k < C && context[k] === END_ID) k++;
    let n = 0;
    for (let i = k; i < C; i++) rows[n++] = (i * V + context[i]) * W;
    z.set(this.leading.subarray(k * W, (k + 1) * W));
    let i = 0;
    for (; i + 3 < n; i += 4) {
      const [a, b, c, d] = [rows[i], rows[i + 1], rows[i + 2], rows[i + 3]];
      for (let u = 0; u < W; u++) z[u] += T[a + u] + T[b + u] + T[c + u] + T[d + u];
    }
    for (; i < n; i++) {
      const a = rows[i];
      for (let u = 0; u < W; u++) z[u] += T[a + u];
    }
  }

  // tanh[clip(z >> shift, 0, 2N)]: floor(z * 2^-shift), as the graph's Mul, Floor and Clip.
  activate(z, shift, a) {
    const { tanh, high } = this;
    for (let u = 0; u < z.length; u++) {
      const index = z[u] >> shift[u]; // z is an integer below 2^24: exact in int32
      a[u] = tanh[index < 0 ? 0 : index > high ? high : index];
    }
  }
}

// A dense layer's weights (members, inner, outer) as (members, outer, inner) float64.
function transposed({ inner, outer, weight }, members) {
  const t = new Float64Array(members * outer * inner);
  for (let m = 0; m < members; m++) {
    for (let j = 0; j < inner; j++) {
      for (let o = 0; o < outer; o++) t[(m * outer + o) * inner + j] = weight[(m * inner + j) * outer + o];
    }
  }
  return t;
}

// Each member's a (inner) times its weights plus bias, into z from `at`: four running sums per
// dot product, which any order leaves exact.
function dense(a, { inner, outer, weightT, biasF }, z, at, members) {
  for (let m = 0; m < members; m++) {
    const am = m * inner;
    for (let o = 0; o < outer; o++) {
      const w = (m * outer + o) * inner;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      let j = 0;
      for (; j + 3 < inner; j += 4) {
        s0 += a[am + j] * weightT[w + j];
        s1 += a[am + j + 1] * weightT[w + j + 1];
        s2 += a[am + j + 2] * weightT[w + j + 2];
        s3 += a[am + j + 3] * weightT[w + j + 3];
      }
      for (; j < inner; j++) s0 += a[am + j] * weightT[w + j];
      z[at + m * outer + o] = biasF[m * outer + o] + ((s0 + s1) + (s2 + s3));
    }
  }
}

// ---- the file: protobuf fields of ModelProto that nametool needs ------------------------

function readVarint(bytes, pos) {
  let value = 0;
  let scale = 1;
  for (;;) {
    if (pos >= bytes.length) throw new NametoolError("not an ONNX file (truncated protobuf)");
    const b = bytes[pos++];
    value += (b & 0x7f) * scale;
    if (b < 0x80) return [value, pos];
    scale *= 128;
    if (scale > 2 ** 63) throw new NametoolError("not an ONNX file (bad varint)");
  }
}

function* fields(bytes, start = 0, end = bytes.length) {
  let pos = start;
  while (pos < end) {
    let key;
    [key, pos] = readVarint(bytes, pos);
    const number = Math.floor(key / 8);
    const wire = key % 8;
    if (wire === 0) {
      let value;
      [value, pos] = readVarint(bytes, pos);
      yield { number, wire, value };
    } else if (wire === 2) {
      let length;
      [length, pos] = readVarint(bytes, pos);
      if (pos + length > end) throw new NametoolError("not an ONNX file (a field runs past the end)");
      yield { number, wire, start: pos, end: pos + length };
      pos += length;
    } else if (wire === 1 || wire === 5) {
      pos += wire === 1 ? 8 : 4;
      if (pos > end) throw new NametoolError("not an ONNX file (truncated protobuf)");
    } else {
      throw new NametoolError(`not an ONNX file (protobuf wire type ${wire})`);
    }
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

function text(bytes, field) {
  try {
    return utf8.decode(bytes.subarray(field.start, field.end));
  } catch {
    throw new NametoolError("unreadable metadata (not UTF-8)");
  }
}

// metadata_props (field 14 of ModelProto) as an object, and the float32 and integer initializers by name.
export function readOnnx(bytes) {
  const metadata = {};
  const tensors = {};
  let graphSeen = false;
  for (const field of fields(bytes)) {
    if (field.number === 14 && field.wire === 2) {
      let key = "";
      let value = "";
      for (const f of fields(bytes, field.start, field.end)) {
        if (f.number === 1 && f.wire === 2) key = text(bytes, f);
        if (f.number === 2 && f.wire === 2) value = text(bytes, f);
      }
      if (Object.hasOwn(metadata, key)) throw new NametoolError(`not a well-formed ONNX file: metadata entry '${key}' appears twice`);
      metadata[key] = value;
    } else if (field.number === 7 && field.wire === 2) {
      if (graphSeen) throw new NametoolError("not a well-formed ONNX file: the graph field appears twice");
      graphSeen = true;
      for (const f of fields(bytes, field.start, field.end)) {
        if (f.number === 5 && f.wire === 2) readTensor(bytes, f, tensors);
      }
    }
  }
  return { metadata, tensors };
}

// Initializer types the page reads (TensorProto.DataType): raw little-endian data.
const TENSOR_TYPES = {
  1: [Float32Array, "getFloat32"], 3: [Int8Array, "getInt8"], 5: [Int16Array, "getInt16"], 6: [Int32Array, "getInt32"],
};

function readTensor(bytes, field, tensors) {
  const dims = [];
  let name = "";
  let type = 0;
  let raw = null;
  for (const f of fields(bytes, field.start, field.end)) {
    if (f.number === 1 && f.wire === 0) dims.push(f.value);
    else if (f.number === 1 && f.wire === 2) {
      for (let p = f.start; p < f.end;) {
        let d;
        [d, p] = readVarint(bytes, p);
        dims.push(d);
      }
    } else if (f.number === 2 && f.wire === 0) type = f.value;
    else if (f.number === 8 && f.wire === 2) name = text(bytes, f);
    else if (f.number === 9 && f.wire === 2) raw = bytes.subarray(f.start, f.end);
  }
  if (!(type in TENSOR_TYPES) || raw === null) return;
  const [Type, getter] = TENSOR_TYPES[type];
  const count = dims.reduce((a, b) => a * b, 1);
  if (raw.length !== count * Type.BYTES_PER_ELEMENT) return;
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const values = new Type(count);
  for (let i = 0; i < count; i++) values[i] = view[getter](i * Type.BYTES_PER_ELEMENT, true);
  if (Object.hasOwn(tensors, name)) throw new NametoolError(`not a well-formed ONNX file: initializer '${name}' appears twice`);
  tensors[name] = { dims, values };
}

// ---- the model --------------------------------------------------------------------------

function check(condition, message) {
  if (!condition) throw new NametoolError(message);
}

function parseMeta(metadata) {
  check("nametool" in metadata, "not a nametool model: no 'nametool' metadata in the file");
  let meta;
  try {
    meta = JSON.parse(metadata.nametool);
  } catch {
    throw new NametoolError("metadata 'nametool' is not valid JSON");
  }
  check(meta && typeof meta === "object", "metadata 'nametool' is not an object");
  check(SCHEMA_VERSIONS.includes(meta.schema_version),
    `schema_version ${meta.schema_version} is not one this page reads (${SCHEMA_VERSIONS.join(", ")})`);
  const vocab = meta.vocab || {};
  check(Array.isArray(vocab.chars) && vocab.chars.length > 0, "metadata vocab.chars is missing");
  check(vocab.chars.every((c) => typeof c === "string" && [...c].length === 1), "metadata vocab.chars must be single characters");
  check(new Set(vocab.chars).size === vocab.chars.length, "metadata vocab.chars has duplicates");
  check(typeof vocab.end_token === "string" && [...vocab.end_token].length === 1 && !vocab.chars.includes(vocab.end_token),
    "metadata vocab.end_token must be one character outside vocab.chars");
  const model = meta.model || {};
  check(Number.isInteger(model.context_size) && model.context_size >= 1, "metadata model.context_size must be a positive integer");
  const sampling = meta.sampling || {};
  check(typeof sampling.temperature === "number" && sampling.temperature >= 0, "metadata sampling.temperature must be >= 0");
  check(Number.isInteger(sampling.min_len) && Number.isInteger(sampling.max_len) && sampling.min_len >= 1
    && sampling.min_len <= sampling.max_len && sampling.max_len <= MAX_NAME_LEN, "metadata sampling: need 1 <= min_len <= max_len <= 256");
  return meta;
}

async function inflate(base64) {
  const packed = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const stream = new Blob([packed]).stream().pipeThrough(new DecompressionStream("deflate"));
  return utf8.decode(new Uint8Array(await new Response(stream).arrayBuffer()));
}

async function knownNames(meta) {
  if (!meta.known_names) return null;
  let body;
  try {
    body = await inflate(meta.known_names.data);
  } catch {
    throw new NametoolError("metadata known_names is corrupt");
  }
  const names = new Set();
  let previous = "";
  for (const line of body ? body.split("\n") : []) {
    const space = line.indexOf(" ");
    const shared = Number(line.slice(0, space));
    check(space > 0 && Number.isInteger(shared) && shared <= previous.length, "metadata known_names is corrupt");
    previous = previous.slice(0, shared) + line.slice(space + 1);
    names.add(previous);
  }
  check(names.size === meta.known_names.count, `metadata known_names holds ${names.size} names, says ${meta.known_names.count}`);
  return names;
}

export const ENGINES = ["js", "onnxruntime-web"];

export class NameModel {
  // Load and check a nametool .onnx file from its bytes. `ort`: onnxruntime-web's module, or an
  // async function giving it (called only if the file needs it), or null. `engine`: what runs an
  // exact file, "js" (this module, the default) or "onnxruntime-web"; a float file always runs
  // on onnxruntime-web.
  static async load(ort, bytes, { source = "model.onnx", engine = "js" } = {}) {
    check(ENGINES.includes(engine), `engine ${JSON.stringify(engine)} is not one of ${ENGINES.join(", ")}`);
    bytes = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    const { metadata, tensors } = readOnnx(bytes);
    const meta = parseMeta(metadata);
    const exact = meta.exact ? exactSampler(meta) : null;
    if (!exact) engine = "onnxruntime-web";
    let graph = exact ? new ExactGraph(tensors, meta) : null; // checks the integers and their bounds
    if (engine === "onnxruntime-web") {
      const module = typeof ort === "function" ? await ort() : ort;
      check(module, exact ? "onnxruntime-web is not loaded here; the js engine runs this exact file without it"
        : "a float-form file needs onnxruntime-web, which is not loaded here");
      let session;
      try {
        session = await module.InferenceSession.create(bytes, {
          executionProviders: ["wasm"], graphOptimizationLevel: "all",
          logSeverityLevel: 3, // not the warning that an exact file's embedding tables go unused by its graph
        });
      } catch (error) {
        throw new NametoolError(`not a loadable ONNX model (${String(error.message || error).split("\n")[0]})`);
      }
      graph = new OrtGraph(module, session, meta);
    }
    const model = new NameModel(graph, exact, meta, tensors, source);
    model.engine = engine;
    model.known = await knownNames(meta);
    model.verified = await model.checkGolden();
    return model;
  }

  constructor(graph, exact, meta, tensors, source) {
    this.graph = graph;
    this.exact = exact; // an ExactSampler for an exact file, else null
    this.meta = meta;
    this.tensors = tensors;
    this.source = source;
    this.chars = [meta.vocab.end_token, ...meta.vocab.chars]; // id order: the end first
    this.endId = 0;
    this.contextSize = meta.model.context_size;
    this.rowWidth = exact ? exact.members * this.vocabSize : this.vocabSize; // graph outputs per context
  }

  get vocabSize() {
    return this.chars.length;
  }

  get form() {
    return this.exact ? "exact" : "float";
  }

  // The golden rows the file carries: the distributions it computed at export; an exact file's
  // are integer masses P, compared id for id.
  async checkGolden() {
    const golden = this.meta.golden;
    if (!golden || !golden.contexts || !golden.contexts.length) return { ok: true, maxDeviation: null, rows: 0 };
    const V = this.vocabSize;
    const out = await this.logits(golden.contexts.map((c) => this.encodeContext(c)));
    let worst = 0;
    let differ = 0;
    golden.contexts.forEach((_, row) => {
      const stored = golden.probs[row] || [];
      const probs = this.exact ? this.exact.probs(out, row * this.rowWidth, this.exact.settings())
        : nextCharProbs(out.subarray(row * V, (row + 1) * V));
      const deviation = probs.reduce((most, p, id) => Math.max(most, Math.abs(p - stored[id])), stored.length === V ? 0 : NaN);
      worst = Number.isNaN(deviation) ? NaN : Math.max(worst, deviation);
      if (!(deviation === 0)) differ += 1;
    });
    if (this.exact) {
      check(differ === 0, `the file's golden rows differ: ${differ} of ${golden.contexts.length} give other integer masses `
        + "(tolerance 0): it does not compute what it was exported to compute");
      return { ok: true, maxDeviation: 0, rows: golden.contexts.length, exact: true };
    }
    const ok = worst <= golden.tolerance;
    check(ok, `the file's golden rows differ by ${worst.toExponential(2)} (tolerance ${golden.tolerance}): `
      + "it does not compute what it was exported to compute");
    return { ok, maxDeviation: worst, rows: golden.contexts.length };
  }

  encode(textValue, what) {
    const ids = [];
    const missing = new Set();
    for (const c of textValue) {
      const id = this.chars.indexOf(c);
      if (id <= 0) missing.add(c);
      ids.push(id);
    }
    if (missing.size) {
      const shown = [...missing].sort().map((c) => JSON.stringify(c)).join(", ");
      throw new NametoolError(`${what} ${JSON.stringify(textValue)}: ${shown} not in the vocabulary`);
    }
    return ids;
  }

  encodeContext(textValue) {
    const ids = [...new Array(this.contextSize).fill(this.endId), ...this.encode(textValue, "context")];
    return ids.slice(ids.length - this.contextSize);
  }

  // The graph's output for an array of id contexts: (rows * vocab) float32 logits for a float
  // file, (rows * members * vocab) integers for an exact one, whose rows are kept for contexts
  // seen again (integers: the same whichever call computed them).
  async logits(contexts) {
    if (!this.exact) return this.graph.run(contexts);
    this.cache ??= new RowCache(this.rowWidth, this.vocabSize, this.contextSize);
    return this.cache.rows(contexts, (missing) => this.graph.run(missing));
  }

  // P(next character | text), most likely first (ties: the lower id): [{char, p}], the end shown
  // as the end token. An exact file's p is P / total, the distribution sampling draws from.
  async next(context = "", { temperature = 1 } = {}) {
    checkTemperature(temperature);
    const out = await this.logits([this.encodeContext(context)]);
    let probs;
    if (this.exact) {
      const mass = this.exact.probs(out, 0, this.exact.settings({ temperature }));
      const total = mass.reduce((a, b) => a + b, 0);
      probs = mass.map((m) => m / total);
    } else {
      probs = nextCharProbs(out, { temperature });
    }
    return [...probs].map((p, id) => ({ char: this.chars[id], p })).sort((a, b) => b.p - a.p);
  }

  // Names as nametool-run generate gives them for the same options and seed.
  async generate(options = {}) {
    const p = this.plan(options);
    const stream = new UniformStream(p.seed);
    if (!p.unique && !p.novel) return this.sampleMany(p, p.count, stream);
    const seen = new Set();
    const kept = [];
    const budget = UNIQUE_DRAW_FACTOR * p.count + UNIQUE_DRAW_EXTRA;
    let drawn = 0;
    while (kept.length < p.count) {
      if (drawn >= budget) {
        const wanted = [p.unique && "unique", p.novel && "novel"].filter(Boolean).join(" and ");
        throw new NametoolError(`found only ${kept.length} ${wanted} names of the ${p.count} asked for in ${drawn} draws; `
          + "ask for fewer, or loosen temperature, top-k, top-p, min-p, prefix or lengths");
      }
      const missing = p.count - kept.length;
      const batch = Math.min(budget - drawn, missing + Math.floor(missing / 4) + 16);
      for (const name of await this.sampleMany(p, batch, stream)) {
        if ((p.novel && this.known.has(name)) || (p.unique && seen.has(name))) continue;
        if (p.unique) seen.add(name);
        kept.push(name);
        if (kept.length === p.count) return kept;
      }
      drawn += batch;
    }
    return kept;
  }

  // Options checked against the model, with its defaults filled in (as generation.plan).
  plan(options) {
    const known = ["count", "seed", "temperature", "topK", "topP", "minP", "minLen", "maxLen", "prefix", "unique",
      "novel", "batchSize"];
    for (const key of Object.keys(options)) check(known.includes(key), `unknown option ${key} (known: ${known.join(", ")})`);
    const d = this.meta.sampling;
    const p = {
      count: options.count ?? 10, seed: parseSeed(options.seed), temperature: options.temperature ?? d.temperature,
      topK: options.topK ?? null, topP: options.topP ?? null, minP: options.minP ?? null,
      minLen: options.minLen ?? d.min_len, maxLen: options.maxLen ?? d.max_len, prefix: options.prefix ?? "",
      unique: Boolean(options.unique), novel: Boolean(options.novel), batchSize: options.batchSize ?? DEFAULT_BATCH_SIZE,
    };
    const given = (key) => (options[key] === undefined || options[key] === null ? " (the model's default)" : "");
    check(Number.isInteger(p.count) && p.count >= 0, `count ${p.count} must be a whole number >= 0`);
    checkTemperature(p.temperature);
    check(p.topK === null || (Number.isInteger(p.topK) && p.topK >= 1), `top-k ${p.topK} must be at least 1`);
    check(p.topP === null || (p.topP > 0 && p.topP <= 1), `top-p ${p.topP} must be in (0, 1]`);
    check(p.minP === null || (p.minP >= 0 && p.minP <= 1), `min-p ${p.minP} must be in [0, 1]`);
    check(Number.isInteger(p.minLen) && p.minLen >= 1, `min-len ${p.minLen} must be at least 1`);
    check(Number.isInteger(p.maxLen), `max-len ${p.maxLen} must be a whole number`);
    check(p.maxLen <= MAX_NAME_LEN, `max-len ${p.maxLen} is above the limit ${MAX_NAME_LEN}`);
    check(p.maxLen >= p.minLen, `max-len ${p.maxLen}${given("maxLen")} is below min-len ${p.minLen}${given("minLen")}`);
    check(Number.isInteger(p.batchSize) && p.batchSize >= 1, `batch size ${p.batchSize} must be at least 1`);
    p.prefixIds = this.encode(p.prefix, "prefix");
    check(p.prefixIds.length <= p.maxLen, `prefix ${JSON.stringify(p.prefix)} is longer than max-len ${p.maxLen}`);
    check(!p.novel || this.known, "this model file carries no training names, so novel cannot check them");
    if (this.exact) p.exactSettings = this.exact.settings(p);
    return p;
  }

  async sampleMany(p, count, stream) {
    const names = [];
    for (let start = 0; start < count; start += p.batchSize) {
      const rows = Math.min(p.batchSize, count - start);
      names.push(...await this.sampleChunk(p, stream.random(rows * p.maxLen), rows));
    }
    return names;
  }

  // Names for `rows` rows of uniforms, one per (name, position), as generation._sample_chunk.
  async sampleChunk(p, uniforms, rows) {
    const start = [...new Array(this.contextSize).fill(this.endId), ...p.prefixIds].slice(-this.contextSize);
    const names = Array.from({ length: rows }, () => [...p.prefixIds]);
    let active = names.map((_, row) => ({ row, context: [...start] }));
    let sharing = true;
    for (let pos = p.prefixIds.length; pos < p.maxLen && active.length; pos++) {
      const forbid = pos < p.minLen ? this.endId : null;
      // names that drew the same ids so far have the same context: one model row for them all
      let slot = active.map((_, i) => i);
      let contexts = active.map((a) => a.context);
      if (sharing) {
        const seen = new Map();
        contexts = [];
        slot = active.map((a) => {
          const key = a.context.join(",");
          if (!seen.has(key)) {
            seen.set(key, contexts.length);
            contexts.push(a.context);
          }
          return seen.get(key);
        });
        sharing = contexts.length < SHARE_UNTIL * active.length;
      }
      const pick = this.picker(p, await this.logits(contexts), forbid);
      const going = [];
      active.forEach((a, i) => {
        let id;
        try {
          id = pick(slot[i], uniforms[a.row * p.maxLen + pos]);
        } catch (error) {
          throw this.unusable(error, names[a.row], forbid !== null, p);
        }
        if (id === this.endId) return;
        names[a.row].push(id);
        a.context = [...a.context.slice(1), id];
        going.push(a);
      });
      active = going;
    }
    return names.map((ids) => ids.map((id) => this.chars[id]).join(""));
  }

  // (row of the graph's output, uniform) -> id at one position. An exact file's P is computed
  // once per row, however many names share it.
  picker(p, out, forbid) {
    if (!this.exact) {
      const V = this.vocabSize;
      const settings = { temperature: p.temperature, topK: p.topK, topP: p.topP, minP: p.minP, forbid };
      return (row, u) => draw(out.subarray(row * V, (row + 1) * V), u, settings);
    }
    const allowed = forbid === null ? null : new Uint8Array(this.vocabSize).fill(1);
    if (allowed) allowed[forbid] = 0;
    const cdfs = [];
    return (row, u) => {
      if (cdfs[row] === undefined) {
        cdfs[row] = ExactSampler.cumulative(this.exact.probs(out, row * this.rowWidth, p.exactSettings, allowed));
      }
      return ExactSampler.drawId(cdfs[row], uniformBits(u));
    };
  }

  unusable(error, ids, endMasked, p) {
    const so = JSON.stringify(ids.map((id) => this.chars[id]).join(""));
    if (error.value === -Infinity && endMasked) {
      return new NametoolError(`after ${so} the model gives every character but the end probability 0, `
        + `and min-len ${p.minLen} forbids the end there; lower min-len`);
    }
    return new NametoolError(`the model gives no usable distribution after ${so} (${error.message}); the model file is damaged`);
  }

  // The embedding table of one member: {chars, dims, rows} (rows[id] is a Float32Array).
  embeddings(member = 0) {
    const names = Object.keys(this.tensors).filter((n) => n.endsWith("embed.weight"))
      .sort((a, b) => memberIndex(a) - memberIndex(b));
    check(names.length > 0, "no embedding table in the file");
    check(Number.isInteger(member) && member >= 0 && member < names.length,
      `member ${member} is outside 0..${names.length - 1}`);
    const { dims, values } = this.tensors[names[member]];
    check(dims.length === 2 && dims[0] === this.vocabSize, `the embedding table has shape [${dims}], not ${this.vocabSize} rows`);
    const rows = this.chars.map((_, id) => values.subarray(id * dims[1], (id + 1) * dims[1]));
    return { chars: this.chars, dims, rows, members: names.length };
  }

  info() {
    const { meta } = this;
    return {
      source: this.source, schemaVersion: meta.schema_version, vocab: this.chars.slice(1).join(""),
      endToken: meta.vocab.end_token, model: meta.model, sampling: meta.sampling, graph: meta.graph || null,
      quantization: meta.quantization || null, provenance: meta.provenance || {}, knownNames: this.known ? this.known.size : 0,
      verified: this.verified, form: this.form, engine: this.engine,
    };
  }
}

// An exact file's graph rows by context, up to CACHE_VALUES integers (then it starts afresh):
// names share most of their contexts across chunks, so most rows need no second computation.
class RowCache {
  constructor(width, vocabSize, contextSize) {
    this.width = width;
    this.capacity = Math.max(1, Math.floor(CACHE_VALUES / width));
    this.store = new Int32Array(this.capacity * width);
    this.slots = new Map(); // context key -> row of store
    this.used = 0;
    this.numeric = vocabSize ** contextSize <= Number.MAX_SAFE_INTEGER;
    this.vocabSize = vocabSize;
  }

  key(context) {
    if (!this.numeric) return context.join(",");
    let key = 0;
    for (let i = 0; i < context.length; i++) key = key * this.vocabSize + context[i];
    return key;
  }

  async rows(contexts, run) {
    const { width } = this;
    const out = new Int32Array(contexts.length * width);
    const missing = new Map(); // key -> {context, rows}
    contexts.forEach((context, r) => {
      const key = this.key(context);
      const slot = this.slots.get(key);
      if (slot !== undefined) out.set(this.store.subarray(slot * width, (slot + 1) * width), r * width);
      else if (missing.has(key)) missing.get(key).rows.push(r);
      else missing.set(key, { context, rows: [r] });
    });
    if (!missing.size) return out;
    const wanted = [...missing.entries()];
    const fresh = await run(wanted.map(([, w]) => w.context));
    if (this.used + wanted.length > this.capacity) {
      this.slots.clear();
      this.used = 0;
    }
    wanted.forEach(([key, { rows }], i) => {
      const row = fresh.subarray(i * width, (i + 1) * width);
      for (const r of rows) out.set(row, r * width);
      if (this.used < this.capacity) {
        this.store.set(row, this.used * width);
        this.slots.set(key, this.used++);
      }
    });
    return out;
  }
}

// The sampler of an exact file, its tables checked against the model's shape.
function exactSampler(meta) {
  const { multipliers, exp_table: expTable } = meta.exact;
  const sampler = new ExactSampler(multipliers, expTable);
  const members = meta.model.members ?? 1;
  check(sampler.members === members && sampler.vocabSize === meta.vocab.chars.length + 1,
    `exact.multipliers has shape (${sampler.members}, ${sampler.vocabSize}), expected (${members}, ${meta.vocab.chars.length + 1})`);
  return sampler;
}

// A file's graph on onnxruntime-web: float logits (rows, vocab), or an exact file's integers
// (rows, members, vocab) in float32.
class OrtGraph {
  constructor(ort, session, meta) {
    this.ort = ort;
    this.session = session;
    this.contextSize = meta.model.context_size;
    this.vocabSize = meta.vocab.chars.length + 1;
    this.outputDims = meta.exact ? [meta.model.members ?? 1, this.vocabSize] : [this.vocabSize];
    this.rowsPerCall = ROWS_PER_CALL[(meta.graph && meta.graph.first_layer) || "plain"] || Infinity;
    this.check();
  }

  check() {
    const { inputNames, outputNames } = this.session;
    check(inputNames.length === 1 && inputNames[0] === INPUT_NAME && outputNames.length === 1 && outputNames[0] === OUTPUT_NAME,
      `graph has inputs [${inputNames}] and outputs [${outputNames}], expected [${INPUT_NAME}] and [${OUTPUT_NAME}]`);
    const input = (this.session.inputMetadata || [])[0];
    if (input && input.shape) {
      check(input.type === "int64", `graph takes ${input.type}, expected int64`);
      check(input.shape.length === 2 && input.shape[1] === this.contextSize,
        `graph input shape [${input.shape}] disagrees with context_size ${this.contextSize}`);
    }
    const output = (this.session.outputMetadata || [])[0];
    if (output && output.shape) {
      check(output.type === "float32", `graph gives ${output.type}, expected float32`);
      check(sameDims(output.shape.slice(1), this.outputDims),
        `graph output shape [${output.shape}] disagrees with the model's (batch, ${this.outputDims.join(", ")})`);
    }
  }

  // The output for an array of id contexts, in calls of rowsPerCall rows.
  async run(contexts) {
    const step = this.rowsPerCall;
    if (contexts.length <= step) return this.call(contexts);
    const width = this.outputDims.reduce((a, b) => a * b, 1);
    const out = new Float32Array(contexts.length * width);
    for (let start = 0; start < contexts.length; start += step) {
      out.set(await this.call(contexts.slice(start, start + step)), start * width);
    }
    return out;
  }

  // One model call, padded to a whole group of rows (the last row repeated).
  async call(contexts) {
    const rows = contexts.length;
    const padded = Math.ceil(rows / ROW_MULTIPLE) * ROW_MULTIPLE;
    const data = new BigInt64Array(padded * this.contextSize);
    for (let r = 0; r < padded; r++) {
      const context = contexts[Math.min(r, rows - 1)];
      for (let i = 0; i < this.contextSize; i++) data[r * this.contextSize + i] = BigInt(context[i]);
    }
    const feeds = { [INPUT_NAME]: new this.ort.Tensor("int64", data, [padded, this.contextSize]) };
    let out;
    try {
      out = (await this.session.run(feeds))[OUTPUT_NAME];
    } catch (error) {
      throw new NametoolError(`the model failed to run (${String(error.message || error).split("\n")[0]})`);
    }
    check(sameDims(out.dims, [padded, ...this.outputDims]),
      `the model gave logits of shape [${out.dims}] for ${padded} contexts, expected [${[padded, ...this.outputDims]}]`);
    const width = this.outputDims.reduce((a, b) => a * b, 1);
    return out.data.subarray(0, rows * width);
  }
}

function memberIndex(name) {
  const found = /members\.(\d+)\./.exec(name);
  return found ? Number(found[1]) : 0;
}

function checkTemperature(t) {
  check(typeof t === "number" && Number.isFinite(t) && t >= 0, `temperature ${t} must be a finite number >= 0`);
}

// Two principal axes of an embedding table: [{char, x, y}], for the 2-D map.
export function project2d(table) {
  const { rows, chars } = table;
  const n = rows.length;
  const d = rows[0].length;
  const mean = new Float64Array(d);
  rows.forEach((r) => r.forEach((v, j) => { mean[j] += v / n; }));
  const centred = rows.map((r) => Float64Array.from(r, (v, j) => v - mean[j]));
  const cov = Array.from({ length: d }, () => new Float64Array(d));
  for (const r of centred) for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) cov[i][j] += r[i] * r[j];
  const axes = [];
  for (let k = 0; k < Math.min(2, d); k++) {
    let v = Float64Array.from({ length: d }, (_, i) => 1 + i / d);
    for (let it = 0; it < 200; it++) {
      const w = new Float64Array(d);
      for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) w[i] += cov[i][j] * v[j];
      for (const a of axes) { const dot = w.reduce((s, x, i) => s + x * a[i], 0); w.forEach((_, i) => { w[i] -= dot * a[i]; }); }
      const norm = Math.hypot(...w) || 1;
      v = w.map((x) => x / norm);
    }
    const big = v.reduce((best, x) => (Math.abs(x) > Math.abs(best) ? x : best), 0);
    if (big < 0) v = v.map((x) => -x); // a fixed sign: the same picture every time
    axes.push(v);
  }
  return centred.map((r, id) => ({
    char: chars[id],
    x: r.reduce((s, v, i) => s + v * axes[0][i], 0),
    y: axes[1] ? r.reduce((s, v, i) => s + v * axes[1][i], 0) : 0,
  }));
}
