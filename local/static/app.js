// Quickstart page of the local stack: plain JS, no build step. Every call goes to the gateway's HTTP API on this
// origin with the user's token, exactly as a fintech app would call it.
"use strict";

const state = {
  user: null,
  token: null,
  expiresAt: null,
  banks: [],
  bank: null, // the selected bank (brands sharing a bank_code share one connection)
};

const bankKey = (bank) => `${bank.bank_code}/${bank.short_name}`;

const $ = (id) => document.getElementById(id);

// An error answer of the API: problem+json from the functions ({title, code, detail, request_id}) or API
// Gateway's own ({"message": "Unauthorized"}).
class ApiError extends Error {
  constructor(status, body, requestId) {
    const problem = body && typeof body === "object" ? body : {};
    super(problem.title || problem.message || `HTTP ${status}`);
    this.status = status;
    this.code = problem.code || null;
    this.detail = problem.detail || null;
    this.requestId = problem.request_id || requestId || null;
    this.fields = Array.isArray(problem.errors) ? problem.errors : [];
  }
}

const HINTS = {
  401: "The token is missing, invalid or expired: get a new one in step 1.",
  403: "The API refused this call for this user.",
  404: "Not found.",
  501: "This route exists but its feature has not landed yet.",
  502: "The bank (the offline sandbox) answered something unexpected.",
  503: "The bank (the offline sandbox) is unavailable.",
};

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (state.token && options.auth !== false) headers.Authorization = `Bearer ${state.token}`;
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (err) {
    throw new ApiError(0, { title: "Cannot reach the local API", detail: "Is `make run` still running?" });
  }
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (err) {
    body = { title: `HTTP ${response.status}`, detail: text.slice(0, 200) };
  }
  if (!response.ok) throw new ApiError(response.status, body, response.headers.get("apigw-requestid"));
  return body;
}

function showError(box, err) {
  box.replaceChildren();
  const title = document.createElement("strong");
  title.textContent = err instanceof ApiError && err.status ? `${err.status} · ${err.message}` : err.message;
  box.append(title);
  const lines = [];
  if (err.code) lines.push(["code", err.code]);
  if (err.detail) lines.push(["detail", err.detail]);
  for (const field of err.fields || []) lines.push([field.field || "field", field.message]);
  if (err.requestId) lines.push(["request id", err.requestId]);
  if (lines.length) {
    const list = document.createElement("dl");
    for (const [name, value] of lines) {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = value;
      list.append(dt, dd);
    }
    box.append(list);
  }
  const hint = err.status ? HINTS[err.status] : null;
  if (hint) {
    const p = document.createElement("p");
    p.textContent = hint;
    box.append(p);
  }
  box.hidden = false;
}

function clearError(box) {
  box.hidden = true;
  box.replaceChildren();
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

const yesNo = (value) => (value ? "yes" : "no");
const NETWORKS = { banque_populaire: "Banque Populaire", caisse_epargne: "Caisse d'Epargne", other: "Other" };

function renderBanks() {
  const tbody = $("banks-table").querySelector("tbody");
  tbody.replaceChildren();
  for (const bank of state.banks) {
    const row = document.createElement("tr");
    const pick = document.createElement("td");
    const radio = document.createElement("input");
    radio.type = "radio";
    radio.name = "bank";
    radio.value = bankKey(bank);
    radio.checked = state.bank !== null && bankKey(state.bank) === bankKey(bank);
    radio.setAttribute("aria-label", `Pick ${bank.name}`);
    radio.addEventListener("change", () => selectBank(bank));
    pick.append(radio);
    const caps = bank.capabilities || {};
    row.append(
      pick,
      cell(`${bank.name} (${bank.short_name})`),
      cell(bank.bank_code, "mono"),
      cell(NETWORKS[bank.network] || bank.network),
      cell(yesNo(caps.identity)),
      cell(yesNo(caps.trusted_beneficiaries)),
      cell(caps.page_size ? String(caps.page_size) : "one page", "num"),
      cell(`${caps.history_days} days`, "num"),
    );
    row.addEventListener("click", (event) => {
      if (event.target !== radio) radio.click();
    });
    tbody.append(row);
  }
  $("banks-table").hidden = state.banks.length === 0;
  $("banks-empty").hidden = state.banks.length !== 0;
  $("banks-empty").textContent = state.banks.length ? "" : "No bank in the registry.";
}

function selectBank(bank) {
  state.bank = bank;
  sessionStorage.setItem("quickstart.bank", bankKey(bank));
  const note = $("bank-selection");
  note.textContent = `Selected: ${bank.name}, establishment code ${bank.bank_code}.`;
  note.hidden = false;
  // JOURNEY (issue 4): enable "Connect" for state.bank.bank_code here (POST /v1/connections).
}

async function loadBanks() {
  const box = $("banks-error");
  clearError(box);
  $("banks-empty").textContent = "Loading banks…";
  $("banks-empty").hidden = false;
  try {
    state.banks = await api("/v1/banks");
    const saved = state.banks.find((b) => bankKey(b) === sessionStorage.getItem("quickstart.bank"));
    state.bank = null;
    if (saved) selectBank(saved);
    renderBanks();
  } catch (err) {
    state.banks = [];
    $("banks-table").hidden = true;
    $("banks-empty").hidden = true;
    showError(box, err);
  }
}

async function getToken(user) {
  const box = $("user-error");
  clearError(box);
  try {
    const body = await api(`/_local/token?user=${encodeURIComponent(user)}`, { auth: false });
    state.user = user;
    state.token = body.access_token;
    state.expiresAt = new Date(Date.now() + body.expires_in * 1000);
    sessionStorage.setItem("quickstart.user", user);
    $("token-status").textContent =
      `Signed in as ${user} until ${state.expiresAt.toLocaleTimeString()} (JWT sub = "${user}").`;
    await loadBanks();
    // JOURNEY (issues 4-5): list the user's connections (GET /v1/connections) and their status here.
  } catch (err) {
    state.token = null;
    $("token-status").textContent = "No token.";
    showError(box, err);
  }
}

function init() {
  $("api-origin").textContent = window.location.origin;
  const saved = sessionStorage.getItem("quickstart.user");
  if (saved) $("user-id").value = saved;
  $("user-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("user-id");
    if (!input.reportValidity()) return;
    getToken(input.value.trim());
  });
  // JOURNEY (issue 4): when the bank sends the browser back through /oauth/callback, the query string of this
  // page carries the outcome; read it here, then go on to the consent step.
  if (saved) getToken(saved);
}

document.addEventListener("DOMContentLoaded", init);
