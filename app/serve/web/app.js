// citerag web page: ask (streamed) with clickable citations, revise with diffs, saliency.
// Plain DOM code, no dependencies; every piece of server text goes in through textContent.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, answer: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function showError(box, err) {
  box.textContent = err;
  box.hidden = !err;
}

async function errorText(resp) {
  try {
    const body = await resp.json();
    if (body && body.error) return `${body.error.message} (HTTP ${resp.status})`;
  } catch (_) { /* not JSON */ }
  return `HTTP ${resp.status}`;
}

async function postJSON(path, body) {
  const resp = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    credentials: "same-origin",
    body: JSON.stringify(body),
  });
  if (!resp.ok) throw new Error(await errorText(resp));
  return resp.json();
}

// -- tabs and status -------------------------------------------------------------------

for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => {
    for (const t of document.querySelectorAll(".tab")) {
      const on = t === tab;
      t.classList.toggle("active", on);
      t.setAttribute("aria-selected", String(on));
      $(t.dataset.panel).hidden = !on;
    }
  });
}

async function refreshStatus() {
  const s = $("status");
  try {
    const resp = await fetch("/readyz", { credentials: "same-origin" });
    const body = await resp.json();
    s.textContent = body.ready ? "ready" : (body.message || body.error?.message || "not ready");
    s.className = "status " + (body.ready ? "ok" : "bad");
    if (!body.ready) setTimeout(refreshStatus, 3000);
  } catch (e) {
    s.textContent = "server unreachable";
    s.className = "status bad";
    setTimeout(refreshStatus, 5000);
  }
}

async function loadInfo() {
  try {
    const resp = await fetch("/v1/info", { credentials: "same-origin" });
    if (!resp.ok) return;
    state.info = await resp.json();
    const d = state.info.defaults || {};
    if (d.k) $("opt-k").value = d.k;
    if (d.retriever) $("opt-retriever").value = d.retriever;
  } catch (_) { /* the page still works with its own defaults */ }
}

function hasEndpoint(path) {
  return !!(state.info && state.info.endpoints && state.info.endpoints.includes(path));
}

// -- ask -------------------------------------------------------------------------------

async function readEvents(resp, onEvent) {
  // Server-sent events from a fetch() body ("event: NAME\ndata: JSON\n\n").
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

$("ask-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const question = $("question").value.trim();
  if (!question) return;
  const body = {
    question,
    k: Number($("opt-k").value) || undefined,
    retriever: $("opt-retriever").value,
    verify: $("opt-verify").checked,
    stream: $("opt-stream").checked,
  };
  const button = $("ask-button");
  button.disabled = true;
  showError($("ask-error"), "");
  $("answer-box").hidden = false;
  state.answer = null;
  $("answer").replaceChildren();
  $("references").replaceChildren();
  $("answer-note").textContent = body.verify ? "answering, then verifying each sentence…" : "answering…";
  $("passage-view").hidden = true;
  $("saliency").hidden = true;
  const live = $("answer-live");
  live.textContent = "";
  live.hidden = !body.stream;
  try {
    if (body.stream) {
      const resp = await fetch("/v1/ask", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
        credentials: "same-origin",
        body: JSON.stringify(body),
      });
      if (!resp.ok) throw new Error(await errorText(resp));
      let final = null;
      let tokens = "", consumed = 0; // the live line shows the text after the last whole sentence
      const streamed = streamedAnswer();
      state.answer = streamed;
      await readEvents(resp, (name, data) => {
        if (name === "token") {
          tokens += data.text;
          live.textContent = tokens.slice(consumed);
        } else if (name === "sentence") {
          addStreamedSentence(streamed, data);
          for (const text of data.removed ? [] : [data.text, stripMarkers(data.text)]) {
            const at = tokens.indexOf(text, consumed);
            if (at >= 0) { consumed = at + text.length; break; }
          }
          live.textContent = tokens.slice(consumed).replace(/^\s*(\[[^\]]*\]\s*)*/, "");
        } else if (name === "final") final = data;
        else if (name === "error") throw new Error(data.message || "the server failed");
      });
      if (!final) throw new Error("the answer stream ended without a final event");
      renderAnswer(final);
    } else {
      renderAnswer(await postJSON("/v1/ask", body));
    }
  } catch (e) {
    showError($("ask-error"), e.message);
    $("answer-note").textContent = "";
  } finally {
    live.hidden = true;
    button.disabled = false;
  }
});

function stripMarkers(text) {
  return text.replace(/\s*\[\d+(?:\s*,\s*\d+)*\]/g, "");
}

function supportBadge(sentence, threshold) {
  // Only verified answers get badges (without verify, `support` is the post-hoc similarity).
  if (threshold === undefined || sentence.support === undefined || sentence.support === null) return null;
  const ok = sentence.support >= threshold;
  let label = ok ? "supported" : "unsupported";
  if (sentence.revised) label = ok ? "revised" : "revised, unsupported";
  return el("span", { class: "badge " + (ok ? "supported" : "unsupported"), title: `support ${sentence.support.toFixed(2)}` },
    `${label} ${sentence.support.toFixed(2)}`);
}

const UNSHOWN = "evidence found in the index by verification: not shown to the generator";

function isUnshown(answer, n) {
  const p = answer.passages.find((x) => x.n === n);
  return Boolean(p && p.shown === false);
}

function pageLabel(p) {
  // "p. 2, " / "pp. 2–3, " for a PDF passage (the API sends page/page_end only for those); else "".
  if (p.page == null) return "";
  return (p.page_end != null && p.page_end !== p.page ? `pp. ${p.page}–${p.page_end}` : `p. ${p.page}`) + ", ";
}

// Offsets from the server count Unicode code points (Python strings); JavaScript strings index
// UTF-16 units, so an emoji before a span would shift every highlight after it.
function cpSlice(text, start, end) {
  return Array.from(text).slice(start, end).join("");
}

function sentenceNode(answer, s, i, threshold, saliency) {
  // One answer sentence with its citation links (the streamed and the final rendering share it).
  const span = el("span", { class: "sentence", dataset: { index: String(i) } }, stripMarkers(s.text));
  for (const n of s.citations) {
    const unshown = isUnshown(answer, n);
    span.append(" ", el("a", {
      href: `#passage-${n}`, class: "cite" + (s.post_hoc ? " post-hoc" : "") + (unshown ? " unshown" : ""),
      dataset: { n: String(n), sentence: String(i) },
      title: unshown ? UNSHOWN : s.post_hoc ? "citation attached after generation" : `passage ${n}`,
      onclick: (e) => { e.preventDefault(); showPassage(n, i); },
    }, `[${n}]`));
  }
  const badge = supportBadge(s, threshold);
  if (badge) span.append(" ", badge);
  if (saliency) {
    span.append(" ", el("button", { type: "button", class: "sal-btn", title: "saliency of the evidence for this sentence",
      onclick: () => showSaliency(i) }, "saliency"));
  }
  return span;
}

// -- streamed sentences ------------------------------------------------------------------
// A `sentence` event ({index, text, citations: [{n, doc_id, title, quote, start, end, shown}],
// ...}) is shown as soon as it arrives; a later event for the same index replaces it and
// {index, removed: true} drops it. Until the final event, `state.answer` is this provisional
// answer, so a citation already opens its passage (the quote and its span, from the event).

function streamedAnswer() {
  return { streaming: true, sentences: [], passages: [] };
}

function addStreamedSentence(answer, data) {
  if (data.removed) {
    answer.sentences[data.index] = null;
  } else {
    for (const c of data.citations) {
      if (!answer.passages.some((p) => p.n === c.n)) {
        answer.passages.push({ n: c.n, doc_id: c.doc_id, title: c.title, text: c.quote, start: c.start, end: c.end, shown: c.shown });
      }
    }
    answer.sentences[data.index] = { ...data, citations: data.citations.map((c) => c.n) };
  }
  const box = $("answer");
  box.replaceChildren();
  answer.sentences.forEach((s, i) => { if (s) box.append(sentenceNode(answer, s, i), " "); });
}

function renderAnswer(answer) {
  state.answer = answer;
  const box = $("answer");
  box.replaceChildren();
  const threshold = answer.verification ? answer.verification.threshold : undefined;
  const saliency = hasEndpoint("/v1/attribute");
  answer.sentences.forEach((s, i) => box.append(sentenceNode(answer, s, i, threshold, saliency), " "));
  if (!answer.sentences.length) box.textContent = answer.answer || "(no answer)";
  if (answer.abstained && answer.draft) {
    const reasons = ((answer.abstention || {}).reasons || []).join("; ");
    box.append(el("details", { class: "draft" },
      el("summary", {}, "Draft answer (not shown as an answer: " + (reasons || "not supported by the documents") + ")"),
      el("p", {}, stripMarkers(answer.draft.answer || ""))));
  }
  const refs = $("references");
  refs.replaceChildren();
  for (const c of answer.citations) {
    refs.append(el("li", { value: String(c.n) },
      el("a", { href: `#passage-${c.n}`, class: "ref", onclick: (e) => { e.preventDefault(); showPassage(c.n, null); } },
        c.title || c.doc_id),
      ` (${c.doc_id}, ${pageLabel(c)}characters ${c.start}–${c.end})`,
      c.shown === false ? el("span", { class: "unshown-note" }, ` (${UNSHOWN})`) : null));
  }
  const notes = [];
  if (answer.sentences.some((s) => s.post_hoc)) notes.push("Dashed citations were attached after generation (the sentence had none).");
  if (answer.verification) {
    const v = answer.verification;
    notes.push(`Verified: ${v.supported_after} of ${v.checked} sentences supported by their citations (threshold ${Number(v.threshold).toFixed(2)}).`);
  }
  if ((answer.dropped_citations || []).length) notes.push(`Dropped citation numbers that matched no passage: ${answer.dropped_citations.join(", ")}.`);
  $("answer-note").textContent = notes.join(" ");
}

const STOP = new Set("the a an and or of to in on at by for with from that this these those is are was were be been it its as which who what when where how".split(" "));

function sentenceWords(text) {
  return new Set(stripMarkers(text).toLowerCase().match(/[\p{L}\p{N}]+/gu)?.filter((w) => w.length > 2 && !STOP.has(w)) || []);
}

function markWords(text, words) {
  // The passage text with the words of the citing sentence in bold (DOM nodes, no HTML).
  const frag = document.createDocumentFragment();
  for (const piece of text.split(/([\p{L}\p{N}]+)/u)) {
    if (words.has(piece.toLowerCase())) frag.append(el("b", { class: "match" }, piece));
    else frag.append(piece);
  }
  return frag;
}

async function showPassage(n, sentenceIndex) {
  const answer = state.answer;
  const p = answer.passages.find((x) => x.n === n);
  if (!p) return;
  const view = $("passage-view");
  view.hidden = false;
  $("passage-number").textContent = `[${n}]`;
  $("passage-meta").textContent = `${p.title ? p.title + " · " : ""}${p.doc_id} · ${pageLabel(p)}characters ${p.start}–${p.end}` +
    (p.shown === false ? ` · ${UNSHOWN}` : "");
  const sentence = sentenceIndex === null ? null : answer.sentences[sentenceIndex];
  const words = sentence === null ? new Set() : sentenceWords(sentence.text);
  const quote = sentence === null ? null : (sentence.quotes || []).find((q) => q.n === n);
  const box = $("passage-text");
  const mark = el("mark", { class: "cited-span" });
  if (quote && quote.start >= p.start && quote.end <= p.end && cpSlice(p.text, quote.start - p.start, quote.end - p.start) === quote.text) {
    // The supporting quote (judge) inside the passage, highlighted on its own.
    const a = quote.start - p.start, b = quote.end - p.start;
    mark.append(markWords(cpSlice(p.text, 0, a), words),
      el("mark", { class: "quote", title: `supporting quote, support ${Number(quote.support).toFixed(2)}` }, markWords(quote.text, words)),
      markWords(cpSlice(p.text, b), words));
  } else {
    mark.append(markWords(p.text, words));
  }
  box.replaceChildren(mark);
  for (const a of document.querySelectorAll(".cite.active")) a.classList.remove("active");
  for (const a of document.querySelectorAll(`.cite[data-n="${n}"]`)) a.classList.add("active");
  // Surrounding text of the source document, so the span is seen in context.
  try {
    const q = new URLSearchParams({ start: p.start, end: p.end, context: 240 });
    const resp = await fetch(`/v1/documents/${encodeURIComponent(p.doc_id)}?${q}`, { credentials: "same-origin" });
    if (!resp.ok) return;
    const doc = await resp.json();
    const a = p.start - doc.offset;
    const b = p.end - doc.offset;
    if (cpSlice(doc.text, a, b) !== p.text) return; // the index changed: keep the passage alone
    box.replaceChildren(
      el("span", { class: "context" }, (doc.offset > 0 ? "…" : "") + cpSlice(doc.text, 0, a)),
      mark,
      el("span", { class: "context" }, cpSlice(doc.text, b)),
    );
  } catch (_) { /* the passage alone is still shown */ }
}

// -- saliency (shown only when the server has /v1/attribute) ----------------------------

async function showSaliency(i) {
  // Leave-one-out saliency of every evidence sentence for answer sentence i (POST /v1/attribute).
  const answer = state.answer;
  $("saliency").hidden = false;
  $("saliency-sentence").textContent = `for sentence ${i + 1}: “${stripMarkers(answer.sentences[i].text)}”`;
  const map = $("saliency-map");
  map.textContent = "computing…";
  try {
    const report = await postJSON("/v1/attribute", { answer, methods: ["loo"], level: "sentence" });
    const method = report.methods.loo || Object.values(report.methods)[0];
    const row = (method.scores[i] || []).map((v) => (v === null ? 0 : Number(v)));
    const max = Math.max(1e-9, ...row.map(Math.abs));
    map.replaceChildren();
    const byPassage = new Map();
    for (const src of report.sources) {
      if (!byPassage.has(src.passage)) byPassage.set(src.passage, []);
      byPassage.get(src.passage).push(src);
    }
    for (const [n, sources] of byPassage) {
      const p = el("p", { class: "heat-row" }, el("span", { class: "meta" }, `[${n}] `));
      for (const src of sources) {
        const v = row[src.index] || 0;
        const a = (Math.abs(v) / max).toFixed(3);
        const colour = v >= 0 ? `rgba(220, 60, 30, ${a})` : `rgba(40, 90, 200, ${a})`;
        const ink = Number(a) > 0.55 ? "; color: #fff" : "";
        p.append(el("span", { class: "heat", title: `${src.label}: ${v.toFixed(3)} nats`, style: `background: ${colour}${ink}` }, src.text), " ");
      }
      map.append(p);
    }
  } catch (e) {
    map.textContent = e.message;
  }
}

// -- revise ----------------------------------------------------------------------------

function wordDiff(a, b) {
  // Word-level LCS diff: [["=", text] | ["-", text] | ["+", text]].
  const x = a.split(/(\s+)/).filter((t) => t !== "");
  const y = b.split(/(\s+)/).filter((t) => t !== "");
  const m = x.length, n = y.length;
  const L = Array.from({ length: m + 1 }, () => new Array(n + 1).fill(0));
  for (let i = m - 1; i >= 0; i--) for (let j = n - 1; j >= 0; j--) {
    L[i][j] = x[i] === y[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
  }
  const out = [];
  let i = 0, j = 0;
  while (i < m && j < n) {
    if (x[i] === y[j]) { out.push(["=", x[i]]); i++; j++; }
    else if (L[i + 1][j] >= L[i][j + 1]) out.push(["-", x[i++]]);
    else out.push(["+", y[j++]]);
  }
  while (i < m) out.push(["-", x[i++]]);
  while (j < n) out.push(["+", y[j++]]);
  return out;
}

function renderDiff(a, b) {
  const p = el("p", { class: "diff" });
  for (const [op, text] of wordDiff(a, b)) {
    if (op === "=") p.append(text);
    else p.append(el(op === "-" ? "del" : "ins", {}, text));
  }
  return p;
}

function evidenceList(items) {
  const ul = el("ul", { class: "evidence" });
  for (const e of items) {
    ul.append(el("li", {},
      el("span", { class: "meta" }, `${e.title || e.doc_id} (${e.doc_id}, ${e.start}–${e.end}) support ${Number(e.score).toFixed(2)}: `),
      el("mark", { class: "cited-span" }, e.text)));
  }
  return ul;
}

$("revise-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = $("revise-text").value;
  if (!text.trim()) return;
  const button = $("revise-button");
  button.disabled = true;
  showError($("revise-error"), "");
  $("revise-result").hidden = true;
  try {
    const r = await postJSON("/v1/revise", { text, policy: $("opt-policy").value });
    $("revised-text").textContent = r.revised;
    $("revise-summary").textContent = `${r.edits.length} edit(s); preservation ${Number(r.preservation).toFixed(3)}.`;
    const edits = $("edits");
    edits.replaceChildren();
    if (!r.edits.length) edits.append(el("p", { class: "note" }, "No edits: every claim was kept as written."));
    for (const e of r.edits) {
      edits.append(el("div", { class: "edit" },
        renderDiff(e.original_text, e.revised_text || ""),
        el("p", { class: "meta" }, `support ${Number(e.support).toFixed(2)}, preservation ${Number(e.preservation).toFixed(2)}: ${e.reason}`),
        evidenceList(e.evidence)));
    }
    const claims = $("claims");
    claims.replaceChildren();
    for (const c of r.claims) {
      claims.append(el("li", {},
        el("span", { class: "badge " + (c.supported ? "supported" : "unsupported") }, c.status), " ",
        c.text || c.original_text,
        c.citations.length ? evidenceList(c.citations) : null));
    }
    $("revise-result").hidden = false;
  } catch (e) {
    showError($("revise-error"), e.message);
  } finally {
    button.disabled = false;
  }
});

refreshStatus();
loadInfo();
