// The Process panel (#/process): pick a ready-made algorithm, an area, dates and a
// collection; run it as an openEO batch job on this node; watch its progress; open the
// published result (its item page shows it on the map) or download it.
//
// It speaks the node's own openEO API (/openeo/1.2) with the UI's credentials.

import * as api from "./api.js";
import { t } from "./i18n.js";

const $ = (selector) => document.querySelector(selector);
const OPENEO = "openeo/1.2/";

// algorithm -> the process graph nodes after load_collection ("load")
const ALGORITHMS = {
  ndvi: [["ndvi", "ndvi", {}]],
  ndwi: [["ndwi", "ndwi", {}]],
  nbr: [["nbr", "nbr", {}]],
  flood: [["flood", "flood_extent", { threshold: 0 }]],
  median: [["ndvi", "ndvi", {}], ["median", "median_composite", {}]],
};

// job states in words (each key written out, so that the translations can be checked)
function stateWords(status) {
  const words = {
    created: () => t("process.state.created"),
    queued: () => t("process.state.queued"),
    running: () => t("process.state.running"),
    finished: () => t("process.state.finished"),
    error: () => t("process.state.error"),
    canceled: () => t("process.state.canceled"),
  };
  return (words[status] || (() => status))();
}

async function openeo(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json", "X-Requested-With": "eoshare-ui", ...api.authHeaders() };
  const init = { method, credentials: "same-origin", headers };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  const response = await fetch(api.url(OPENEO + path), init);
  if (!response.ok) {
    let message = `${response.status}`;
    try {
      const doc = await response.json();
      message = doc.message || doc.detail || message;
    } catch {
      // not JSON: keep the status
    }
    throw new Error(message);
  }
  return response;
}

export function processGraph(algorithm, collection, bbox, from, to) {
  const graph = {
    load: {
      process_id: "load_collection",
      arguments: {
        id: collection,
        spatial_extent: bbox ? { west: bbox[0], south: bbox[1], east: bbox[2], north: bbox[3] } : null,
        temporal_extent: [from || null, to || null],
      },
    },
  };
  let previous = "load";
  for (const [name, pid, args] of ALGORITHMS[algorithm]) {
    graph[name] = { process_id: pid, arguments: { data: { from_node: previous }, ...args } };
    previous = name;
  }
  graph.save = {
    process_id: "save_result",
    arguments: { data: { from_node: previous }, format: "GTiff" },
    result: true,
  };
  return graph;
}

function show(node, text) {
  node.textContent = text || "";
  node.hidden = !text;
}

export async function fillProcessCollections() {
  const select = $("#process-collection");
  try {
    const doc = await (await openeo("collections")).json();
    select.replaceChildren(
      ...doc.collections.map((c) => {
        const option = document.createElement("option");
        option.value = c.id;
        option.textContent = c.title && c.title !== c.id ? `${c.title} (${c.id})` : c.id;
        return option;
      }),
    );
  } catch (error) {
    show($("#process-error"), error.message);
  }
}

export function setupProcess({ parseBbox, formatBbox, viewBbox, showArea }) {
  $("#process-use-view").addEventListener("click", () => {
    const bbox = viewBbox();
    $("#process-bbox").value = formatBbox(bbox);
    showArea(bbox);
  });
  $("#process-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const status = $("#process-status");
    const progress = $("#process-progress");
    const result = $("#process-result");
    show($("#process-error"), "");
    result.replaceChildren();
    if (!api.signedInUser() && !api.token() && !api.hasSession()) {
      show($("#process-error"), t("process.signIn"));
      return;
    }
    let bbox = null;
    try {
      bbox = $("#process-bbox").value.trim() ? parseBbox($("#process-bbox").value) : null;
    } catch (problem) {
      show($("#process-error"), problem.message);
      return;
    }
    const graph = processGraph(
      $("#process-algorithm").value,
      $("#process-collection").value,
      bbox,
      $("#process-from").value,
      $("#process-to").value,
    );
    const button = $("#process-run");
    button.disabled = true;
    try {
      const created = await openeo("jobs", {
        method: "POST",
        body: { title: $("#process-algorithm").selectedOptions[0].textContent, process: { process_graph: graph } },
      });
      const id = created.headers.get("OpenEO-Identifier");
      await openeo(`jobs/${encodeURIComponent(id)}/results`, { method: "POST" });
      progress.hidden = false;
      for (;;) {
        const job = await (await openeo(`jobs/${encodeURIComponent(id)}`)).json();
        progress.value = job.progress || 0;
        status.textContent = t("process.status", { status: stateWords(job.status), progress: Math.round(job.progress || 0) });
        if (job.status === "finished") break;
        if (job.status === "error" || job.status === "canceled") {
          const logs = await (await openeo(`jobs/${encodeURIComponent(id)}/logs`)).json();
          const last = logs.logs.filter((l) => l.level === "error").pop();
          throw new Error(last ? last.message : stateWords(job.status));
        }
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
      const item = await (await openeo(`jobs/${encodeURIComponent(id)}/results`)).json();
      const open = document.createElement("a");
      open.href = `#/item/${encodeURIComponent(item.collection)}/${encodeURIComponent(item.id)}`;
      open.textContent = t("process.open");
      open.className = "button";
      result.append(open);
      for (const asset of Object.values(item.assets || {})) {
        const link = document.createElement("a");
        link.href = asset.href;
        link.textContent = t("process.download", { name: asset.title || "result" });
        link.className = "button secondary";
        link.setAttribute("download", "");
        result.append(" ", link);
      }
      status.textContent = t("process.done");
    } catch (error) {
      show($("#process-error"), t("process.failed", { reason: error.message }));
    } finally {
      button.disabled = false;
      progress.hidden = true;
    }
  });
}
