// Quickstart page of the local stack: plain JS, no build step. Every call goes to the gateway's HTTP API with the
// user's token, exactly as a fintech app would call it; or, switched to "the fintech's backend", reads go with a
// server token naming the user in Aisp-User (unattended: counted against the bank's daily quota, which the page
// shows from each answer's RateLimit header and from GET .../quota). Opened as http://localhost:<port>, the page calls the API at
// 127.0.0.1 on the same port: another origin, as a fintech's web frontend on its own domain calls the gateway (the
// API's CORS configuration allows it); opened as 127.0.0.1, it calls its own origin. The journey: token → bank → connect (the bank's screens,
// then back here through /oauth/callback with a one-time completion value) → complete → connections → consent →
// accounts and balances → transactions, page by page with next_cursor → the sync feed (transactions/sync, polled
// with its saved cursor), with the local controls that run the scheduled sync and move the bank's clock.
"use strict";

const state = {
  user: null,
  token: null,
  expiresAt: null,
  banks: [],
  bank: null, // the selected bank (brands sharing a bank_code share one connection)
  connections: [],
  bankCode: null, // the connection shown in steps 5-7
  accounts: [],
  tx: { account: null, cursor: null, count: 0 },
  callback: null, // the outcome /oauth/callback sent the browser back with
  caller: "app", // "app": the user's token; "backend": the server token + Aisp-User (reads only)
  serverToken: null,
};

const API_ORIGIN =
  window.location.hostname === "localhost"
    ? `${window.location.protocol}//127.0.0.1:${window.location.port}`
    : window.location.origin;

// A server token belongs on the fintech's server, not in a web page: the API's CORS configuration does not let a
// browser on another origin send Aisp-User. The page plays the backend only when it is on the API's own origin.
const SAME_ORIGIN = API_ORIGIN === window.location.origin;
const SERVER_CLIENT = "backend";
const UNATTENDED_SCOPE = "aisp/unattended";

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
    this.retryAt = problem.retry_at || null; // quota_exhausted: when today's unattended reads come back
    this.retryAfter = null;
    this.rateLimit = null;
  }
}

// `RateLimit: "unattended";r=3;t=46311` (draft-ietf-httpapi-ratelimit-headers) and its policy's q.
function parseRateLimit(field, policy) {
  if (!field) return null;
  const number = (text, name) => {
    const match = new RegExp(`;\\s*${name}=(\\d+)`).exec(text || "");
    return match ? Number(match[1]) : null;
  };
  return { remaining: number(field, "r"), resetSeconds: number(field, "t"), limit: number(policy, "q") };
}

const HINTS = {
  401: "The token is missing, invalid or expired: get a new one in step 1.",
  403: "The API refused this call for this user (for account data: is it in the consent?).",
  404: "Not found.",
  409: "The connection changed meanwhile, or needs a new login: connect again.",
  429: "Too many calls to the bank: wait a little.",
  quota_exhausted: "Today's unattended reads of this data are spent: the backend waits for the reset (the user's own app is still served).",
  user_token_required: "Only the user's own app may do this: switch to \"the user's app\" in step 1.",
  501: "The bank does not offer this.",
  502: "The bank (the offline sandbox) answered something unexpected.",
  503: "The bank (the offline sandbox) is unavailable.",
  504: "The bank (the offline sandbox) did not answer in time.",
};

// What each connection status means, in one sentence (GET /v1/connections' status and status_reason).
const STATUS_TEXT = {
  pending: "Waiting for you to finish logging in at the bank.",
  authorized: "The bank said yes; this page completes the connection now.",
  active: "Connected: the app can read what you consented to.",
  reauth_required: "The bank needs you to log in again: Reconnect (your consent and connection id are kept).",
  failed: "Connecting did not work out: Reconnect to try again.",
  revoked: "Deleted: its tokens are gone; it disappears from this list after a while.",
};
const REASON_TEXT = {
  access_denied: "you refused at the bank, or it could not authenticate you",
  login_expired: "the login was not finished in time",
  bank_unavailable: "the bank was unavailable",
  token_exchange_failed: "the bank gave no usable access",
  completion_expired: "the app did not complete it in time",
  completion_rejected: "someone else tried to complete it, so its access was revoked",
  reauth_due: "your last strong authentication is too old",
  access_revoked: "the bank withdrew the access",
  access_expired: "the access ended with its token",
};

function statusText(connection) {
  const reason = connection.status_reason ? REASON_TEXT[connection.status_reason] : null;
  return STATUS_TEXT[connection.status] + (reason ? ` (${reason}.)` : "");
}

// What /oauth/callback's error=<code> means for the user.
const CALLBACK_ERRORS = {
  access_denied: "You refused at the bank, or the bank could not authenticate you.",
  invalid_state: "This login link is unknown or was already used: connect again.",
  state_expired: "The login took too long and its link expired: connect again.",
  bank_unavailable: "The bank is unavailable: try again later.",
  token_exchange_failed: "The bank gave the gateway no usable token: connect again.",
};

// options: method, body, headers; auth: false (no token); local (the page's own /_local route); userOnly (a route
// only the user's own app may call: always the user's token); meta (an object that receives the answer's rateLimit).
async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...options.headers };
  const backend = state.caller === "backend" && !options.userOnly;
  if (options.auth !== false) {
    const token = backend ? state.serverToken : state.token;
    if (token) headers.Authorization = `Bearer ${token}`;
    if (backend && state.user) headers["Aisp-User"] = state.user;
  }
  const init = { method: options.method || "GET", headers };
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  let response;
  try {
    // The local identity provider (/_local/token) is this page's own; everything else is the API.
    response = await fetch(options.local ? path : API_ORIGIN + path, init);
  } catch (err) {
    throw new ApiError(0, { title: "Cannot reach the local API", detail: "Is `make run` still running?" });
  }
  const rateLimit = parseRateLimit(response.headers.get("ratelimit"), response.headers.get("ratelimit-policy"));
  if (rateLimit && !path.endsWith("/quota")) noteRateLimit(`${init.method} ${path.split("?")[0]}`, rateLimit, response.status);
  if (options.meta) options.meta.rateLimit = rateLimit;
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (err) {
    body = { title: `HTTP ${response.status}`, detail: text.slice(0, 200) };
  }
  if (!response.ok) {
    const error = new ApiError(response.status, body, response.headers.get("apigw-requestid"));
    error.retryAfter = response.headers.get("retry-after");
    error.rateLimit = rateLimit;
    throw error;
  }
  return body;
}

function showError(box, err) {
  box.replaceChildren();
  const title = document.createElement("strong");
  title.textContent = err.status ? `${err.status} · ${err.message}` : err.message;
  box.append(title);
  const lines = [];
  if (err.code) lines.push(["code", err.code]);
  if (err.detail) lines.push(["detail", err.detail]);
  for (const field of err.fields || []) lines.push([field.field || "field", field.message]);
  if (err.retryAt) {
    const wait = err.retryAfter ? `, in ${duration(Number(err.retryAfter))} (Retry-After: ${err.retryAfter} s)` : "";
    lines.push(["retry at", `${when(err.retryAt)}${wait}`]);
  }
  if (err.requestId) lines.push(["request id", err.requestId]);
  if (lines.length) {
    const list = document.createElement("dl");
    for (const [name, value] of lines) list.append(el("dt", name), el("dd", value));
    box.append(list);
  }
  const hint = HINTS[err.code] || (err.status ? HINTS[err.status] : null);
  if (hint) box.append(el("p", hint));
  box.hidden = false;
}

function clearError(box) {
  box.hidden = true;
  box.replaceChildren();
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (className) node.className = className;
  return node;
}

const cell = (text, className) => el("td", text, className);

function button(text, onClick, className) {
  const node = el("button", text, className);
  node.type = "button";
  node.addEventListener("click", onClick);
  return node;
}

// Disables `node` while `work` runs (no double submissions).
async function busy(node, work) {
  node.disabled = true;
  try {
    await work();
  } finally {
    node.disabled = node.dataset.userOnly === "true" && state.caller === "backend";
  }
}

// A control of a route only the user's own app may call (connect, complete, consent, delete): disabled, saying why,
// while the page plays the backend (a server token there gets 403 user_token_required).
const USER_ONLY_REASON = "Only the user's own app may do this: a server token gets 403 user_token_required.";

function userOnly(node) {
  node.dataset.userOnly = "true";
  node.disabled = state.caller === "backend";
  node.title = node.disabled ? USER_ONLY_REASON : "";
  return node;
}

const yesNo = (value) => (value ? "yes" : "no");
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "—");
const NETWORKS = { banque_populaire: "Banque Populaire", caisse_epargne: "Caisse d'Epargne", other: "Other" };
const BALANCE_TYPES = { CLBD: "booked", XPCD: "expected", VALU: "value date", OTHR: "other", ITAV: "available" };
const bankOf = (code) => state.banks.find((b) => b.bank_code === code) || null;
const bankLabel = (code) => (bankOf(code) ? `${bankOf(code).name} (${code})` : code);
const connectionPath = () => `/v1/connections/${encodeURIComponent(state.bankCode)}`;
const accountPath = (account) => `${connectionPath()}/accounts/${encodeURIComponent(account.account_id)}`;

// ---- 1-2. user, token, banks ----------------------------------------------------------------------------------------

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
  $("connect-button").textContent = `Connect to ${bank.name}`;
  renderCaller();
}

async function loadBanks() {
  const box = $("banks-error");
  clearError(box);
  $("banks-empty").textContent = "Loading banks…";
  $("banks-empty").hidden = false;
  try {
    state.banks = (await api("/v1/banks")).banks;
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
    const body = await api(`/_local/token?user=${encodeURIComponent(user)}`, { auth: false, local: true });
    if (state.user !== user) closeConnection();
    state.user = user;
    state.token = body.access_token;
    state.expiresAt = new Date(Date.now() + body.expires_in * 1000);
    sessionStorage.setItem("quickstart.user", user);
    $("token-status").textContent =
      `Signed in as ${user} until ${state.expiresAt.toLocaleTimeString()} (JWT sub = "${user}").`;
    $("connections-refresh").disabled = false;
    if (state.caller === "backend") await fetchServerToken();
    renderCaller();
  } catch (err) {
    state.token = null;
    $("token-status").textContent = "No token.";
    showError(box, err);
    return;
  }
  await loadBanks();
  await loadConnections();
  if (state.callback) afterCallback();
}

// ---- 3. connect: the bank's screens, then back here -----------------------------------------------------------------

// Starts a login at `bankCode` (a new connection, or a reconnection: the gateway keeps its connection_id).
async function connect(bankCode = state.bank.bank_code) {
  const box = $("connect-error");
  clearError(box);
  $("connect-result").hidden = true;
  const returnUrl = `${window.location.origin}/`;
  try {
    const started = await api("/v1/connections", {
      method: "POST",
      userOnly: true,
      // One key per click: a retry of this very request (not a new click) would get the same login link.
      headers: { "Idempotency-Key": crypto.randomUUID() },
      body: { bank_code: bankCode, return_url: returnUrl },
    });
    $("connect-note").textContent = `Connection ${started.connection_id}: going to the bank's login screens…`;
    window.location.assign(started.authorization_url);
  } catch (err) {
    showError(box, err);
  }
}

// The query string /oauth/callback sent the browser back with; removed from the address bar once read.
function readCallback() {
  const params = new URLSearchParams(window.location.search);
  if (!params.has("status")) return null;
  history.replaceState(null, "", window.location.pathname);
  return {
    status: params.get("status"),
    bankCode: params.get("bank_code"),
    completion: params.get("completion"),
    error: params.get("error"),
  };
}

function showCallbackError(result) {
  const detail = CALLBACK_ERRORS[result.error] || "The bank connection did not complete.";
  showError($("connect-error"), new ApiError(0, { title: "The connection failed", code: result.error, detail }));
}

// The bank authorized the login: the signed-in user completes it with the one-time value (only they can).
async function completeConnection(result) {
  let connection;
  try {
    connection = await api(`/v1/connections/${encodeURIComponent(result.bankCode)}/complete`, {
      method: "POST",
      userOnly: true,
      body: { completion: result.completion },
    });
  } catch (err) {
    showError($("connect-error"), err);
    await loadConnections();
    return;
  }
  const box = $("connect-result");
  box.textContent =
    `Connected to ${bankLabel(result.bankCode)}, connection ${connection.connection_id}. Choose consents below.`;
  box.hidden = false;
  await loadConnections();
  openConnection(result.bankCode);
}

async function afterCallback() {
  const result = state.callback;
  state.callback = null;
  if (result.status === "authorized" && result.bankCode && result.completion) {
    await completeConnection(result);
  } else {
    showCallbackError(result);
  }
}

// ---- 4. connections and their status --------------------------------------------------------------------------------

function consentText(consent) {
  if (!consent) return "none yet";
  const parts = [`balances ${consent.balances.length}`, `transactions ${consent.transactions.length}`];
  if (consent.psu_identity) parts.push("identity");
  if (consent.trusted_beneficiaries) parts.push("beneficiaries");
  return parts.join(" · ");
}

function renderConnections() {
  const tbody = $("connections-table").querySelector("tbody");
  tbody.replaceChildren();
  for (const connection of state.connections) {
    const code = connection.bank_code;
    const actions = cell(null, "actions");
    if (connection.status === "active") {
      actions.append(button("Open", () => openConnection(code), "small"));
    }
    if (["reauth_required", "failed", "revoked"].includes(connection.status)) {
      actions.append(userOnly(button("Reconnect", (event) => busy(event.target, () => connect(code)), "small")));
    }
    if (connection.status !== "revoked") {
      const remove = button("Delete", (event) => busy(event.target, () => deleteConnection(code)), "small danger");
      actions.append(userOnly(remove));
    }
    const status = cell(null);
    status.append(el("span", connection.status, `badge ${connection.status}`));
    status.append(el("div", statusText(connection), "muted status-text"));
    const row = el("tr", null, code === state.bankCode ? "current" : "");
    row.append(
      cell(bankLabel(code)),
      status,
      cell(when(connection.connected_at)),
      cell(when(connection.access_expires_at)),
      cell(when(connection.reauth_due_at)),
      cell(consentText(connection.consent)),
      actions,
    );
    tbody.append(row);
  }
  $("connections-table").hidden = state.connections.length === 0;
  $("connections-empty").hidden = state.connections.length !== 0;
  $("connections-empty").textContent = "No connection yet: connect a bank in step 3.";
}

async function loadConnections() {
  const box = $("connections-error");
  clearError(box);
  try {
    state.connections = (await api("/v1/connections")).connections;
    renderConnections();
  } catch (err) {
    showError(box, err);
  }
}

async function deleteConnection(code) {
  const question =
    `Delete the connection to ${bankLabel(code)}? The app will no longer read this bank's data, and its access ` +
    "is revoked at the bank.";
  if (!window.confirm(question)) return;
  try {
    await api(`/v1/connections/${encodeURIComponent(code)}`, { method: "DELETE", userOnly: true });
    if (code === state.bankCode) closeConnection();
  } catch (err) {
    showError($("connections-error"), err);
  }
  await loadConnections();
}

// ---- 5. consent -----------------------------------------------------------------------------------------------------

function closeConnection() {
  state.bankCode = null;
  state.accounts = [];
  $("consent-form").hidden = true;
  $("consent-empty").hidden = false;
  $("consent-empty").textContent = "Connect a bank, or open an active connection above.";
  $("accounts-table").hidden = true;
  $("accounts-identity").hidden = true;
  $("accounts-empty").hidden = false;
  $("accounts-empty").textContent = "Give a consent first.";
  closeTransactions();
  closeQuota();
  closeSync();
  for (const id of ["consent-error", "accounts-error"]) clearError($(id));
}

async function openConnection(code) {
  closeConnection();
  state.bankCode = code;
  renderConnections();
  $("consent-empty").textContent = `Loading the accounts at ${bankLabel(code)}…`;
  try {
    state.accounts = (await api(`${connectionPath()}/accounts`)).accounts;
  } catch (err) {
    $("consent-empty").textContent = `Cannot list the accounts at ${bankLabel(code)}.`;
    showError($("consent-error"), err);
    return;
  }
  renderConsentForm();
  openSync();
  if (currentConnection()?.consent) {
    await loadAccounts({ listed: true });
  } else {
    await loadQuota();
  }
}

const currentConnection = () => state.connections.find((c) => c.bank_code === state.bankCode) || null;

function checkbox(kind, iban, checked) {
  const input = document.createElement("input");
  input.type = "checkbox";
  input.dataset.kind = kind;
  input.value = iban || "";
  input.disabled = !iban; // consent is given by IBAN; an account without one cannot be picked here
  input.checked = Boolean(iban) && checked;
  input.setAttribute("aria-label", `${kind} of ${iban || "this account"}`);
  const td = cell(null, "center");
  td.append(input);
  return td;
}

function renderConsentForm() {
  const consent = currentConnection()?.consent || null;
  const caps = bankOf(state.bankCode)?.capabilities || {};
  const tbody = $("consent-table").querySelector("tbody");
  tbody.replaceChildren();
  for (const account of state.accounts) {
    const iban = account.iban;
    const row = el("tr");
    row.append(
      cell(account.name || account.product || account.account_id),
      cell(iban || "no IBAN", "mono"),
      checkbox("balances", iban, consent ? consent.balances.includes(iban) : true),
      checkbox("transactions", iban, consent ? consent.transactions.includes(iban) : true),
    );
    tbody.append(row);
  }
  const identity = $("consent-identity");
  identity.disabled = !caps.identity;
  identity.checked = Boolean(caps.identity) && (consent ? consent.psu_identity : true);
  const beneficiaries = $("consent-beneficiaries");
  beneficiaries.disabled = !caps.trusted_beneficiaries;
  beneficiaries.checked = Boolean(caps.trusted_beneficiaries) && (consent ? consent.trusted_beneficiaries : true);
  $("consent-bank").textContent = bankLabel(state.bankCode);
  $("consent-empty").hidden = true;
  $("consent-form").hidden = false;
  renderCaller();
}

async function submitConsent() {
  const box = $("consent-error");
  clearError(box);
  const picked = (kind) =>
    [...$("consent-table").querySelectorAll(`input[data-kind="${kind}"]:checked`)].map((input) => input.value);
  const body = {
    balances: picked("balances"),
    transactions: picked("transactions"),
    psu_identity: $("consent-identity").checked,
    trusted_beneficiaries: $("consent-beneficiaries").checked,
  };
  try {
    await api(`${connectionPath()}/consent`, { method: "PUT", body, userOnly: true });
  } catch (err) {
    showError(box, err);
    return;
  }
  await loadConnections();
  await loadAccounts();
}

// ---- 6. accounts and balances ---------------------------------------------------------------------------------------

function balanceList(balances) {
  const list = el("ul", null, "balances");
  for (const balance of balances) {
    const item = el("li");
    item.append(
      el("span", `${balance.amount} ${balance.currency}`, "amount"),
      el("span", ` ${BALANCE_TYPES[balance.type] || balance.type} (${balance.type})`, "muted"),
    );
    list.append(item);
  }
  if (!balances.length) list.append(el("li", "no balance", "muted"));
  return list;
}

async function loadBalances(account, target) {
  const meta = {};
  try {
    target.replaceChildren(balanceList((await api(`${accountPath(account)}/balances`, { meta })).balances));
    if (meta.rateLimit) target.append(el("div", leftText(meta.rateLimit), "muted quota-left"));
  } catch (err) {
    target.replaceChildren(el("span", `${err.status || ""} ${err.message}`.trim(), "error-text"));
    showError($("accounts-error"), err);
  }
}

async function loadIdentity() {
  const line = $("accounts-identity");
  line.hidden = true;
  if (!currentConnection()?.consent?.psu_identity || !bankOf(state.bankCode)?.capabilities.identity) return;
  try {
    const identity = await api(`${connectionPath()}/identity`);
    line.textContent = `Connected as ${identity.full_name || [identity.first_name, identity.last_name].join(" ")}` +
      ` (GET ${connectionPath()}/identity).`;
    line.hidden = false;
  } catch (err) {
    showError($("accounts-error"), err);
  }
}

// `listed`: state.accounts was just read (listing again would spend another unattended read).
async function loadAccounts({ listed = false } = {}) {
  const box = $("accounts-error");
  clearError(box);
  $("accounts-empty").textContent = "Loading accounts…";
  try {
    if (!listed) state.accounts = (await api(`${connectionPath()}/accounts`)).accounts;
  } catch (err) {
    $("accounts-empty").textContent = "Cannot list the accounts.";
    showError(box, err);
    return;
  }
  const tbody = $("accounts-table").querySelector("tbody");
  tbody.replaceChildren();
  const pending = [loadIdentity()];
  for (const account of state.accounts) {
    const balances = cell(null);
    const actions = cell(null, "actions");
    if (account.links.balances) {
      balances.textContent = "loading…";
      pending.push(loadBalances(account, balances));
      const again = (event) => busy(event.target, () => readBalancesAgain(account, balances));
      actions.append(button("Read balances", again, "small secondary"));
    } else {
      balances.append(el("span", "not in the consent", "muted"));
    }
    if (account.links.transactions) actions.append(button("Transactions", () => openTransactions(account), "small"));
    const row = el("tr");
    const name = cell(account.name || account.account_id);
    name.append(el("div", `${account.cash_account_type || ""} ${account.account_id}`.trim(), "muted mono"));
    row.append(name, cell(account.iban || "—", "mono"), balances, actions);
    tbody.append(row);
  }
  $("accounts-table").hidden = state.accounts.length === 0;
  $("accounts-empty").hidden = state.accounts.length !== 0;
  $("accounts-empty").textContent = "No account at this bank.";
  await Promise.all(pending);
  await loadQuota();
}

async function readBalancesAgain(account, target) {
  clearError($("accounts-error"));
  await loadBalances(account, target);
  await loadQuota();
}

// ---- 7. transactions, page by page ----------------------------------------------------------------------------------

function closeTransactions() {
  state.tx = { account: null, cursor: null, count: 0 };
  $("transactions-table").querySelector("tbody").replaceChildren();
  $("transactions-table").hidden = true;
  $("transactions-more").hidden = true;
  $("transactions-count").textContent = "";
  $("transactions-empty").hidden = false;
  clearError($("transactions-error"));
}

async function openTransactions(account) {
  closeTransactions();
  state.tx.account = account;
  $("transactions-empty").textContent = `Loading the transactions of ${account.iban || account.account_id}…`;
  await loadMoreTransactions();
  $("transactions-step").scrollIntoView({ behavior: "smooth", block: "start" });
}

async function loadMoreTransactions() {
  const { account, cursor } = state.tx;
  const query = cursor ? `?cursor=${encodeURIComponent(cursor)}` : "";
  let page;
  try {
    page = await api(`${accountPath(account)}/transactions${query}`);
  } catch (err) {
    showError($("transactions-error"), err);
    return;
  }
  if (state.caller === "backend") await loadQuota();
  const tbody = $("transactions-table").querySelector("tbody");
  for (const tx of page.transactions) {
    const row = el("tr", null, tx.status === "pending" ? "pending" : "");
    row.append(
      cell(tx.booking_date || tx.transaction_date || tx.value_date || "—", "mono date"),
      cell(tx.remittance.join(" · ") || tx.entry_reference || ""),
      cell(tx.status),
      cell(`${tx.amount} ${tx.currency}`, tx.credit_debit === "debit" ? "num debit" : "num credit"),
    );
    tbody.append(row);
  }
  state.tx.cursor = page.has_more ? page.next_cursor : null;
  state.tx.count += page.transactions.length;
  const label = account.iban || account.account_id;
  $("transactions-table").hidden = state.tx.count === 0;
  $("transactions-empty").hidden = state.tx.count !== 0;
  $("transactions-empty").textContent = `No transaction on ${label}.`;
  $("transactions-more").hidden = !state.tx.cursor;
  $("transactions-count").textContent = state.tx.cursor
    ? `${state.tx.count} transactions of ${label} so far; "More" asks for the next page (cursor=next_cursor).`
    : `All ${state.tx.count} transactions of ${label} (has_more: false).`;
  if (!state.tx.cursor) await loadConnections(); // the journey ends with the connection's status
}

// ---- 8. sync: the scheduled sync's feed, live; the local controls that drive the time ------------------------------

const SYNC_FUNCTION = "AccountSyncFunction";
const SYNC_POLL_MS = 4000;
const SYNC_PAGE = 200;
const SYNC_MAX_PAGES = 50;
const SYNC_MAX_ROWS = 600; // the table keeps the newest rows; the counts cover everything
const DAY_SECONDS = 86400;

function emptySync() {
  return {
    cursor: null, timer: null, polling: false, batches: 0, added: 0, modified: 0, removed: 0, known: new Map(),
    syncedAt: null,
  };
}
state.sync = emptySync();

// The feed's cursor is kept per user and bank, as an app keeps it between sessions.
const syncKey = () => `quickstart.sync.${state.user}.${state.bankCode}`;

function closeSync() {
  if (state.sync.timer) clearInterval(state.sync.timer);
  state.sync = emptySync();
  $("sync-table").querySelector("tbody").replaceChildren();
  $("sync-table").hidden = true;
  $("sync-controls").hidden = true;
  for (const id of ["sync-run-status", "sync-clock-status", "sync-status", "sync-last"]) $(id).hidden = true;
  $("sync-empty").hidden = false;
  clearError($("sync-error"));
}

function openSync() {
  closeSync();
  $("sync-empty").hidden = true;
  $("sync-controls").hidden = false;
  state.sync.cursor = sessionStorage.getItem(syncKey());
  renderSyncStatus();
  state.sync.timer = setInterval(pollSync, SYNC_POLL_MS);
  pollSync();
}

function renderSyncStatus() {
  const { added, modified, removed, syncedAt } = state.sync;
  const synced = syncedAt ? `last synced ${when(syncedAt)} (synced_at)` : "not synced yet";
  $("sync-status").textContent = `Feed: ${added} added, ${modified} modified, ${removed} removed so far; ${synced}.`;
  $("sync-status").hidden = false;
}

function txLabel(tx) {
  return (tx.remittance || []).join(" · ") || tx.entry_reference || tx.transaction_id;
}

function syncRow(kind, change) {
  const known = state.sync.known.get(change.transaction_id);
  const tx = kind === "removed" ? known || change : change;
  const row = el("tr", null, kind === "removed" ? "removed" : tx.status === "pending" ? "pending" : "");
  row.dataset.change = kind;
  const description = cell(known || kind !== "removed" ? txLabel(tx) : `${change.transaction_id} of ${change.account_id}`);
  if (change.pending_transaction_id) {
    const pending = state.sync.known.get(change.pending_transaction_id);
    const what = pending ? `${txLabel(pending)} (${change.pending_transaction_id})` : change.pending_transaction_id;
    description.append(el("span", `settles ${what}`, "settles"));
  }
  const hasAmount = tx.amount !== undefined;
  row.append(
    cell(kind, `change ${kind}`),
    cell(tx.booking_date || tx.transaction_date || tx.value_date || "—", "mono date"),
    description,
    cell(tx.status || "—"),
    cell(hasAmount ? `${tx.amount} ${tx.currency}` : "—", tx.credit_debit === "debit" ? "num debit" : "num credit"),
  );
  return row;
}

function showSyncBatch(batch, receivedAt) {
  const counts = `${batch.added.length} added, ${batch.modified.length} modified, ${batch.removed.length} removed`;
  $("sync-last").textContent = `Last changes, received ${receivedAt.toLocaleTimeString()}: ${counts}.`;
  $("sync-last").hidden = false;
  state.sync.batches += 1;
  const rows = [];
  const header = el("tr", null, "sync-batch");
  const title = cell(`Received ${receivedAt.toLocaleTimeString()}: ${counts}`);
  title.colSpan = 5;
  header.append(title);
  rows.push(header);
  // Removed first: a booked transaction that settles a pending one comes with the pending one's removal.
  for (const change of batch.removed) rows.push(syncRow("removed", change));
  for (const change of batch.added) rows.push(syncRow("added", change));
  for (const change of batch.modified) rows.push(syncRow("modified", change));
  for (const row of rows) row.dataset.batch = String(state.sync.batches);
  const tbody = $("sync-table").querySelector("tbody");
  tbody.prepend(...rows);
  while (tbody.rows.length > SYNC_MAX_ROWS) tbody.lastElementChild.remove();
  $("sync-table").hidden = false;
}

// One poll: every page from the saved cursor (while has_more), shown as one batch when anything changed.
async function pollSync() {
  const sync = state.sync;
  if (sync.polling || !state.bankCode) return;
  sync.polling = true;
  const bankCode = state.bankCode;
  const batch = { added: [], modified: [], removed: [] };
  try {
    let cursor = sync.cursor;
    for (let pages = 0; pages < SYNC_MAX_PAGES; pages += 1) {
      const query = `?count=${SYNC_PAGE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
      const page = await api(`${connectionPath()}/transactions/sync${query}`);
      if (state.sync !== sync || state.bankCode !== bankCode) return; // closed meanwhile
      for (const kind of ["added", "modified", "removed"]) batch[kind].push(...page[kind]);
      for (const tx of [...page.added, ...page.modified]) sync.known.set(tx.transaction_id, tx);
      cursor = page.next_cursor;
      sync.syncedAt = page.synced_at;
      if (!page.has_more) break;
    }
    sync.cursor = cursor;
    if (cursor) sessionStorage.setItem(syncKey(), cursor);
    clearError($("sync-error"));
  } catch (err) {
    if (state.sync !== sync) return;
    if (err.detail === "invalid_cursor") {
      // A cursor of another connection (a reconnection, a restarted stack): start again without one.
      sync.cursor = null;
      sessionStorage.removeItem(syncKey());
    }
    showError($("sync-error"), err);
    return;
  } finally {
    sync.polling = false;
  }
  sync.added += batch.added.length;
  sync.modified += batch.modified.length;
  sync.removed += batch.removed.length;
  if (batch.added.length || batch.modified.length || batch.removed.length) showSyncBatch(batch, new Date());
  renderSyncStatus();
}

async function runSync() {
  const box = $("sync-error");
  clearError(box);
  const status = $("sync-run-status");
  status.textContent = "Running AccountSyncFunction once…";
  status.hidden = false;
  let summary;
  try {
    // Every connection made due first (due_now): the gateway's clock does not move with the bank's.
    summary = await api(`/_local/schedules/${SYNC_FUNCTION}`, {
      method: "POST", auth: false, local: true, body: { due_now: true },
    });
  } catch (err) {
    status.hidden = true;
    showError(box, err);
    return;
  }
  const deferred = summary.deferred ? `, ${summary.deferred} deferred (a failure or a spent quota: see the quota)` : "";
  status.textContent =
    `Sync run: ${summary.synced} connection(s) synced${deferred}; ${summary.added} added, ${summary.modified} ` +
    `modified, ${summary.removed} removed, in ${summary.duration_ms} ms.`;
  await pollSync();
  await loadQuota();
}

async function moveBankClock() {
  const box = $("sync-error");
  clearError(box);
  let moved;
  try {
    moved = await api("/_local/sandbox/clock", {
      method: "POST", auth: false, local: true, body: { advance_seconds: DAY_SECONDS },
    });
  } catch (err) {
    showError(box, err);
    return;
  }
  const days = Math.round(moved.clock_offset_seconds / DAY_SECONDS);
  const status = $("sync-clock-status");
  status.textContent =
    `The bank's clock: ${when(moved.now)} (${days} day${days === 1 ? "" : "s"} ahead); the gateway's stays ` +
    `${when(moved.gateway_now)}. Run the sync to see what changed.`;
  status.hidden = false;
}

// ---- who calls: the user's app, or the fintech's backend (server token + Aisp-User, reads only) ----------------------

async function fetchServerToken() {
  const query = `client=${encodeURIComponent(SERVER_CLIENT)}&scope=${encodeURIComponent(UNATTENDED_SCOPE)}`;
  state.serverToken = (await api(`/_local/token?${query}`, { auth: false, local: true })).access_token;
}

function renderCaller() {
  const backend = state.caller === "backend";
  for (const node of document.querySelectorAll('[data-user-only="true"]')) {
    node.disabled = backend;
    node.title = backend ? USER_ONLY_REASON : "";
  }
  $("consent-fields").disabled = backend;
  $("consent-note").hidden = !backend;
  $("connect-button").disabled = backend || !state.token || !state.bank;
  if (backend) {
    $("connect-note").textContent = `Connecting is the user's own: switch to "the user's app" in step 1.`;
  } else if (!state.bank) {
    $("connect-note").textContent = "Pick a bank first.";
  } else if (!$("connect-note").textContent.startsWith("Connection ")) {
    $("connect-note").textContent = "";
  }
  const user = state.user ? `"${state.user}"` : "the user of step 1";
  $("caller-status").textContent = backend
    ? `Reads go with the backend's server token (sub "${SERVER_CLIENT}", scope ${UNATTENDED_SCOPE}) and ` +
      `Aisp-User: ${user}: unattended, with no PSU-* header, each one spending one of the bank's daily reads of ` +
      "that account and kind of data. Connect, consent and delete stay the user's own: disabled."
    : `Reads go with the user's token (sub = ${user}): attended, the bank gets the user's context and counts nothing.`;
}

async function setCaller(mode) {
  const box = $("caller-error");
  clearError(box);
  if (mode === "backend" && !state.serverToken) {
    try {
      await fetchServerToken();
    } catch (err) {
      showError(box, err);
      document.querySelector('input[name="caller"][value="app"]').checked = true;
      return;
    }
  }
  state.caller = mode;
  $("quota-last").textContent = "No unattended read yet.";
  closeConnection();
  renderConnections();
  renderCaller();
  if (state.token) await loadConnections();
}

// ---- today's unattended quota: each answer's RateLimit, and GET .../quota -------------------------------------------

const QUOTA_METHODS = {
  accounts: "account list",
  balances: "balances",
  transactions: "transactions",
  trusted_beneficiaries: "trusted beneficiaries",
  identity: "identity",
};

function duration(seconds) {
  const minutes = Math.ceil(seconds / 60);
  return minutes >= 60 ? `${Math.floor(minutes / 60)} h ${minutes % 60} min` : `${minutes} min`;
}

function leftText(rateLimit) {
  const limit = rateLimit.limit ?? "?";
  return rateLimit.remaining === 0
    ? `none of ${limit} unattended reads left today`
    : `${rateLimit.remaining} of ${limit} unattended reads left today`;
}

// An unattended answer said what is left for its account and kind of data (`RateLimit: "unattended";r=..;t=..`).
function noteRateLimit(route, rateLimit, status) {
  const refused = status === 429 ? "refused: " : "";
  const resets = rateLimit.resetSeconds === null ? "" : `, back in ${duration(rateLimit.resetSeconds)}`;
  $("quota-last").textContent =
    `${route}: ${refused}${leftText(rateLimit)} for this account and kind of data ` +
    `(RateLimit r=${rateLimit.remaining}${resets}).`;
}

function closeQuota() {
  $("quota-table").querySelector("tbody").replaceChildren();
  $("quota-table").hidden = true;
  $("quota-resets").hidden = true;
  $("quota-empty").hidden = false;
  $("quota-empty").textContent = "Open a connection first.";
  $("quota-refresh").disabled = true;
  clearError($("quota-error"));
}

function quotaAccount(accountId) {
  if (!accountId || accountId === "-") return "—";
  const account = state.accounts.find((a) => a.account_id === accountId);
  return account ? account.iban || account.name || accountId : accountId;
}

async function loadQuota() {
  if (!state.bankCode) return;
  const box = $("quota-error");
  clearError(box);
  let quota;
  try {
    quota = await api(`${connectionPath()}/quota`);
  } catch (err) {
    showError(box, err);
    return;
  }
  const tbody = $("quota-table").querySelector("tbody");
  tbody.replaceChildren();
  for (const counter of quota.usage) {
    const row = el("tr", null, counter.remaining === 0 ? "spent" : "");
    row.append(
      cell(QUOTA_METHODS[counter.method] || counter.method),
      cell(quotaAccount(counter.account_id), "mono"),
      cell(String(counter.used), "num"),
      cell(String(counter.remaining), "num"),
    );
    tbody.append(row);
  }
  const bank = bankLabel(quota.bank_code);
  $("quota-table").hidden = quota.usage.length === 0;
  $("quota-empty").hidden = quota.usage.length !== 0;
  $("quota-empty").textContent = `No unattended read at ${bank} today: all ${quota.limit} reads are left everywhere.`;
  $("quota-resets").textContent =
    `${bank}, ${quota.day} (${quota.time_zone}): ${quota.limit} unattended reads a day per account and kind of ` +
    `data; any not listed has all ${quota.limit} left. The counters reset at ${when(quota.resets_at)}.`;
  $("quota-resets").hidden = false;
  $("quota-refresh").disabled = false;
}

// ---- start ----------------------------------------------------------------------------------------------------------

function init() {
  $("api-origin").textContent = API_ORIGIN;
  state.callback = readCallback();
  const saved = sessionStorage.getItem("quickstart.user");
  if (saved) $("user-id").value = saved;
  $("user-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("user-id");
    if (!input.reportValidity()) return;
    getToken(input.value.trim());
  });
  $("connect-button").addEventListener("click", (event) => busy(event.target, connect));
  $("connections-refresh").addEventListener("click", (event) => busy(event.target, loadConnections));
  $("consent-form").addEventListener("submit", (event) => {
    event.preventDefault();
    busy($("consent-submit"), submitConsent);
  });
  $("transactions-more").addEventListener("click", (event) => busy(event.target, loadMoreTransactions));
  $("quota-refresh").addEventListener("click", (event) => busy(event.target, loadQuota));
  $("sync-run").addEventListener("click", (event) => busy(event.target, runSync));
  $("sync-clock").addEventListener("click", (event) => busy(event.target, moveBankClock));
  for (const radio of document.querySelectorAll('input[name="caller"]')) {
    radio.addEventListener("change", () => setCaller(radio.value));
  }
  if (!SAME_ORIGIN) {
    // Opened as localhost: the API is another origin, whose CORS configuration does not allow Aisp-User.
    const backend = document.querySelector('input[name="caller"][value="backend"]');
    backend.disabled = true;
    const note = el("p", "Playing the backend needs this page on the API's own origin, ", "hint");
    const link = el("a", `${API_ORIGIN}/`);
    link.href = `${API_ORIGIN}/`;
    note.append(link, ": a server token belongs on the fintech's server, not in a web page, so the API's CORS " +
      "configuration does not let a page on another origin send Aisp-User.");
    $("caller").append(note);
  }
  renderCaller();
  if (saved) {
    getToken(saved);
  } else if (state.callback) {
    // Back from the bank without a signed-in user: an authorized login waits for its user to sign in.
    if (state.callback.status !== "authorized") {
      showCallbackError(state.callback);
      state.callback = null;
    }
  }
}

document.addEventListener("DOMContentLoaded", init);
