// bioims web interface: plates, plate maps, the field viewer, similarity search and evaluation, over the same HTTP
// APIs as every other client (`bioims serve`: /image-management, /training, /embedding, /search). No dependency and no
// build step: a hash router renders one page at a time into <main>.

const app = document.getElementById("app");
const ROOT = new URL(".", document.baseURI);
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d",
  "#31a354", "#756bb1", "#636363"];
// channel tints, as bioims.imaging.thumbnails.DEFAULT_COLORS: blue, green, red, magenta, cyan, yellow, grey
const TINTS = [[0, 0, 1], [0, 1, 0], [1, 0, 0], [1, 0, 1], [0, 1, 1], [1, 1, 0], [0.5, 0.5, 0.5]];
const CONTROL = /^(dmso|control|negative control)$/i;
const HISTORY_KEY = "bioims.searches";

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, { method = "GET", body, query } = {}) {
  const url = new URL(path.replace(/^\//, ""), ROOT);
  for (const [k, v] of Object.entries(query || {})) if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  const response = await fetch(url, body === undefined ? { method } :
    { method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) throw new ApiError(response.status, data?.error?.message || `${response.status} ${response.statusText}`);
  return data;
}

const enc = encodeURIComponent;

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "style" && typeof v === "object") for (const [p, x] of Object.entries(v)) el.style.setProperty(p.replace(/[A-Z]/g, c => "-" + c.toLowerCase()), x);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== undefined && c !== null && c !== false) el.append(c);
  return el;
}

function render(...nodes) {
  app.replaceChildren(...nodes);
  app.focus({ preventScroll: true });
}

function errorPage(error) {
  const what = error instanceof ApiError ? (error.status === 404 ? "Not found" : `Error ${error.status}`) : "Error";
  render(h("h1", {}, what), h("p", { class: "error", role: "alert" }, error.message),
    h("p", {}, h("a", { href: "#/plates" }, "Back to the plates")));
}

function meta(entries) {
  return h("dl", { class: "meta" }, ...entries.filter(([, v]) => v !== undefined && v !== null && v !== "")
    .flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]));
}

// ---------------------------------------------------------------------------------------------- plates
async function platesPage() {
  const plates = await api("image-management/plates");
  document.title = "Plates · bioims";
  const rows = plates.map(p => h("tr", {},
    h("td", {}, h("a", { href: `#/plates/${enc(p.plate_id)}` }, p.source_id)), h("td", {}, p.batch || ""),
    h("td", { class: `status-${p.status}` }, p.status), h("td", {}, p.well_count), h("td", {}, p.image_count),
    h("td", {}, (p.channels || []).join(", ")), h("td", {}, p.width ? `${p.width} × ${p.height}` : "")));
  render(h("h1", {}, `Plates (${plates.length})`),
    plates.length ? h("table", { "aria-label": "plates" },
      h("thead", {}, h("tr", {}, ...["plate", "batch", "status", "wells", "fields", "channels", "size"].map(t => h("th", {}, t)))),
      h("tbody", {}, rows))
      : h("p", { class: "muted" }, "No plate yet: ingest one (bioims ingest, or make demo)."));
}

function wellPosition(name) {
  const m = /^([A-Za-z]{1,2})0*(\d{1,2})$/.exec(name || "");
  if (!m) return null;
  const letters = m[1].toUpperCase();
  const row = letters.length === 1 ? letters.charCodeAt(0) - 65 : 26 + letters.charCodeAt(1) - 65;
  return { row, col: Number(m[2]) - 1 };
}

function rowName(row) { return row < 26 ? String.fromCharCode(65 + row) : "A" + String.fromCharCode(65 + row - 26); }

function isControl(metadata) {
  return CONTROL.test(String(metadata?.compound ?? "")) || CONTROL.test(String(metadata?.moa ?? ""));
}

function wellStatus(fields) {
  if (!fields.length) return "no fields";
  if (fields.some(f => f.status === "invalid")) return "invalid";
  return fields.every(f => f.status === "valid") ? "valid" : fields[0].status;
}

function colouring(values, by) {
  if (by === "concentration") {
    const logs = values.filter(v => Number(v) > 0).map(v => Math.log10(Number(v)));
    const lo = Math.min(...logs), hi = Math.max(...logs);
    return v => {
      if (!(Number(v) > 0)) return "#eceff3";
      const t = hi > lo ? (Math.log10(Number(v)) - lo) / (hi - lo) : 1;
      return `hsl(${260 - 200 * t}, 70%, ${62 - 22 * t}%)`;
    };
  }
  if (by === "status") return v => ({ valid: "#2e7d32", invalid: "#b3261e", "no fields": "#eceff3" }[v] || "#9e9e9e");
  const order = [...new Set(values.map(String))].sort();
  return v => v === undefined || v === null || v === "" ? "#eceff3" : PALETTE[order.indexOf(String(v)) % PALETTE.length];
}

async function platePage(plateId, params) {
  const [plate, wells, images] = await Promise.all([api(`image-management/plates/${enc(plateId)}`),
    api(`image-management/plates/${enc(plateId)}/wells`), api(`image-management/plates/${enc(plateId)}/images`)]);
  document.title = `${plate.source_id} · bioims`;
  const by = ["compound", "moa", "concentration", "status"].includes(params.get("by")) ? params.get("by") : "moa";
  const fieldsOf = {};
  for (const f of images) (fieldsOf[f.well_source_id] ||= []).push(f);
  const placed = wells.map(w => ({ ...w, plate: plate.source_id, pos: wellPosition(w.source_id),
    fields: fieldsOf[w.source_id] || [] }))
    .filter(w => w.pos);
  const rows = Math.max(8, ...placed.map(w => w.pos.row + 1)), cols = Math.max(12, ...placed.map(w => w.pos.col + 1));
  const [nr, nc] = rows <= 8 && cols <= 12 ? [8, 12] : rows <= 16 && cols <= 24 ? [16, 24] : [32, 48];
  const valueOf = w => by === "status" ? wellStatus(w.fields) : w.metadata?.[by];
  const colour = colouring(placed.map(valueOf), by);
  const at = new Map(placed.map(w => [`${w.pos.row},${w.pos.col}`, w]));
  const panel = h("section", { class: "card", id: "well-panel", "aria-label": "well" },
    h("p", { class: "muted" }, "Click a well to list its fields."));
  const grid = h("div", { class: `platemap${nc > 12 ? " dense" : ""}`, role: "grid", "aria-label": `plate map by ${by}`,
    style: { gridTemplateColumns: `auto repeat(${nc}, max-content)` } },
    h("span"), ...Array.from({ length: nc }, (_, c) => h("span", { class: "axis" }, c + 1)));
  for (let r = 0; r < nr; r++) {
    grid.append(h("span", { class: "axis" }, rowName(r)));
    for (let c = 0; c < nc; c++) {
      const w = at.get(`${r},${c}`);
      if (!w) { grid.append(h("span", { class: "well empty", "aria-hidden": "true" })); continue; }
      const value = valueOf(w);
      const label = `${w.source_id}: ${value ?? "no " + by}${isControl(w.metadata) ? " (control)" : ""}`;
      grid.append(h("button", { class: `well${isControl(w.metadata) ? " control" : ""}`, title: label,
        "aria-label": label, "aria-pressed": "false", "data-well": w.source_id, style: { background: colour(value) },
        onclick: e => showWell(w, e.currentTarget, panel) }, isControl(w.metadata) ? "D" : ""));
    }
  }
  const values = [...new Set(placed.map(valueOf).filter(v => v !== undefined && v !== null))];
  values.sort((a, b) => by === "concentration" ? Number(a) - Number(b) : String(a).localeCompare(String(b)));
  const select = h("select", { id: "colour-by", onchange: e => { location.hash = `#/plates/${enc(plateId)}?by=${e.target.value}`; } },
    ...["moa", "compound", "concentration", "status"].map(v => h("option", { value: v, selected: v === by }, v)));
  render(h("h1", {}, `Plate ${plate.source_id}`),
    meta([["batch", plate.batch], ["status", plate.status], ["wells", plate.well_count], ["fields", plate.image_count],
      ["channels", (plate.channels || []).join(", ")], ["problems", (plate.problems || []).join("; ")]]),
    h("div", { class: "controls" }, h("label", { for: "colour-by" }, "colour by", select)),
    h("div", { class: "row" }, h("div", {}, grid,
      h("div", { class: "legend", "aria-label": "legend" }, ...values.slice(0, 40).map(v => h("span", { style: { "--swatch": colour(v) } }, String(v))),
        h("span", { class: "muted" }, "D = control (DMSO) well"))), panel));
}

function showWell(well, button, panel) {
  for (const b of document.querySelectorAll(".well[aria-pressed=true]")) b.setAttribute("aria-pressed", "false");
  button.setAttribute("aria-pressed", "true");
  const m = well.metadata || {};
  panel.replaceChildren(h("h2", {}, `Well ${well.source_id}`),
    meta([["compound", m.compound], ["concentration", m.concentration], ["MOA", m.moa]]),
    h("p", {}, h("a", { href: `#/search?id=${enc(`${well.plate}/${well.source_id}`)}&level=well`, id: "similar-wells" },
      "find similar wells")),
    h("ul", { "aria-label": "fields" }, ...well.fields.map(f => h("li", {},
      h("a", { href: `#/fields/${enc(f.image_id)}` }, `field ${f.field_source_id ?? f.image_id}`), " ",
      h("span", { class: `status-${f.status}` }, f.status), f.error ? h("span", { class: "muted" }, ` ${f.error}`) : ""))));
}

// ---------------------------------------------------------------------------------------- field viewer
function loadGrey(dataUrl) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => {
      const c = document.createElement("canvas");
      c.width = img.width; c.height = img.height;
      const ctx = c.getContext("2d");
      ctx.drawImage(img, 0, 0);
      const rgba = ctx.getImageData(0, 0, img.width, img.height).data;
      const grey = new Uint8ClampedArray(img.width * img.height);
      for (let i = 0; i < grey.length; i++) grey[i] = rgba[4 * i];
      resolve(grey);
    };
    img.onerror = () => reject(new Error("a channel image could not be decoded"));
    img.src = dataUrl;
  });
}

// the colour max-projection of bioims.imaging.thumbnails, in the browser: per pixel and RGB component,
// the maximum over the shown channels of tint * (grey - low) / (high - low)
function composite(canvas, greys, settings, width, height) {
  canvas.width = width; canvas.height = height;
  const ctx = canvas.getContext("2d");
  const out = ctx.createImageData(width, height);
  const px = out.data;
  for (let i = 3; i < px.length; i += 4) px[i] = 255;
  greys.forEach((grey, c) => {
    const s = settings[c];
    if (!s.on) return;
    const span = Math.max(1, s.high - s.low), [r, g, b] = s.tint;
    for (let i = 0; i < grey.length; i++) {
      const v = Math.min(1, Math.max(0, (grey[i] - s.low) / span)) * 255;
      const j = 4 * i;
      if (r * v > px[j]) px[j] = r * v;
      if (g * v > px[j + 1]) px[j + 1] = g * v;
      if (b * v > px[j + 2]) px[j + 2] = b * v;
    }
  });
  ctx.putImageData(out, 0, 0);
}

async function thumbnailCanvas(imageId, width = 160) {
  const view = await api(`image-management/images/${enc(imageId)}/view`, { query: { width, crops: 0 } });
  const canvas = h("canvas", { class: "thumb", "aria-label": `field ${imageId}` });
  if (!view.channels.length) return h("div", { class: "thumb muted" }, view.error || view.status);
  const greys = await Promise.all(view.channels.map(c => loadGrey(c.png)));
  composite(canvas, greys, view.channels.map((_, i) => ({ on: true, low: 0, high: 255, tint: TINTS[i % TINTS.length] })),
    view.width, view.height);
  return canvas;
}

async function fieldPage(imageId, params) {
  const specs = await api("training/embeddings");
  const spec = params.get("spec") || (specs[0] && specs[0].name) || null;
  const [view, tags] = await Promise.all([
    api(`image-management/images/${enc(imageId)}/view`, { query: { width: 640, spec } }),
    api(`image-management/images/${enc(imageId)}/tags`)]);
  document.title = `Field ${view.plate}/${view.well}/${view.site} · bioims`;
  const canvas = h("canvas", { id: "composite", "aria-label": "colour composite of the shown channels" });
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${view.width || 1} ${view.height || 1}`);
  svg.setAttribute("id", "boxes");
  for (const b of view.boxes || []) {
    const r = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    for (const [k, v] of Object.entries({ x: b.x, y: b.y, width: b.width, height: b.height, fill: "none", stroke: "#ffeb3b", "stroke-width": 1 })) r.setAttribute(k, v);
    svg.append(r);
  }
  const settings = view.channels.map((_, i) => ({ on: true, low: 0, high: 255, tint: TINTS[i % TINTS.length] }));
  const greys = await Promise.all(view.channels.map(c => loadGrey(c.png)));
  const redraw = () => composite(canvas, greys, settings, view.width, view.height);
  const hex = t => "#" + t.map(v => Math.round(v * 255).toString(16).padStart(2, "0")).join("");
  const controls = view.channels.map((c, i) => h("fieldset", { class: "channel", style: { "--swatch": hex(settings[i].tint) } },
    h("label", {}, h("input", { type: "checkbox", checked: true, "data-channel": c.name,
      onchange: e => { settings[i].on = e.target.checked; redraw(); } }), ` ${c.name}`), h("span"),
    h("label", { for: `low-${i}` }, "low"), h("input", { type: "range", id: `low-${i}`, min: 0, max: 254, value: 0,
      "aria-label": `${c.name} low`, oninput: e => { settings[i].low = Number(e.target.value); redraw(); } }),
    h("label", { for: `high-${i}` }, "high"), h("input", { type: "range", id: `high-${i}`, min: 1, max: 255, value: 255,
      "aria-label": `${c.name} high`, oninput: e => { settings[i].high = Number(e.target.value); redraw(); } })));
  const specSelect = h("select", { id: "spec", onchange: e => { location.hash = `#/fields/${enc(imageId)}?spec=${enc(e.target.value)}`; } },
    ...specs.map(s => h("option", { value: s.name, selected: s.name === spec }, s.name)));
  const m = view.metadata || {};
  render(
    h("h1", {}, `Field ${view.plate} · ${view.well} · ${view.site}`),
    h("p", {}, h("a", { href: `#/plates/${enc(view.plate_id)}` }, `plate ${view.plate}`), " · ",
      h("a", { href: `#/search?image=${enc(imageId)}`, id: "find-similar" }, "find similar fields")),
    view.error ? h("p", { class: "error", role: "alert" }, `${view.status}: ${view.error}`) : "",
    h("div", { class: "row" },
      view.channels.length ? h("div", { class: "viewer" }, canvas, svg) : "",
      h("div", {}, ...controls,
        specs.length ? h("div", { class: "controls" }, h("label", { for: "spec" }, "cells under spec", specSelect),
          view.boxes ? h("label", {}, h("span", {}, "boxes"), h("input", { type: "checkbox", id: "show-boxes", checked: true,
            onchange: e => { svg.style.display = e.target.checked ? "" : "none"; } })) : "") : "",
        h("div", { class: "card" }, meta([["status", view.status], ["compound", m.compound], ["concentration", m.concentration],
          ["MOA", m.moa], ["size", view.field_width ? `${view.field_width} × ${view.field_height}` : ""],
          ["cells", view.cells === null || view.cells === undefined ? (spec ? "not preprocessed under " + spec : "") : view.cells]]),
        h("h2", {}, "Tags"), h("div", { class: "tags" }, ...tags.map(t => h("span", { class: "tag" }, t.value)))))),
    view.crops && view.crops.length ? h("section", {}, h("h2", {}, `Cells (${view.cells}; first ${view.crops.length})`),
      h("p", { class: "muted" }, "A cell opens its neighbours in the run's cell index (bioims index build RUN --level cell)."),
      h("div", { class: "crops" }, ...view.crops.map((src, i) => h("a", { href: `#/search?id=${enc(`${imageId}#${i}`)}&level=cell`,
        "aria-label": `cells like cell ${i + 1}` }, h("img", { src, alt: `cell ${i + 1}`, loading: "lazy" }))))) : "");
  if (greys.length) redraw();
}

// ---------------------------------------------------------------------------------------------- search
function pastSearches() {
  try { return JSON.parse(localStorage.getItem(HISTORY_KEY) || "[]"); } catch { return []; }
}

function remember(result) {
  const entry = { id: result.search_id, at: new Date().toISOString(), train_id: result.train_id,
    query: result.image_id || result.id || "uploaded images", hits: result.hits.length };
  localStorage.setItem(HISTORY_KEY, JSON.stringify([entry, ...pastSearches().filter(e => e.id !== entry.id)].slice(0, 50)));
}

const tagList = text => text.split(",").map(t => t.trim()).filter(Boolean);

function lazyThumb(imageId) {
  const holder = h("div", { class: "thumb", "data-image": imageId });
  const observer = new IntersectionObserver(async entries => {
    if (!entries.some(e => e.isIntersecting)) return;
    observer.disconnect();
    try { holder.replaceWith(await thumbnailCanvas(imageId)); } catch (e) { holder.textContent = e.message; }
  });
  observer.observe(holder);
  return holder;
}

function hitCard(hit) {
  const target = hit.image_id ? `#/fields/${enc(hit.image_id)}` : null;
  return h("article", { class: "hit", "data-id": hit.id },
    hit.image_id ? h("a", { href: target, "aria-label": `open ${hit.id}` }, lazyThumb(hit.image_id)) : "",
    h("div", {}, h("span", { class: "rank" }, `#${hit.rank}`),
      ` distance ${hit.distance !== 0 && Math.abs(hit.distance) < 0.001 ? hit.distance.toExponential(2) : hit.distance.toFixed(3)}`),
    h("div", {}, hit.compound ?? hit.id), h("div", { class: "muted" }, [hit.concentration, hit.moa].filter(Boolean).join(" · ")),
    h("div", { class: "muted" }, [hit.plate, hit.well].filter(Boolean).join(" / ")));
}

async function references(imageId) {
  // DMSO fields of the query's plate, beside the hits for reference
  const info = await api(`image-management/images/${enc(imageId)}`);
  const fields = await api(`image-management/plates/${enc(info.plate_id)}/images`);
  return fields.filter(f => f.image_id !== imageId && f.status === "valid" && isControl(f.metadata)).slice(0, 4);
}

async function searchPage(params, record = null) {
  const indexes = await api("search/indexes");
  const runs = [...new Set(indexes.map(i => i.train_id))];
  const query = record ? record.query || {} : {};
  const imageId = params.get("image") || query.image_id || "";
  const itemId = params.get("id") || query.id || "";
  const form = {
    train: params.get("train") || record?.train_id || runs[0] || "",
    level: params.get("level") || query.level || "field",
    k: params.get("k") || query.k || 10,
    include: params.get("include") ?? (query.include_tags || []).join(", "),
    exclude: params.get("exclude") ?? (query.exclude_tags || []).join(", "),
    moa: params.get("moa") === "1" || Boolean(query.require_moa),
  };
  document.title = "Search · bioims";
  const levels = indexes.filter(i => i.train_id === form.train).map(i => i.level);
  const results = h("section", { id: "results", "aria-label": "hits" });
  const input = (id, label, attrs) => h("label", { for: id }, label, h("input", { id, name: id, ...attrs }));
  const formEl = h("form", { class: "controls", id: "search-form", onsubmit: e => { e.preventDefault(); submit(); } },
    input("image", "query field (image id)", { value: imageId, size: 18 }),
    input("item", "or item (PLATE/WELL, COMPOUND@CONC, IMAGE#N)", { value: itemId, size: 22 }),
    h("label", { for: "train" }, "model (train run)", h("select", { id: "train",
      onchange: e => { location.hash = `#/search?image=${enc(document.getElementById("image").value)}&train=${enc(e.target.value)}`; } },
      ...runs.map(r => h("option", { value: r, selected: r === form.train }, r)))),
    h("label", { for: "level" }, "level", h("select", { id: "level" }, ...(levels.length ? levels : ["field"]).map(l => h("option", { value: l, selected: l === form.level }, l)))),
    input("k", "k", { type: "number", min: 1, max: 1000, value: form.k, style: { width: "5rem" } }),
    input("include", "include tags", { value: form.include, placeholder: "moa:Actin disruptors" }),
    input("exclude", "exclude tags", { value: form.exclude, placeholder: "compound:DMSO" }),
    h("label", { for: "moa" }, "require MOA", h("input", { type: "checkbox", id: "moa", checked: form.moa })),
    h("span", { id: "uploads", class: "controls" }),
    h("button", { type: "submit", id: "run-search" }, "Search"));
  const channels = form.train ? await specChannels(form.train) : [];
  formEl.querySelector("#uploads").append(...channels.map(c => input(`upload-${c}`, `or upload ${c}`,
    { type: "file", accept: ".tif,.tiff,.png", "data-channel": c })));
  const past = pastSearches();
  render(h("h1", {}, record ? `Search ${record.search_id}` : "Search"),
    runs.length ? formEl : h("p", { class: "error" }, "No search index yet: embed a train run and build its index (bioims index build)."),
    results,
    past.length ? h("section", {}, h("h2", {}, "Recent searches"), h("ul", { "aria-label": "recent searches" },
      ...past.slice(0, 10).map(e => h("li", {}, h("a", { href: `#/searches/${enc(e.id)}` }, e.id), ` ${e.query} · ${e.train_id} · ${e.hits} hits`)))) : "");
  if (record) showResults(results, record, query.image_id);
  else if (itemId && runs.length) submit();  // a link to an item's neighbours (a well of the plate map)

  async function submit() {
    const value = id => document.getElementById(id).value.trim();
    const uploads = [...document.querySelectorAll("#uploads input[type=file]")].filter(i => i.files.length);
    const body = { train_id: value("train"), level: value("level"), k: Number(value("k")),
      include_tags: tagList(value("include")), exclude_tags: tagList(value("exclude")),
      require_moa: document.getElementById("moa").checked };
    if (uploads.length) {  // an uploaded field: one image per channel of the model's spec (the service says which is missing)
      body.images = {};
      for (const i of uploads) body.images[i.dataset.channel] = await base64(i.files[0]);
    } else if (value("item")) body.id = value("item");
    else body.image_id = value("image");
    results.replaceChildren(h("p", { class: "muted" }, "searching…"));
    try {
      const result = await api("search/searches", { method: "POST", body });
      remember(result);
      window.history.replaceState(null, "", `#/searches/${enc(result.search_id)}`);  // shareable, no re-render
      showResults(results, result, body.image_id);
    } catch (e) {
      results.replaceChildren(h("p", { class: "error", role: "alert" }, e.message));
    }
  }
}

async function specChannels(trainId) {
  try {
    const run = await api(`training/trainings/${enc(trainId)}`);
    return (await api(`training/embeddings/${enc(run.spec_name)}`)).input.channels;
  } catch { return []; }  // a profile set has no spec: no upload
}

function base64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1]);
    reader.onerror = () => reject(new Error(`${file.name} could not be read`));
    reader.readAsDataURL(file);
  });
}

async function showResults(section, result, imageId) {
  const hits = result.hits || [];
  const header = h("p", {}, `${hits.length} hits`, result.ms !== undefined && result.ms !== null ? ` in ${result.ms.toFixed(1)} ms` : "",
    " · ", h("a", { href: `#/searches/${enc(result.search_id)}`, id: "search-link" }, "link to this search"));
  const grid = h("div", { class: "hits", id: "hit-grid" }, ...hits.map(hitCard));
  section.replaceChildren(header);
  if (imageId) {
    const reference = h("div", { class: "hits" },
      h("article", { class: "hit reference", "data-id": imageId }, h("a", { href: `#/fields/${enc(imageId)}` }, lazyThumb(imageId)), h("div", {}, "query")));
    section.append(h("h2", {}, "Query and controls of its plate"), reference);
    references(imageId).then(fields => reference.append(...fields.map(f => h("article", { class: "hit reference", "data-id": f.image_id },
      h("a", { href: `#/fields/${enc(f.image_id)}` }, lazyThumb(f.image_id)), h("div", {}, `control ${f.well_source_id}`)))))
      .catch(() => {});
  }
  section.append(h("h2", {}, "Nearest neighbours"), grid);
}

// ------------------------------------------------------------------------------------------ evaluation
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, v);
  for (const c of children.flat()) if (c !== undefined && c !== null) el.append(c);
  return el;
}

const pct = v => v === null || v === undefined ? "—" : `${(100 * v).toFixed(1)}%`;

function scatter(points, colour) {
  const W = 560, H = 420, pad = 12;
  const xs = points.map(p => p.x), ys = points.map(p => p.y);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const sx = x => pad + (x1 > x0 ? (x - x0) / (x1 - x0) : 0.5) * (W - 2 * pad);
  const sy = y => H - pad - (y1 > y0 ? (y - y0) / (y1 - y0) : 0.5) * (H - 2 * pad);
  return svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, id: "embedding-map", role: "img",
    "aria-label": "embedding map", style: "background:#fff;border:1px solid #d8dce3" },
    ...points.map(p => {
      const label = `${p.compound ?? ""}${p.concentration !== null && p.concentration !== undefined ? " @ " + p.concentration : ""} · ${p.moa ?? ""}`;
      const dot = svg("circle", { cx: sx(p.x).toFixed(1), cy: sy(p.y).toFixed(1), r: 5, fill: colour(p.moa), stroke: "#fff" },
        svg("title", {}, label));
      return p.image_id ? svg("a", { href: `#/fields/${enc(p.image_id)}`, "data-image": p.image_id, "aria-label": label }, dot) : dot;
    }));
}

function curves(history) {
  const W = 420, H = 180, pad = 28;
  if (!history.length) return h("p", { class: "muted" }, "no epoch yet");
  const epochs = history.map(e => e.epoch), last = Math.max(...epochs), first = Math.min(...epochs);
  const line = (key, colour) => {
    const values = history.map(e => e[key]).filter(v => v !== null && v !== undefined);
    if (!values.length) return null;
    const lo = Math.min(...values), hi = Math.max(...values);
    const pts = history.filter(e => e[key] !== null && e[key] !== undefined).map(e =>
      `${(pad + (last > first ? (e.epoch - first) / (last - first) : 0.5) * (W - 2 * pad)).toFixed(1)},` +
      `${(H - pad - (hi > lo ? (e[key] - lo) / (hi - lo) : 0.5) * (H - 2 * pad)).toFixed(1)}`).join(" ");
    return svg("g", {}, svg("polyline", { points: pts, fill: "none", stroke: colour, "stroke-width": 2 }),
      svg("text", { x: W - pad, y: key === "loss" ? 14 : 28, "text-anchor": "end", fill: colour, "font-size": 11 },
        `${key} ${lo.toFixed(3)}–${hi.toFixed(3)}`));
  };
  return svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, id: "curves", role: "img", "aria-label": "training curves",
    style: "background:#fff;border:1px solid #d8dce3" }, line("loss", "#d62728"), line("validation_nsc", "#1f77b4"),
    svg("text", { x: pad, y: H - 8, "font-size": 11, fill: "#5b6474" }, `epochs ${first}–${last}`));
}

async function evaluationPage(params) {
  const specs = await api("training/embeddings");
  const runs = (await Promise.all(specs.map(s => api(`training/embeddings/${enc(s.name)}/trainings`)))).flat();
  document.title = "Evaluation · bioims";
  const complete = runs.filter(r => r.status === "complete");
  const trainId = params.get("train") || complete[0]?.train_id;
  const level = params.get("level") === "field" ? "field" : "treatment";
  const scores = r => ["nsc", "nscb", "map"].map(k => h("td", { "data-run": r.train_id, "data-score": k }, r.status === "complete" ? "…" : ""));
  const table = h("table", { "aria-label": "train runs" },
    h("thead", {}, h("tr", {}, ...["run", "spec", "status", "hold-out", "epochs", "best validation NSC", "NSC", "NSCB", "mAP"]
      .map(t => h("th", {}, t)))),
    h("tbody", {}, ...runs.map(r => h("tr", {},
      h("td", {}, r.status === "complete" ? h("a", { href: `#/evaluation?train=${enc(r.train_id)}&level=${level}` }, r.train_id) : r.train_id),
      h("td", {}, r.spec_name), h("td", { class: `status-${r.status}` }, r.status), h("td", {}, (r.holdout || []).join(", ") || "none"),
      h("td", {}, (r.metrics?.history || []).length), h("td", {}, pct(r.metrics?.best_validation_nsc)), ...scores(r)))));
  for (const r of complete) {  // each model's own NSC, NSCB and mAP, filled in as they come
    api(`embedding/trainings/${enc(r.train_id)}/evaluation`).then(e => {
      for (const cell of table.querySelectorAll(`td[data-run="${CSS.escape(r.train_id)}"]`)) cell.textContent = pct(e[cell.dataset.score]);
    }, () => { for (const cell of table.querySelectorAll(`td[data-run="${CSS.escape(r.train_id)}"]`)) cell.textContent = "—"; });
  }
  const body = h("section", { id: "evaluation" });
  render(h("h1", {}, "Evaluation"), runs.length ? table : h("p", { class: "muted" }, "No train run yet (bioims train)."), body);
  if (!trainId) return;
  const run = await api(`training/trainings/${enc(trainId)}`);
  let ev;
  try {
    ev = await api(`embedding/trainings/${enc(trainId)}/evaluation`, { query: { level } });
  } catch (e) {
    body.replaceChildren(h("h2", {}, trainId), h("p", { class: "error", role: "alert" }, e.message), curves(run.metrics?.history || []));
    return;
  }
  const moas = [...new Set(ev.points.map(p => p.moa))].sort();
  const colour = m => PALETTE[moas.indexOf(m) % PALETTE.length];
  const max = Math.max(1, ...ev.confusion.counts.flat());
  const confusion = h("table", { "aria-label": "confusion matrix" },
    h("thead", {}, h("tr", {}, h("th", {}, "true \\ predicted"), ...ev.confusion.predicted.map(p => h("th", {}, p)))),
    h("tbody", {}, ...ev.confusion.true.map((t, i) => h("tr", {}, h("th", {}, t), ...ev.confusion.counts[i].map(n =>
      h("td", { style: { background: n ? `rgba(31, 95, 191, ${(0.15 + 0.85 * n / max).toFixed(2)})` : "", color: n / max > 0.5 ? "#fff" : "" } }, n || ""))))));
  const perMoa = h("table", { "aria-label": "per-MOA accuracy" }, h("tbody", {}, ...Object.entries(ev.per_moa).map(([m, a]) =>
    h("tr", {}, h("td", {}, m), h("td", {}, h("div", { style: { width: `${Math.round(160 * (a || 0))}px`, height: "10px", background: colour(m) } })), h("td", {}, pct(a))))));
  const levelSelect = h("select", { id: "map-level", onchange: e => { location.hash = `#/evaluation?train=${enc(trainId)}&level=${e.target.value}`; } },
    ...["treatment", "field"].map(l => h("option", { value: l, selected: l === level }, l)));
  body.replaceChildren(h("h2", {}, `${trainId}`),
    h("div", { class: "card", id: "metrics" }, meta([["NSC", pct(ev.nsc)], ["NSCB", pct(ev.nscb)], ["mAP", pct(ev.map)],
      ["compound-level", pct(ev.compound_level)], ["treatments", ev.treatments], ["MOAs", ev.moas], ["compounds", ev.compounds],
      ["metric", ev.metric]])),
    h("div", { class: "row" },
      h("div", {}, h("h2", {}, `Map of ${level}s (${ev.map_method}); a point opens its field`),
        h("div", { class: "controls" }, h("label", { for: "map-level" }, "map of", levelSelect)), scatter(ev.points, colour),
        h("div", { class: "legend" }, ...moas.map(m => h("span", { style: { "--swatch": colour(m) } }, m)))),
      h("div", {}, h("h2", {}, "Per-MOA accuracy (NSC)"), perMoa, h("h2", {}, "Training curves"), curves(run.metrics?.history || []))),
    h("h2", {}, "Confusion matrix (NSC)"), confusion);
}

// ---------------------------------------------------------------------------------------------- router
async function route() {
  const [path, search = ""] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(search);
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const section = parts[0] === "search" || parts[0] === "searches" ? "search" : parts[0] === "evaluation" ? "evaluation" : "plates";
  for (const a of document.querySelectorAll("header nav a")) {
    if (a.dataset.section === section) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  try {
    if (parts.length === 0 || (parts[0] === "plates" && parts.length === 1)) return await platesPage();
    if (parts[0] === "plates" && parts.length === 2) return await platePage(parts[1], params);
    if (parts[0] === "fields" && parts.length === 2) return await fieldPage(parts[1], params);
    if (parts[0] === "search" && parts.length === 1) return await searchPage(params);
    if (parts[0] === "searches" && parts.length === 2) return await searchPage(params, await api(`search/searches/${enc(parts[1])}`));
    if (parts[0] === "evaluation" && parts.length === 1) return await evaluationPage(params);
    throw new ApiError(404, `no page ${location.hash}; the pages are #/plates, #/plates/ID, #/fields/ID, #/search, ` +
      "#/searches/ID, #/evaluation");
  } catch (error) {
    errorPage(error);
  } finally {
    app.dataset.ready = location.hash;
  }
}

window.addEventListener("hashchange", route);
route();
