// nametool in the browser: load a nametool .onnx file from its bytes, check it, and sample
// names with the semantics of the Python runtime (nametool.runtime): the same random stream
// (docs/random.md), the same sampler arithmetic (runtime/sampling.py), the same order of
// draws (runtime/generation.py). onnxruntime-web computes the logits; it is passed in, so
// this module runs in a page and in Node alike.

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

// metadata_props (field 14 of ModelProto) as an object, and the float32 initializers by name.
export function readOnnx(bytes) {
  const metadata = {};
  const tensors = {};
  for (const field of fields(bytes)) {
    if (field.number === 14 && field.wire === 2) {
      let key = "";
      let value = "";
      for (const f of fields(bytes, field.start, field.end)) {
        if (f.number === 1 && f.wire === 2) key = text(bytes, f);
        if (f.number === 2 && f.wire === 2) value = text(bytes, f);
      }
      metadata[key] = value;
    } else if (field.number === 7 && field.wire === 2) {
      for (const f of fields(bytes, field.start, field.end)) {
        if (f.number === 5 && f.wire === 2) readTensor(bytes, f, tensors);
      }
    }
  }
  return { metadata, tensors };
}

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
    else if (f.number === 9 && f.wire === 2) raw = bytes.slice(f.start, f.end);
  }
  if (type === 1 && raw !== null && raw.length === 4 * dims.reduce((a, b) => a * b, 1)) {
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const values = new Float32Array(raw.length / 4);
    for (let i = 0; i < values.length; i++) values[i] = view.getFloat32(4 * i, true);
    tensors[name] = { dims, values };
  }
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

export class NameModel {
  // Load and check a nametool .onnx file from its bytes. `ort` is onnxruntime-web's module.
  static async load(ort, bytes, { source = "model.onnx" } = {}) {
    bytes = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    const { metadata, tensors } = readOnnx(bytes);
    const meta = parseMeta(metadata);
    let session;
    try {
      session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
    } catch (error) {
      throw new NametoolError(`not a loadable ONNX model (${String(error.message || error).split("\n")[0]})`);
    }
    const model = new NameModel(ort, session, meta, tensors, source);
    model.checkGraph();
    model.known = await knownNames(meta);
    model.verified = await model.checkGolden();
    return model;
  }

  constructor(ort, session, meta, tensors, source) {
    this.ort = ort;
    this.session = session;
    this.meta = meta;
    this.tensors = tensors;
    this.source = source;
    this.chars = [meta.vocab.end_token, ...meta.vocab.chars]; // id order: the end first
    this.endId = 0;
    this.contextSize = meta.model.context_size;
    this.rowsPerCall = ROWS_PER_CALL[(meta.graph && meta.graph.first_layer) || "plain"] || Infinity;
  }

  get vocabSize() {
    return this.chars.length;
  }

  checkGraph() {
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
      check(output.shape.length === 2 && output.shape[1] === this.vocabSize,
        `graph output shape [${output.shape}] disagrees with the vocabulary size ${this.vocabSize}`);
    }
  }

  // The golden rows the file carries: the distributions it computed at export.
  async checkGolden() {
    const golden = this.meta.golden;
    if (!golden || !golden.contexts || !golden.contexts.length) return { ok: true, maxDeviation: null, rows: 0 };
    const logits = await this.logits(golden.contexts.map((c) => this.encodeContext(c)));
    let worst = 0;
    golden.contexts.forEach((_, row) => {
      const probs = nextCharProbs(logits.subarray(row * this.vocabSize, (row + 1) * this.vocabSize));
      probs.forEach((p, id) => { worst = Math.max(worst, Math.abs(p - golden.probs[row][id])); });
    });
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

  // (rows * vocab) float32 logits for an array of id contexts, in calls of rowsPerCall rows.
  async logits(contexts) {
    const step = this.rowsPerCall;
    if (contexts.length <= step) return this.call(contexts);
    const out = new Float32Array(contexts.length * this.vocabSize);
    for (let start = 0; start < contexts.length; start += step) {
      out.set(await this.call(contexts.slice(start, start + step)), start * this.vocabSize);
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
    check(out.dims.length === 2 && out.dims[0] === padded && out.dims[1] === this.vocabSize,
      `the model gave logits of shape [${out.dims}] for ${padded} contexts of a ${this.vocabSize}-id vocabulary`);
    return out.data.subarray(0, rows * this.vocabSize);
  }

  // P(next character | text), most likely first: [{char, p}], the end shown as the end token.
  async next(context = "", { temperature = 1 } = {}) {
    checkTemperature(temperature);
    const logits = await this.logits([this.encodeContext(context)]);
    const probs = nextCharProbs(logits, { temperature });
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
    const V = this.vocabSize;
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
      const logits = await this.logits(contexts);
      const going = [];
      const settings = { temperature: p.temperature, topK: p.topK, topP: p.topP, minP: p.minP, forbid };
      active.forEach((a, i) => {
        const row = logits.subarray(slot[i] * V, (slot[i] + 1) * V);
        let id;
        try {
          id = draw(row, uniforms[a.row * p.maxLen + pos], settings);
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
      verified: this.verified,
    };
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
