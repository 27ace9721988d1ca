/* autoroi dashboard: plain JavaScript, no build step, nothing fetched from
 * elsewhere. Every request goes to the page's own origin with a relative URL:
 *
 *   GET  v2/models/roi              the served model version (KServe v2 metadata)
 *   GET  options                    the pickers' regions, vehicle models (with
 *                                   segments), servable pairs, incentive types,
 *                                   weeks (the local router; used only when the
 *                                   v2 metadata does not carry them in
 *                                   "parameters")
 *   POST v1/models/roi:predict      the predictions (one batch per panel)
 *   GET  endpoint                   the version, when v2 metadata is unavailable
 *   GET  report                     the serving version's training report
 *   GET  health                     the deployed version's age and the monitor's
 *                                   history (the local router; elsewhere the
 *                                   Model health panel says it is not offered)
 *
 * A refusal (4xx) shows the server's "field" and "reason"; an endpoint that
 * does not answer (network error, 502/503) is shown as down, and the panels
 * keep their last values, dimmed.
 */
(function () {
  "use strict";

  var PREDICT_URL = "v1/models/roi:predict";
  var METADATA_URL = "v2/models/roi";
  var CURVE_POINTS = 20;
  var DEBOUNCE_MS = 300;

  var $ = function (id) { return document.getElementById(id); };
  var els = {
    version: $("model-version"),
    reportLink: $("report-link"),
    reportStatus: $("report-status"),
    status: $("status"),
    errors: $("errors"),
    errorList: $("error-list"),
    retry: $("retry"),
    form: $("scenario"),
    region: $("region"),
    model: $("vehicle-model"),
    week: $("week"),
    type: $("incentive-type"),
    amount: $("amount"),
    roi: $("roi"),
    roiInterval: $("roi-interval"),
    probPaysBack: $("prob-pays-back"),
    cellLevel: $("cell-level"),
    curve: $("curve"),
    curveCaption: $("curve-caption"),
    curveDecisions: $("curve-decisions"),
    planForm: $("plan-form"),
    planBudget: $("plan-budget"),
    planFrom: $("plan-from"),
    planTo: $("plan-to"),
    planRegion: $("plan-region"),
    planType: $("plan-type"),
    planObjective: $("plan-objective"),
    planMinProb: $("plan-min-prob"),
    planStatus: $("plan-status"),
    planTotals: $("plan-totals"),
    planMap: $("plan-map"),
    planTable: $("plan-table"),
    planCsv: $("plan-csv"),
    heatmap: $("heatmap"),
    heatmapCaption: $("heatmap-caption"),
    panels: {
      prediction: $("prediction-panel"),
      curve: $("curve-panel"),
      heatmap: $("heatmap-panel"),
    },
  };

  var state = {
    version: null,
    options: null,
    segmentOf: {},
    msrpOf: {},
    modelsOf: {}, // region -> servable vehicle models
    errors: {}, // source -> error
    round: 0,
    lastProgram: null,
    timer: null,
  };

  // ------------------------------------------------------------------ requests

  function EndpointError(info) {
    this.name = "EndpointError";
    this.kind = info.kind; // "down" | "rejected"
    this.status = info.status || null;
    this.field = info.field || null;
    this.reason = info.reason || null;
    this.message = info.message || "request failed";
  }
  EndpointError.prototype = Object.create(Error.prototype);

  async function requestJSON(url, init) {
    var resp;
    try {
      resp = await fetch(url, Object.assign({ cache: "no-store" }, init || {}));
    } catch (e) {
      throw new EndpointError({
        kind: "down",
        message: "cannot reach the endpoint at " + location.origin + " (" + (e && e.message) + ")",
      });
    }
    var text = await resp.text();
    var body = null;
    try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
    if (!resp.ok) {
      var msg = body && (body.error || (typeof body.detail === "string" ? body.detail : null));
      throw new EndpointError({
        kind: resp.status >= 500 ? "down" : "rejected",
        status: resp.status,
        field: body && body.field,
        reason: body && body.reason,
        message: msg || text.slice(0, 300) || resp.statusText,
      });
    }
    return body;
  }

  // One v1 batch; a batch over the server's limit (413) is split in halves.
  async function predict(instances) {
    try {
      var body = await requestJSON(PREDICT_URL, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ instances: instances }),
      });
      noteVersion(body && body.model_version);
      return body.predictions;
    } catch (e) {
      if (e instanceof EndpointError && e.status === 413 && instances.length > 1) {
        var half = Math.ceil(instances.length / 2);
        var first = await predict(instances.slice(0, half));
        var second = await predict(instances.slice(half));
        return first.concat(second);
      }
      throw e;
    }
  }

  // ------------------------------------------------------------------ errors

  function setError(source, err) {
    if (err) state.errors[source] = err; else delete state.errors[source];
    renderErrors();
  }

  var SOURCE_LABEL = {
    version: "Model version",
    options: "Pickers",
    prediction: "Prediction",
    curve: "ROI curve",
    heatmap: "Heatmap",
    plan: "Plan",
  };

  function renderErrors() {
    var list = els.errorList;
    list.textContent = "";
    var sources = Object.keys(state.errors);
    sources.forEach(function (source) {
      var e = state.errors[source];
      var li = document.createElement("li");
      li.dataset.source = source;
      li.dataset.kind = e.kind || "error";
      var head = document.createElement("strong");
      head.textContent = (SOURCE_LABEL[source] || source) + ": ";
      li.appendChild(head);
      if (e.kind === "rejected" && (e.field || e.reason)) {
        li.appendChild(document.createTextNode(
          "the model server rejected the input (HTTP " + e.status + ") — field "));
        var f = document.createElement("code");
        f.className = "field";
        f.textContent = e.field || "?";
        li.appendChild(f);
        li.appendChild(document.createTextNode(": "));
        var r = document.createElement("span");
        r.className = "reason";
        r.textContent = e.reason || e.message;
        li.appendChild(r);
      } else if (e.kind === "down") {
        li.appendChild(document.createTextNode(
          "the endpoint is down" + (e.status ? " (HTTP " + e.status + ")" : "") + ": " + e.message));
      } else {
        li.appendChild(document.createTextNode((e.status ? "HTTP " + e.status + ": " : "") + e.message));
      }
      list.appendChild(li);
    });
    els.errors.hidden = sources.length === 0;
    markInvalidInputs();
  }

  var FIELD_INPUT = {
    region: "region",
    vehicle_model: "model",
    week_start: "week",
    incentive_type: "type",
    incentive_amount: "amount",
  };

  function markInvalidInputs() {
    Object.keys(FIELD_INPUT).forEach(function (k) { els[FIELD_INPUT[k]].removeAttribute("aria-invalid"); });
    var e = state.errors.prediction;
    if (!e || e.kind !== "rejected" || !e.field) return;
    var m = /^instances\[\d+\]\.(\w+)$/.exec(e.field);
    if (m && FIELD_INPUT[m[1]]) els[FIELD_INPUT[m[1]]].setAttribute("aria-invalid", "true");
  }

  function setStale(panel, stale) {
    els.panels[panel].classList.toggle("stale", !!stale);
  }

  // ------------------------------------------------------------------ formatting

  var fmtUnits = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2, minimumFractionDigits: 2 });
  var fmtMoney = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD", maximumFractionDigits: 0 });
  var fmtPct = new Intl.NumberFormat("en-US", { style: "percent", maximumFractionDigits: 1, minimumFractionDigits: 1 });
  var fmtPct0 = new Intl.NumberFormat("en-US", { style: "percent", maximumFractionDigits: 0 });

  function num(v) { return typeof v === "number" && isFinite(v); }
  function roiText(v) { return num(v) ? fmtPct.format(v) : "n/a"; }
  function signClass(v) { return num(v) ? (v < 0 ? "neg" : "pos") : ""; }

  function label(s) { return String(s).replace(/_/g, " "); }

  // ------------------------------------------------------------------ version, options

  function noteVersion(v) {
    if (!v || v === state.version) return;
    var changed = state.version !== null;
    state.version = v;
    els.version.textContent = v;
    els.version.dataset.state = "ok";
    if (changed) {
      els.status.textContent = "the endpoint now serves " + v + ": reloading the pickers";
      loadHealth();
      loadVersion().then(loadOptions).then(function () { schedule(true, 0); });
    }
  }

  async function loadVersion() {
    try {
      var meta = await requestJSON(METADATA_URL);
      var v = meta && meta.versions && meta.versions[0];
      if (!v) throw new EndpointError({ kind: "error", message: "the v2 metadata names no version" });
      noteVersion(v);
      setError("version", null);
      return meta;
    } catch (e) {
      try {
        var doc = await requestJSON("endpoint");
        if (doc && doc.version) {
          noteVersion(doc.version);
          setError("version", null);
          return null;
        }
      } catch (ignored) { /* keep the first error */ }
      els.version.textContent = "unknown";
      els.version.dataset.state = "error";
      setError("version", e);
      return null;
    }
  }

  function optionsFromMetadata(meta) {
    var p = meta && meta.parameters;
    if (p && Array.isArray(p.regions) && Array.isArray(p.vehicle_models) && Array.isArray(p.pairs)) return p;
    return null;
  }

  async function loadOptions(meta) {
    var opts = optionsFromMetadata(meta);
    if (!opts) {
      try {
        opts = await requestJSON("options");
      } catch (e) {
        setError("options", e);
        return false;
      }
    }
    setError("options", null);
    applyOptions(opts);
    return true;
  }

  function fillSelect(select, items, keep) {
    var old = keep !== undefined ? keep : select.value;
    select.textContent = "";
    items.forEach(function (it) {
      var o = document.createElement("option");
      o.value = it.value;
      o.textContent = it.text;
      select.appendChild(o);
    });
    if (items.some(function (it) { return it.value === old; })) select.value = old;
  }

  function applyOptions(opts) {
    state.options = opts;
    state.segmentOf = {};
    state.msrpOf = {};
    state.modelsOf = {};
    opts.vehicle_models.forEach(function (m) {
      state.segmentOf[m.name] = m.segment;
      state.msrpOf[m.name] = m.msrp;
    });
    opts.pairs.forEach(function (p) {
      (state.modelsOf[p[0]] = state.modelsOf[p[0]] || []).push(p[1]);
    });
    var regions = opts.regions.filter(function (r) { return state.modelsOf[r]; });
    fillSelect(els.region, regions.map(function (r) { return { value: r, text: r }; }));
    fillModels();
    fillSelect(els.type, opts.incentive_types.map(function (t) { return { value: t, text: label(t) }; }),
      els.type.value || (opts.incentive_types.indexOf("cash_rebate") >= 0 ? "cash_rebate" : undefined));
    if (!els.week.value) els.week.value = defaultWeek(opts.weeks);
    if (opts.weeks && opts.weeks.first) els.week.min = opts.weeks.first;
    fillSelect(els.planRegion, [{ value: "", text: "all regions" }].concat(
      opts.regions.map(function (r) { return { value: r, text: r }; })));
    fillSelect(els.planType, [{ value: "", text: "all types" }].concat(
      opts.incentive_types.map(function (t) { return { value: t, text: label(t) }; })));
    if (!els.planFrom.value) {
      var first = defaultWeek(opts.weeks);
      els.planFrom.value = first;
      var to = new Date(first + "T00:00:00Z");
      to.setUTCDate(to.getUTCDate() + 7 * 12);
      els.planTo.value = to.toISOString().slice(0, 10);
    }
  }

  function fillModels() {
    var models = (state.modelsOf[els.region.value] || []).slice().sort();
    fillSelect(els.model, models.map(function (m) {
      return { value: m, text: m + (state.segmentOf[m] ? " (" + state.segmentOf[m] + ")" : "") };
    }));
  }

  function defaultWeek(weeks) {
    if (weeks && weeks.last) return weeks.last;
    var d = new Date();
    d.setUTCDate(d.getUTCDate() + ((8 - d.getUTCDay()) % 7)); // the next Monday
    return d.toISOString().slice(0, 10);
  }

  // ------------------------------------------------------------------ the scenario

  function amountValue() {
    var raw = els.amount.value.trim();
    if (raw === "") return null; // the server names the field
    return Number(raw);
  }

  function scenario() {
    return {
      region: els.region.value,
      vehicle_model: els.model.value,
      week_start: els.week.value,
      incentive_type: els.type.value,
      incentive_amount: amountValue(),
    };
  }

  function programKey(s) {
    return [s.week_start, s.incentive_type, s.incentive_amount].join("|");
  }

  function schedule(heatmapToo, delay) {
    clearTimeout(state.timer);
    state.timer = setTimeout(function () { update(heatmapToo); }, delay === undefined ? DEBOUNCE_MS : delay);
  }

  async function update(forceHeatmap) {
    if (!state.options) return;
    var round = ++state.round;
    var s = scenario();
    els.status.textContent = "updating…";
    try {
      var preds = await predict([s]);
      if (round !== state.round) return;
      renderPrediction(preds[0]);
      setError("prediction", null);
      setStale("prediction", false);
    } catch (e) {
      if (round !== state.round) return;
      setError("prediction", e);
      ["prediction", "curve", "heatmap"].forEach(function (p) { setStale(p, true); });
      els.status.textContent = "not updated: " + (e.kind === "rejected" ? "the input was rejected" : "the endpoint is down");
      return;
    }
    var jobs = [updateCurve(s, round)];
    var key = programKey(s);
    if (forceHeatmap || key !== state.lastProgram) jobs.push(updateHeatmap(s, round, key));
    else setStale("heatmap", false);
    await Promise.all(jobs);
    if (round === state.round) {
      els.status.textContent = "updated " + new Date().toLocaleTimeString();
    }
  }

  function renderPrediction(p) {
    els.roi.textContent = roiText(p.roi);
    els.roi.className = signClass(p.roi);
    els.roi.dataset.value = num(p.roi) ? String(p.roi) : "";
    var hasBand = num(p.roi_lower) && num(p.roi_upper);
    els.roiInterval.textContent = hasBand ? "90 %: " + roiText(p.roi_lower) + " to " + roiText(p.roi_upper) : "";
    els.roiInterval.dataset.lower = hasBand ? String(p.roi_lower) : "";
    els.roiInterval.dataset.upper = hasBand ? String(p.roi_upper) : "";
    els.probPaysBack.textContent = num(p.prob_pays_back)
      ? "Chance it pays back (ROI > 0): " + fmtPct0.format(p.prob_pays_back) : "";
    els.probPaysBack.dataset.value = num(p.prob_pays_back) ? String(p.prob_pays_back) : "";
    var dd = document.querySelectorAll("#prediction dd[data-field]");
    Array.prototype.forEach.call(dd, function (d) {
      var f = d.dataset.field;
      var v = p[f];
      d.dataset.value = num(v) ? String(v) : "";
      if (f === "incentive_cost" || f === "incremental_profit") d.textContent = num(v) ? fmtMoney.format(v) : "n/a";
      else d.textContent = num(v) ? fmtUnits.format(v) : "n/a";
      d.className = f === "incremental_profit" || f === "incremental_units" ? signClass(v) : "";
    });
    els.cellLevel.textContent = p.cell_level && p.cell_level !== "region_model"
      ? "Estimated from the coarser " + label(p.cell_level) + " cell " + p.context_region + " / " +
        p.context_vehicle_model + " (too few dealers in the exact cell)."
      : "";
  }

  // ------------------------------------------------------------------ ROI curve

  function niceCeil(x) {
    var p = Math.pow(10, Math.floor(Math.log10(x)));
    var steps = [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= x) return steps[i] * p;
    return 10 * p;
  }

  function curveAmounts(s) {
    var msrp = state.msrpOf[s.vehicle_model] || 0;
    var a = num(s.incentive_amount) && s.incentive_amount >= 0 ? s.incentive_amount : 0;
    var upper = niceCeil(Math.max(2 * a, 0.1 * msrp, 1000));
    var out = [];
    for (var i = 1; i <= CURVE_POINTS; i++) out.push(Math.round((upper * i) / CURVE_POINTS));
    return out;
  }

  async function updateCurve(s, round) {
    var amounts = curveAmounts(s);
    var instances = amounts.map(function (a) { return Object.assign({}, s, { incentive_amount: a }); });
    try {
      var preds = await predict(instances);
      if (round !== state.round) return;
      drawCurve(amounts, preds, s);
      setError("curve", null);
      setStale("curve", false);
    } catch (e) {
      if (round !== state.round) return;
      setError("curve", e);
      setStale("curve", true);
    }
  }

  var SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, parent) {
    var el = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { el.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(el);
    return el;
  }

  function ticks(lo, hi, n) {
    var step = niceCeil((hi - lo) / n || 1);
    var out = [];
    for (var i = Math.ceil(lo / step); i * step <= hi + 1e-9; i++) out.push(i * step + 0); // + 0: no "-0"
    return out;
  }

  // The amounts an analyst decides with, by the rules of autoroi/decisions.py
  // (autoroi predict --amounts): where the incentive stops paying back (the last
  // ROI = 0 crossing, interpolated), the most profitable amount, and the largest
  // amount that pays back with P(ROI > 0) >= SAFE_PROB.
  var SAFE_PROB = 0.8;

  function amountDecisions(amounts, preds) {
    var rows = [];
    amounts.forEach(function (a, i) {
      var q = preds[i] || {};
      if (!num(q.roi)) return;
      rows.push({ a: a, roi: q.roi, profit: num(q.incremental_profit) ? q.incremental_profit : null,
        p: num(q.prob_pays_back) ? q.prob_pays_back : null });
    });
    var out = { kind: "none", breakEven: null, best: null, safe: null };
    if (rows.some(function (r) { return r.roi > 0; })) {
      if (rows[rows.length - 1].roi > 0) out.kind = "above_grid";
      else {
        var k = -1;
        for (var i = 0; i < rows.length - 1; i++) if (rows[i].roi > 0 && rows[i + 1].roi <= 0) k = i;
        var lo = rows[k], hi = rows[k + 1];
        out.kind = "crossing";
        out.breakEven = lo.a + (lo.roi / (lo.roi - hi.roi)) * (hi.a - lo.a);
      }
    }
    rows.forEach(function (r) {
      if (r.profit !== null && r.profit > 0 && (!out.best || r.profit > out.best.profit)) out.best = r;
      if (r.p !== null && r.p >= SAFE_PROB) out.safe = r;
    });
    return out;
  }

  function drawDecisions(dec, root, x, y) {
    var marks = svg("g", { class: "marks" }, root);
    function mark(cls, a, v, title) {
      var c = svg("circle", { class: "mark " + cls, cx: x(a), cy: y(v), r: 6, "data-amount": a }, marks);
      svg("title", {}, c).textContent = title;
    }
    var parts = [];
    if (dec.kind === "crossing") {
      mark("break-even", dec.breakEven, 0, "break-even: " + fmtMoney.format(dec.breakEven));
      parts.push("Break-even at " + fmtMoney.format(dec.breakEven) + " per unit");
    } else if (dec.kind === "above_grid") {
      parts.push("Pays back at every amount shown");
    } else {
      parts.push("No amount shown pays back");
    }
    if (dec.best) {
      mark("best-profit", dec.best.a, dec.best.roi, "most profitable: " + fmtMoney.format(dec.best.a));
      parts.push("most profitable at " + fmtMoney.format(dec.best.a) + " (profit " +
        fmtMoney.format(dec.best.profit) + ", ROI " + roiText(dec.best.roi) + ")");
    }
    if (dec.safe) {
      mark("safe-amount", dec.safe.a, dec.safe.roi, "largest with P(ROI > 0) >= " + SAFE_PROB * 100 + " %");
      parts.push("pays back with P \u2265 " + SAFE_PROB * 100 + " % up to " + fmtMoney.format(dec.safe.a));
    }
    els.curveDecisions.textContent = parts.join("; ") + ".";
    els.curveDecisions.dataset.kind = dec.kind;
    els.curveDecisions.dataset.breakEven = dec.breakEven === null ? "" : String(dec.breakEven);
    els.curveDecisions.dataset.best = dec.best ? String(dec.best.a) : "";
    els.curveDecisions.dataset.safe = dec.safe ? String(dec.safe.a) : "";
  }

  function drawCurve(amounts, preds, s) {
    var W = 860, H = 280, m = { l: 58, r: 36, t: 12, b: 38 };
    var pts = amounts.map(function (a, i) {
      var q = preds[i] || {};
      return { a: a, roi: q.roi, lo: q.roi_lower, hi: q.roi_upper };
    });
    var rois = [];
    pts.forEach(function (p) {
      [p.roi, p.lo, p.hi].forEach(function (v) { if (num(v)) rois.push(v); });
    });
    var ylo = Math.min(0, Math.min.apply(null, rois.concat([0])));
    var yhi = Math.max(0, Math.max.apply(null, rois.concat([0])));
    var pad = (yhi - ylo) * 0.08 || 0.1;
    ylo -= pad; yhi += pad;
    var xhi = amounts[amounts.length - 1];
    var x = function (a) { return m.l + (a / xhi) * (W - m.l - m.r); };
    var y = function (v) { return m.t + ((yhi - v) / (yhi - ylo)) * (H - m.t - m.b); };

    var root = svg("svg", { id: "curve-svg", viewBox: "0 0 " + W + " " + H, role: "img",
      "aria-label": "predicted ROI versus incentive amount" });
    var axis = svg("g", { class: "axis" }, root);
    svg("line", { x1: m.l, x2: m.l, y1: m.t, y2: H - m.b }, axis);
    svg("line", { x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b }, axis);
    ticks(0, xhi, 5).forEach(function (v) {
      svg("line", { x1: x(v), x2: x(v), y1: H - m.b, y2: H - m.b + 4 }, axis);
      svg("text", { x: x(v), y: H - m.b + 16, "text-anchor": "middle" }, axis).textContent = fmtMoney.format(v);
    });
    ticks(ylo, yhi, 5).forEach(function (v) {
      svg("line", { x1: m.l - 4, x2: m.l, y1: y(v), y2: y(v) }, axis);
      svg("text", { x: m.l - 7, y: y(v) + 4, "text-anchor": "end" }, axis).textContent = fmtPct0.format(v);
    });
    svg("text", { x: (W + m.l) / 2, y: H - 4, "text-anchor": "middle" }, axis).textContent =
      "incentive amount per unit";
    svg("line", { class: "zero", x1: m.l, x2: W - m.r, y1: y(0), y2: y(0) }, root);

    // the 90 % band: one closed shape per run of amounts with an interval
    var runs = [], run = [];
    pts.forEach(function (p) {
      if (num(p.roi) && num(p.lo) && num(p.hi)) run.push(p);
      else if (run.length) { runs.push(run); run = []; }
    });
    if (run.length) runs.push(run);
    var bands = svg("g", { class: "bands" }, root);
    runs.forEach(function (r) {
      var upper = r.map(function (p) { return x(p.a).toFixed(1) + " " + y(p.hi).toFixed(1); });
      var lower = r.slice().reverse().map(function (p) { return x(p.a).toFixed(1) + " " + y(p.lo).toFixed(1); });
      svg("path", { class: "roi-band", d: "M " + upper.concat(lower).join(" L ") + " Z" }, bands);
    });

    var d = "", pen = false;
    pts.forEach(function (p) {
      if (!num(p.roi)) { pen = false; return; }
      d += (pen ? " L " : (d ? " M " : "M ")) + x(p.a).toFixed(1) + " " + y(p.roi).toFixed(1);
      pen = true;
    });
    svg("path", { class: "roi-line", d: d }, root);
    var dots = svg("g", { class: "points" }, root);
    pts.forEach(function (p) {
      if (!num(p.roi)) return;
      var c = svg("circle", { class: "roi-point", cx: x(p.a), cy: y(p.roi), r: 3,
        "data-amount": p.a, "data-roi": p.roi,
        "data-lower": num(p.lo) ? p.lo : "", "data-upper": num(p.hi) ? p.hi : "" }, dots);
      svg("title", {}, c).textContent = fmtMoney.format(p.a) + ": ROI " + roiText(p.roi) +
        (num(p.lo) && num(p.hi) ? " (90 %: " + roiText(p.lo) + " to " + roiText(p.hi) + ")" : "");
    });
    var a = s.incentive_amount;
    if (num(a) && a >= 0 && a <= xhi) {
      svg("line", { class: "current", x1: x(a), x2: x(a), y1: m.t, y2: H - m.b }, root);
      var cur = num(Number(els.roi.dataset.value)) && els.roi.dataset.value !== "" ? Number(els.roi.dataset.value) : null;
      if (cur !== null && cur >= ylo && cur <= yhi) {
        svg("circle", { class: "current-point", cx: x(a), cy: y(cur), r: 5 }, root);
      }
    }
    drawDecisions(amountDecisions(amounts, preds), root, x, y);
    els.curve.textContent = "";
    els.curve.appendChild(root);
    els.curveCaption.textContent = label(s.incentive_type) + " for " + s.vehicle_model + " in " + s.region +
      ", week of " + s.week_start + ": " + amounts.length + " amounts from " + fmtMoney.format(amounts[0]) +
      " to " + fmtMoney.format(xhi) + " (dashed: the amount above; shaded: the 90 % interval).";
  }

  // ------------------------------------------------------------------ plan

  var PLAN_URL = "v2/models/roi/plan";

  async function runPlan() {
    var body = { budget: Number(els.planBudget.value), from: els.planFrom.value, to: els.planTo.value,
      objective: els.planObjective.value };
    if (els.planRegion.value) body.regions = [els.planRegion.value];
    if (els.planType.value) body.types = [els.planType.value];
    var p = els.planMinProb.value.trim();
    if (p !== "") body.min_prob_pays_back = Number(p);
    els.planStatus.textContent = "planning…";
    els.planStatus.dataset.state = "busy";
    try {
      var doc = await requestJSON(PLAN_URL, {
        method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
      });
      drawPlan(doc, body);
      setError("plan", null);
    } catch (e) {
      els.planStatus.textContent = "no plan: see the error above";
      els.planStatus.dataset.state = "error";
      setError("plan", e);
    }
  }

  function drawPlan(doc, body) {
    var t = doc.totals, rows = doc.plan;
    els.planStatus.textContent = rows.length + " scenarios chosen of " + t.options.toLocaleString("en-US") +
      " (" + t.cells + " cells × " + t.weeks + " weeks), model " + doc.model_version + ".";
    els.planStatus.dataset.state = "done";
    els.planTotals.textContent = "";
    var interval = num(t.roi_lower) && num(t.roi_upper) ? roiText(t.roi_lower) + " to " + roiText(t.roi_upper) : "n/a";
    [["budget", fmtMoney.format(body.budget), body.budget],
     ["expected incentive cost", fmtMoney.format(t.incentive_cost), t.incentive_cost],
     ["incremental units", Math.round(t.incremental_units).toLocaleString("en-US"), t.incremental_units],
     ["incremental profit", fmtMoney.format(t.incremental_profit), t.incremental_profit],
     ["portfolio ROI", rows.length ? roiText(t.roi) : "n/a", t.roi],
     ["90 % interval", interval, ""],
     ["P(ROI > 0)", num(t.prob_pays_back) ? fmtPct0.format(t.prob_pays_back) : "n/a", t.prob_pays_back]]
      .forEach(function (kv, i) {
        var dt = document.createElement("dt"), dd = document.createElement("dd");
        dt.textContent = kv[0];
        dd.textContent = kv[1];
        dd.dataset.field = ["budget", "incentive_cost", "incremental_units", "incremental_profit", "roi",
          "interval", "prob_pays_back"][i];
        dd.dataset.value = kv[2] === null || kv[2] === undefined ? "" : String(kv[2]);
        els.planTotals.appendChild(dt);
        els.planTotals.appendChild(dd);
      });
    // region x segment: the cost the plan spends there, and how many scenarios
    var regions = [], segments = [], cost = {}, count = {};
    rows.forEach(function (r) {
      var seg = state.segmentOf[r.vehicle_model] || "?";
      if (regions.indexOf(r.region) < 0) regions.push(r.region);
      if (segments.indexOf(seg) < 0) segments.push(seg);
      var k = r.region + "|" + seg;
      cost[k] = (cost[k] || 0) + r.incentive_cost;
      count[k] = (count[k] || 0) + 1;
    });
    regions.sort(); segments.sort();
    els.planMap.textContent = "";
    if (rows.length) {
      var head = els.planMap.insertRow();
      head.appendChild(document.createElement("th"));
      segments.forEach(function (g) { var th = document.createElement("th"); th.textContent = g; head.appendChild(th); });
      regions.forEach(function (r) {
        var tr = els.planMap.insertRow();
        var th = document.createElement("th");
        th.textContent = r;
        tr.appendChild(th);
        segments.forEach(function (g) {
          var td = tr.insertCell(), k = r + "|" + g;
          td.className = "cell plan-cell";
          td.dataset.cost = cost[k] ? String(cost[k]) : "0";
          td.textContent = cost[k] ? fmtMoney.format(cost[k]) + " (" + count[k] + ")" : "";
        });
      });
    }
    els.planTable.textContent = "";
    var cols = [["region", "region"], ["vehicle model", "vehicle_model"], ["week", "week_start"],
      ["incentive", "incentive_type"], ["$/unit", "incentive_amount"], ["cost", "incentive_cost"],
      ["profit", "incremental_profit"], ["ROI", "roi"], ["P>0", "prob_pays_back"]];
    var hr = els.planTable.insertRow();
    cols.forEach(function (c) { var th = document.createElement("th"); th.textContent = c[0]; hr.appendChild(th); });
    rows.slice(0, 50).forEach(function (r) {
      var tr = els.planTable.insertRow();
      tr.className = "plan-row";
      cols.forEach(function (c) {
        var v = r[c[1]], td = tr.insertCell();
        if (c[1] === "incentive_type") td.textContent = label(v);
        else if (c[1] === "incentive_amount" || c[1] === "incentive_cost" || c[1] === "incremental_profit")
          td.textContent = fmtMoney.format(v);
        else if (c[1] === "roi") td.textContent = roiText(v);
        else if (c[1] === "prob_pays_back") td.textContent = num(v) ? fmtPct0.format(v) : "n/a";
        else td.textContent = String(v).slice(0, 10);
      });
    });
    // every chosen scenario with every serving field, as CSV
    if (els.planCsv.href) URL.revokeObjectURL(els.planCsv.href);
    if (rows.length) {
      var keys = Object.keys(rows[0]);
      var quote = function (v) {
        var x = v === null || v === undefined ? "" : String(v);
        return /[",\n]/.test(x) ? '"' + x.replace(/"/g, '""') + '"' : x;
      };
      var lines = [keys.join(",")].concat(rows.map(function (r) {
        return keys.map(function (k) { return quote(r[k]); }).join(",");
      }));
      els.planCsv.href = URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv" }));
      els.planCsv.dataset.rows = String(rows.length);
      els.planCsv.hidden = false;
    } else {
      els.planCsv.hidden = true;
    }
  }

  // ------------------------------------------------------------------ heatmap

  async function updateHeatmap(s, round, key) {
    var pairs = state.options.pairs;
    var instances = pairs.map(function (p) {
      return { region: p[0], vehicle_model: p[1], week_start: s.week_start,
        incentive_type: s.incentive_type, incentive_amount: s.incentive_amount };
    });
    try {
      var preds = await predict(instances);
      if (round !== state.round) return;
      drawHeatmap(pairs, preds, s);
      state.lastProgram = key;
      setError("heatmap", null);
      setStale("heatmap", false);
    } catch (e) {
      if (round !== state.round) return;
      setError("heatmap", e);
      setStale("heatmap", true);
    }
  }

  function heatColor(v, scale) {
    if (!num(v)) return "#f0f0f0";
    var t = Math.max(-1, Math.min(1, v / scale));
    // diverging, colour-blind safe: orange (loss) - white - blue (gain)
    var to = t < 0 ? [230, 97, 1] : [33, 102, 172];
    var k = Math.abs(t) * 0.85;
    var c = to.map(function (ch) { return Math.round(255 + (ch - 255) * k); });
    return "rgb(" + c.join(",") + ")";
  }

  function drawHeatmap(pairs, preds, s) {
    var regions = state.options.regions.filter(function (r) { return state.modelsOf[r]; });
    var segments = state.options.segments;
    var acc = {};
    pairs.forEach(function (p, i) {
      var v = preds[i] && preds[i].roi;
      var k = p[0] + "\u0000" + state.segmentOf[p[1]];
      var cell = acc[k] = acc[k] || { sum: 0, n: 0, models: [] };
      cell.models.push(p[1] + ": " + roiText(v));
      if (num(v)) { cell.sum += v; cell.n += 1; }
    });
    var means = Object.keys(acc).map(function (k) { return acc[k].n ? acc[k].sum / acc[k].n : NaN; });
    var scale = Math.max.apply(null, means.filter(num).map(Math.abs).concat([0.05]));

    var t = els.heatmap;
    t.textContent = "";
    var head = t.createTHead().insertRow();
    var corner = document.createElement("th");
    corner.textContent = "region \\ segment";
    head.appendChild(corner);
    segments.forEach(function (g) {
      var th = document.createElement("th");
      th.textContent = g;
      th.scope = "col";
      head.appendChild(th);
    });
    var body = t.createTBody();
    regions.forEach(function (r) {
      var row = body.insertRow();
      var th = document.createElement("th");
      th.textContent = r;
      th.scope = "row";
      row.appendChild(th);
      segments.forEach(function (g) {
        var td = row.insertCell();
        var cell = acc[r + "\u0000" + g];
        td.dataset.region = r;
        td.dataset.segment = g;
        if (!cell || !cell.n) {
          td.className = "empty";
          td.textContent = cell ? "n/a" : "–";
          td.title = cell ? cell.models.join("\n") : "no vehicle model of this segment is served here";
          return;
        }
        var v = cell.sum / cell.n;
        td.className = "cell";
        td.dataset.roi = String(v);
        td.textContent = fmtPct0.format(v);
        td.style.background = heatColor(v, scale);
        td.style.color = Math.abs(v / scale) > 0.6 ? "#fff" : "";
        td.title = r + " · " + g + " (mean of " + cell.n + ")\n" + cell.models.join("\n");
      });
    });
    els.heatmapCaption.textContent = label(s.incentive_type) + " at " + fmtMoney.format(s.incentive_amount) +
      " per unit, week of " + s.week_start + ": " + pairs.length + " region × vehicle model cells.";
  }

  els.heatmap.addEventListener("click", function (ev) {
    var td = ev.target.closest("td.cell");
    if (!td) return;
    var region = td.dataset.region, segment = td.dataset.segment;
    var model = (state.modelsOf[region] || []).slice().sort().filter(function (m) {
      return state.segmentOf[m] === segment;
    })[0];
    if (!model) return;
    els.region.value = region;
    fillModels();
    els.model.value = model;
    schedule(false, 0);
  });

  // ------------------------------------------------------------------ model health

  // GET health (serving/router/health.py): the deployed version and its age,
  // the monitor's records (oldest first) and a summary of the latest one.
  var HEALTH_URL = "health";
  var HEALTH_WEEKS = 26; // weeks on the chart at most
  var HEALTH_RUNS = 10; // monitor runs in the table at most

  var health = {
    panel: $("health-panel"),
    badge: $("health-badge"),
    latest: $("health-latest"),
    empty: $("health-empty"),
    deployed: $("health-deployed"),
    age: $("health-age"),
    wape: $("health-wape"),
    lift: $("health-lift"),
    chart: $("health-chart"),
    chartCaption: $("health-chart-caption"),
    drift: $("health-drift"),
    reasons: $("health-reasons"),
    history: $("health-history"),
  };

  async function loadHealth() {
    var doc;
    try {
      doc = await requestJSON(HEALTH_URL);
    } catch (e) {
      healthUnavailable(e.status === 404
        ? "Model health is not offered by this endpoint (HTTP 404): the local endpoint (autoroi dashboard) serves it."
        : "Model health could not be read: " + e.message);
      return;
    }
    if (!doc || !Array.isArray(doc.history)) {
      healthUnavailable("Model health is not offered by this endpoint.");
      return;
    }
    drawHealth(doc);
  }

  function healthUnavailable(text) {
    health.panel.dataset.state = "unavailable";
    health.badge.textContent = "unknown";
    health.badge.dataset.status = "";
    health.latest.textContent = "";
    health.empty.textContent = text;
    health.empty.hidden = false;
  }

  function setValue(el, text, value) {
    el.textContent = text;
    el.dataset.value = value === null || value === undefined ? "" : String(value);
  }

  function ageText(days) {
    if (!num(days)) return "unknown";
    if (days < 1) return "less than a day";
    var d = Math.floor(days);
    return d + (d === 1 ? " day" : " days");
  }

  function drawHealth(doc) {
    var dep = doc.deployed, sum = doc.summary || {}, hist = doc.history;
    setValue(health.deployed, dep ? dep.version : "none", dep ? dep.version : "");
    setValue(health.age, dep ? ageText(dep.age_days) : "–", dep && num(dep.age_days) ? dep.age_days : "");
    health.age.title = dep && dep.deployed_at ? "deployed at " + dep.deployed_at + " (" + dep.source + ")" : "";
    if (!hist.length) {
      health.panel.dataset.state = "empty";
      health.badge.textContent = "no monitor";
      health.badge.dataset.status = "";
      health.latest.textContent = "";
      var msg = doc.message || "no monitor has run yet";
      health.empty.textContent = msg.charAt(0).toUpperCase() + msg.slice(1) + ".";
      health.empty.dataset.reason = dep ? "no_monitor" : "no_deployment";
      health.empty.hidden = false;
      setValue(health.wape, "–", "");
      setValue(health.lift, "–", "");
      return;
    }
    health.panel.dataset.state = "ready";
    health.empty.hidden = true;
    var status = sum.status || "unknown";
    health.badge.textContent = label(status);
    health.badge.dataset.status = status;
    var latest = hist[hist.length - 1];
    var when = String(sum.created_at || "").slice(0, 10);
    var text = "latest monitor: master " + sum.master_version + (when ? " on " + when : "") +
      ", judged model " + (sum.model_version || "?");
    if (dep && sum.model_version && sum.model_version !== dep.version) {
      text += " (not the version deployed now)";
    }
    health.latest.textContent = text + " · " + doc.runs + " run" + (doc.runs === 1 ? "" : "s") + " in all";
    setValue(health.wape, num(sum.wape)
      ? fmtPct.format(sum.wape) + " / " + (num(sum.reference_wape) ? fmtPct.format(sum.reference_wape) : "n/a") +
        (num(sum.ratio) ? " (" + sum.ratio.toFixed(2) + "×)" : "")
      : "n/a", sum.wape);
    setValue(health.lift, num(sum.lift_ratio) ? sum.lift_ratio.toFixed(2) + "×" : "n/a", sum.lift_ratio);
    drawHealthChart(hist, latest);
    drawDriftFlags(sum.drift || {});
    drawReasons(sum.reasons || []);
    drawHealthRuns(hist);
  }

  // WAPE per observed week: a week that several runs judged shows the latest run's figure.
  function weeklyWape(hist) {
    var byWeek = {};
    hist.forEach(function (r) {
      var weeks = r.accuracy && Array.isArray(r.accuracy.by_week) ? r.accuracy.by_week : [];
      weeks.forEach(function (w) {
        if (!w || !w.week_start || !num(w.wape)) return;
        var k = String(w.week_start).slice(0, 10);
        byWeek[k] = { label: k, wape: w.wape, actual: w.actual_units, predicted: w.predicted_units,
          master: r.master_version };
      });
    });
    return Object.keys(byWeek).sort().slice(-HEALTH_WEEKS).map(function (k) { return byWeek[k]; });
  }

  function drawHealthChart(hist, latest) {
    var pts = weeklyWape(hist), perRun = false;
    if (!pts.length) { // records without weekly figures: one point per run
      perRun = true;
      pts = hist.filter(function (r) { return r.accuracy && num(r.accuracy.wape); }).map(function (r) {
        return { label: String(r.created_at || r.master_version).slice(0, 10), wape: r.accuracy.wape,
          master: r.master_version };
      });
    }
    var ref = null;
    hist.forEach(function (r) { if (r.accuracy && num(r.accuracy.reference_wape)) ref = r.accuracy.reference_wape; });
    health.chart.textContent = "";
    if (!pts.length) {
      health.chartCaption.textContent = "No week has been observed since the deployment yet.";
      return;
    }
    var W = 860, H = 220, m = { l: 50, r: 96, t: 12, b: 36 };
    var yhi = niceCeil(Math.max.apply(null, pts.map(function (p) { return p.wape; })
      .concat([ref === null ? 0 : ref, 0.01])) * 1.1);
    var n = pts.length;
    var x = function (i) { return m.l + (n === 1 ? 0.5 : i / (n - 1)) * (W - m.l - m.r); };
    var y = function (v) { return m.t + ((yhi - v) / yhi) * (H - m.t - m.b); };
    var root = svg("svg", { id: "health-svg", viewBox: "0 0 " + W + " " + H, role: "img",
      "aria-label": "realized units WAPE per week against the backtest's WAPE" });
    var axis = svg("g", { class: "axis" }, root);
    svg("line", { x1: m.l, x2: m.l, y1: m.t, y2: H - m.b }, axis);
    svg("line", { x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b }, axis);
    ticks(0, yhi, 4).forEach(function (v) {
      svg("line", { x1: m.l - 4, x2: m.l, y1: y(v), y2: y(v) }, axis);
      svg("text", { x: m.l - 7, y: y(v) + 4, "text-anchor": "end" }, axis).textContent = fmtPct0.format(v);
    });
    var every = Math.max(1, Math.ceil(n / 8));
    pts.forEach(function (p, i) {
      if (i % every !== 0 && i !== n - 1) return;
      svg("text", { x: x(i), y: H - m.b + 16, "text-anchor": "middle" }, axis).textContent = p.label;
    });
    if (ref !== null) {
      svg("line", { class: "reference-line", x1: m.l, x2: W - m.r, y1: y(ref), y2: y(ref),
        "data-value": ref }, root);
      svg("text", { class: "reference-label", x: W - m.r + 6, y: y(ref) + 4 }, root).textContent =
        "backtest " + fmtPct.format(ref);
    }
    svg("path", { class: "wape-line", d: pts.map(function (p, i) {
      return (i ? "L " : "M ") + x(i).toFixed(1) + " " + y(p.wape).toFixed(1);
    }).join(" ") }, root);
    var dots = svg("g", { class: "points" }, root);
    pts.forEach(function (p, i) {
      var c = svg("circle", { class: "wape-point" + (ref !== null && p.wape > ref ? " over" : ""),
        cx: x(i).toFixed(1), cy: y(p.wape).toFixed(1), r: 4, "data-week": p.label, "data-wape": p.wape }, dots);
      svg("title", {}, c).textContent = p.label + ": WAPE " + fmtPct.format(p.wape) +
        (num(p.actual) && num(p.predicted)
          ? " (" + fmtUnits.format(p.predicted) + " predicted, " + fmtUnits.format(p.actual) + " sold)" : "") +
        " · master " + p.master;
    });
    health.chart.appendChild(root);
    health.chartCaption.textContent = (perRun ? "Units WAPE of each monitor run (" : "Units WAPE per observed week (") +
      n + (perRun ? " runs" : " weeks") + ") against the deployed model's backtest WAPE (dashed)" +
      "; red: worse than the backtest.";
  }

  function drawDriftFlags(drift) {
    health.drift.textContent = "";
    var stat = drift.statistic ? String(drift.statistic).toUpperCase() : "drift";
    (drift.features || []).forEach(function (f) {
      var li = document.createElement("li");
      li.className = "drift-flag flagged";
      li.dataset.feature = f.feature;
      li.dataset.value = num(f.value) ? String(f.value) : "";
      li.textContent = f.feature + (num(f.value) ? ": " + stat + " " + f.value.toFixed(3) : "") +
        (num(drift.threshold) ? " (threshold " + drift.threshold + ")" : "");
      health.drift.appendChild(li);
    });
    var unknown = drift.unknown_categories || {};
    Object.keys(unknown).sort().forEach(function (col) {
      unknown[col].forEach(function (v) {
        var li = document.createElement("li");
        li.className = "unknown-category flagged";
        li.dataset.column = col;
        li.dataset.value = v;
        li.textContent = label(col) + " \u201c" + v + "\u201d: never seen in training";
        health.drift.appendChild(li);
      });
    });
    if (!health.drift.children.length) {
      var none = document.createElement("li");
      none.className = "none muted";
      none.textContent = "no feature over the threshold, no unseen category";
      health.drift.appendChild(none);
    }
  }

  function drawReasons(reasons) {
    health.reasons.textContent = "";
    reasons.forEach(function (r) {
      var li = document.createElement("li");
      li.className = "reason";
      li.textContent = r;
      health.reasons.appendChild(li);
    });
    if (!reasons.length) {
      var none = document.createElement("li");
      none.className = "none muted";
      none.textContent = "none: no alarm in the latest run";
      health.reasons.appendChild(none);
    }
  }

  function drawHealthRuns(hist) {
    var t = health.history;
    t.textContent = "";
    var hr = t.insertRow();
    ["date", "master version", "model judged", "status", "WAPE / backtest", "lift", "drifted"].forEach(function (h) {
      var th = document.createElement("th");
      th.textContent = h;
      hr.appendChild(th);
    });
    hist.slice(-HEALTH_RUNS).reverse().forEach(function (r) { // newest first
      var tr = t.insertRow(), acc = r.accuracy || {}, drift = r.drift || {};
      tr.className = "health-row";
      tr.dataset.master = r.master_version;
      tr.dataset.status = r.status || "";
      var drifted = (drift.features || []).filter(function (f) { return f && f.drifted; })
        .map(function (f) { return f.feature; });
      (drift.drifted || []).forEach(function (f) { if (drifted.indexOf(f) < 0) drifted.push(f); });
      Object.keys(drift.unknown_categories || {}).forEach(function (c) {
        if ((drift.unknown_categories[c] || []).length) drifted.push("new " + label(c));
      });
      [String(r.created_at || "").slice(0, 10), r.master_version, r.model_version || "?", null,
        (num(acc.wape) ? fmtPct.format(acc.wape) : "n/a") + " / " +
          (num(acc.reference_wape) ? fmtPct.format(acc.reference_wape) : "n/a"),
        acc.lift && num(acc.lift.ratio) ? acc.lift.ratio.toFixed(2) + "×" : "n/a",
        drifted.join(", ") || "–"].forEach(function (v) {
        var td = tr.insertCell();
        if (v !== null) { td.textContent = v; return; }
        var b = document.createElement("span");
        b.className = "badge";
        b.dataset.status = r.status || "";
        b.textContent = label(r.status || "unknown");
        td.appendChild(b);
      });
    });
  }

  // ------------------------------------------------------------------ report link

  async function checkReport() {
    try {
      var resp = await fetch("report", { method: "HEAD", cache: "no-store" });
      var ok = resp.ok;
      els.reportLink.classList.toggle("unavailable", !ok);
      els.reportStatus.textContent = ok ? "" : "(not available from this endpoint)";
    } catch (e) {
      els.reportLink.classList.add("unavailable");
      els.reportStatus.textContent = "(not available)";
    }
  }

  // ------------------------------------------------------------------ wiring

  els.form.addEventListener("submit", function (ev) { ev.preventDefault(); schedule(false, 0); });
  els.planForm.addEventListener("submit", function (ev) { ev.preventDefault(); runPlan(); });
  els.region.addEventListener("change", function () { fillModels(); schedule(false); });
  [els.model, els.week, els.type].forEach(function (el) {
    el.addEventListener("change", function () { schedule(false); });
  });
  els.amount.addEventListener("input", function () { schedule(false); });
  els.retry.addEventListener("click", function () { start(); });

  async function start() {
    els.status.textContent = "connecting to the endpoint…";
    loadHealth(); // on its own: the panel does not wait for the model server
    var meta = await loadVersion();
    var ok = await loadOptions(meta);
    checkReport();
    if (!ok) {
      els.status.textContent = "the pickers could not be loaded";
      return;
    }
    await update(true);
  }

  window.autoroiDashboard = { state: state, update: update };
  start();
})();
