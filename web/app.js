// The page: generate names, next-character bars, the embedding map, model info. Its API for
// scripts is window.nametool (ready, generate, next, embeddings, info, load).
//
// An exact file runs on nametool.js's own integer engine unless the page is asked for
// onnxruntime-web (the site's default, in index.html's nametool-engine meta tag, or
// ?engine=onnxruntime-web); a float file always runs on onnxruntime-web. Its wasm build is
// fetched only when a file needs it: a site written with --engine js does not carry it.
import { ENGINES, NameModel, project2d } from "./nametool.js";

const ORT_MODULE = "./ort.wasm.min.mjs";
const SHOWN_NAMES = 1000;
let ortLoading = null;

function loadOrt() {
  ortLoading ??= import(ORT_MODULE).then((ort) => {
    ort.env.wasm.wasmPaths = new URL("./", import.meta.url).href; // the site carries its wasm: no CDN
    ort.env.wasm.numThreads = 1; // threads need cross-origin isolation headers a plain server does not send
    return ort;
  }, () => {
    ortLoading = null;
    throw new Error("this file needs onnxruntime-web, which this site does not carry "
      + "(write the site with: nametool-run web --engine onnxruntime-web)");
  });
  return ortLoading;
}

function siteEngine() {
  const asked = new URLSearchParams(location.search).get("engine")
    || document.querySelector("meta[name=nametool-engine]")?.content || "js";
  if (!ENGINES.includes(asked)) throw new Error(`engine ${JSON.stringify(asked)} is not one of ${ENGINES.join(", ")}`);
  return asked;
}

const $ = (id) => document.getElementById(id);
let model = null;
let modelBytes = null; // the loaded file, to run it again on the other engine
const timings = {};

function showError(error) {
  const line = String((error && error.message) || error).split("\n")[0];
  $("error").textContent = line;
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

// Every call of the API shows its error in the page as well as rejecting.
async function shown(work) {
  try {
    const result = await work();
    clearError();
    return result;
  } catch (error) {
    showError(error);
    throw error;
  }
}

async function load(bytes, source, { engine = $("engine").value } = {}) {
  const started = performance.now();
  const loaded = await NameModel.load(loadOrt, bytes, { source, engine });
  model = loaded;
  modelBytes = bytes;
  timings.loadMs = performance.now() - started;
  const runs = model.engine === "js" ? "the JavaScript engine" : "onnxruntime-web";
  $("status").textContent = `${source}: ${describe(model)}; ${model.form} form on ${runs}; `
    + `loaded and checked in ${timings.loadMs.toFixed(0)} ms`;
  renderInfo();
  renderMembers();
  await Promise.all([renderNext(), renderMap()]);
  return model.info();
}

function describe(m) {
  const c = m.meta.model;
  const members = c.members > 1 ? `, ${c.members} members` : "";
  return `context ${c.context_size}, ${c.embed_dim}-d, hidden ${(c.hidden || []).join(",")}${members}`;
}

function renderInfo() {
  const info = model.info();
  const p = info.provenance;
  const rows = [
    ["file", info.source],
    ["vocabulary", `${info.vocab} and the end ${info.endToken}`],
    ["model", describe(model)],
    ["first layer", (info.graph && info.graph.first_layer) || "plain"],
    ["weights", info.quantization ? info.quantization.scheme : "fp32"],
    ["lengths", `${info.sampling.min_len} to ${info.sampling.max_len}`],
    ["trained on", p.name_count ? `${p.name_count.toLocaleString()} names, ${p.steps} steps` : "unknown"],
    ["test loss", p.test_loss ? `${p.test_loss.toFixed(4)} nats/char` : "unknown"],
    ["names it knows", info.knownNames.toLocaleString()],
    ["form", info.form === "exact" ? "exact (integers: the CLI's names on every device)" : "float"],
    ["engine", info.engine === "js" ? "JavaScript (nametool.js)" : "onnxruntime-web (wasm)"],
    ["golden rows", goldenLine(info.verified)],
  ];
  $("info").replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = k;
    dd.textContent = v;
    return [dt, dd];
  }));
}

function goldenLine(verified) {
  if (!verified.rows) return "none";
  if (verified.exact) return `${verified.rows} match exactly (integer masses)`;
  return `${verified.rows} match (max |dp| ${verified.maxDeviation.toExponential(1)})`;
}

function renderMembers() {
  const { members } = model.embeddings(0);
  $("member").replaceChildren(...Array.from({ length: members }, (_, i) => new Option(`${i}`, `${i}`)));
}

async function renderNext() {
  const probs = await model.next($("context").value);
  $("bars").replaceChildren(...probs.slice(0, 12).map(({ char, p }) => {
    const row = document.createElement("div");
    row.className = "bar";
    const label = document.createElement("span");
    label.textContent = char === model.meta.vocab.end_token ? "end" : char;
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    track.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = `${(100 * p).toFixed(1)}%`;
    row.append(label, track, value);
    return row;
  }));
}

async function renderMap() {
  const points = project2d(model.embeddings(Number($("member").value || 0)));
  const scale = Math.max(...points.flatMap((q) => [Math.abs(q.x), Math.abs(q.y)])) || 1;
  const svg = "http://www.w3.org/2000/svg";
  $("map").replaceChildren(...points.map((q, id) => {
    const label = document.createElementNS(svg, "text");
    label.setAttribute("x", (q.x / scale).toFixed(4));
    label.setAttribute("y", (-q.y / scale).toFixed(4));
    if (id === 0) label.setAttribute("class", "end");
    label.textContent = id === 0 ? "end" : q.char;
    return label;
  }));
}

function formOptions() {
  const form = new FormData($("generate-form"));
  const options = {};
  for (const key of ["count", "temperature", "topK", "topP", "minLen", "maxLen"]) {
    const value = form.get(key).trim();
    if (value !== "") options[key] = Number(value);
  }
  if (form.get("seed").trim() !== "") options.seed = form.get("seed").trim();
  if (form.get("prefix")) options.prefix = form.get("prefix");
  options.unique = form.get("unique") === "on";
  options.novel = form.get("novel") === "on";
  return options;
}

async function generateIntoPage(options) {
  const names = await model.generate(options);
  // a list of 100,000 items takes the browser tens of seconds to lay out: show the first ones
  $("names").replaceChildren(...names.slice(0, SHOWN_NAMES).map((name) => {
    const item = document.createElement("li");
    item.textContent = name;
    return item;
  }));
  $("names-note").hidden = names.length <= SHOWN_NAMES;
  $("names-note").textContent = `the first ${SHOWN_NAMES.toLocaleString("en")} of ${names.length.toLocaleString("en")} names`
    + " (window.nametool.generate returns them all)";
  return names;
}

function loaded() {
  if (!model) throw new Error("no model is loaded (await window.nametool.ready, or load a file)");
  return model;
}

const api = {
  timings,
  generate: (options = {}) => shown(() => { loaded(); return generateIntoPage(options); }),
  next: (context = "", options = {}) => shown(() => loaded().next(context, options)),
  embeddings: (member = 0) => shown(async () => {
    const table = loaded().embeddings(member);
    return { chars: table.chars, rows: table.rows.map((r) => Array.from(r)) };
  }),
  info: () => loaded().info(),
  load: (bytes, source = "a file", options = {}) => shown(() => load(bytes, source, options)),
};
window.nametool = api;

window.addEventListener("error", (event) => showError(event.error || event.message));
window.addEventListener("unhandledrejection", (event) => showError(event.reason));

$("generate-form").addEventListener("submit", (event) => {
  event.preventDefault();
  shown(() => generateIntoPage(formOptions())).catch(() => {});
});
let pending = null;
$("context").addEventListener("input", () => {
  clearTimeout(pending);
  pending = setTimeout(() => shown(renderNext).catch(() => {}), 50);
});
$("member").addEventListener("change", () => shown(renderMap).catch(() => {}));
$("engine").addEventListener("change", () => {
  if (!modelBytes) return;
  const wanted = $("engine").value;
  shown(() => load(modelBytes, model.source, { engine: wanted })).catch(() => {
    $("engine").value = model.engine; // the loaded model stays
  });
});
$("file").addEventListener("change", async () => {
  const file = $("file").files[0];
  if (file) await api.load(new Uint8Array(await file.arrayBuffer()), file.name).catch(() => {});
});

api.ready = (async () => {
  $("engine").value = siteEngine();
  const source = new URLSearchParams(location.search).get("model") || "model.onnx";
  const response = await fetch(source).catch((error) => { throw new Error(`cannot fetch ${source} (${error.message})`); });
  if (!response.ok) throw new Error(`cannot fetch ${source} (HTTP ${response.status})`);
  await load(new Uint8Array(await response.arrayBuffer()), source);
  await generateIntoPage({ count: 10 });
  timings.firstNamesMs = performance.now(); // since navigation started
  clearError();
  return model.info();
})();
api.ready.catch((error) => {
  $("status").textContent = "No model loaded.";
  showError(error);
});
