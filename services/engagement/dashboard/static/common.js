// Shared by the dashboard pages: the bearer token (from #token=… or the form, kept in
// sessionStorage for this tab only), authenticated JSON calls, and small DOM helpers.
"use strict";

const TOKEN_KEY = "keepwell.token";

function takeTokenFromFragment() {
  const params = new URLSearchParams(window.location.hash.slice(1));
  const token = params.get("token");
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const response = await fetch(path, { headers: { Authorization: "Bearer " + token } });
  if (!response.ok) {
    let message = response.statusText;
    try {
      message = (await response.json()).error.message;
    } catch (_) { /* the body was not our JSON error: keep the status text */ }
    throw new ApiError(response.status, message);
  }
  return response.json();
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
  }
  return node;
}

function showUnavailable(container, what, panel) {
  const why = panel.status ? `${panel.error} (HTTP ${panel.status})` : panel.error;
  container.replaceChildren(el("p", { class: "unavailable" }, `${what} unavailable: ${why}`));
}

// Starts the page: with a token, run `load`; without one (or when it is refused), the form.
function start(load) {
  const login = document.getElementById("login");
  const board = document.getElementById("board");
  const ask = (message) => {
    if (message) document.getElementById("login-message").textContent = message;
    board.hidden = true;
    login.hidden = false;
  };
  login.addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, new FormData(login).get("token").trim());
    run();
  });
  const run = async () => {
    login.hidden = true;
    board.hidden = false;
    try {
      await load();
    } catch (error) {
      if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
        ask(`The token was refused (${error.message}). Paste one with the reports:read scope.`);
      } else {
        throw error;
      }
    }
  };
  if (takeTokenFromFragment()) run(); else ask();
}

function percent(value) {
  return value === null || value === undefined ? "–" : (100 * value).toFixed(1) + " %";
}
